/** @file The real-time fan-out hub of one process: a Redis subscriber thread (SUBSCRIBE
 *  bp:progress:<playerId> for each player streamed here, UNSUBSCRIBE once the player's last
 *  stream ends) feeding the Server-Sent-Events streams of this process, each a
 *  libmicrohttpd callback response suspended while it has nothing to send.
 *
 *  Threads: the hub's functions are thread-safe. A stream's ops are called on the
 *  libmicrohttpd thread serving its connection, one call at a time, without hub locks held
 *  (they may do I/O). The subscriber thread only queues updates and wakes streams. */
#ifndef BP_STREAM_H
#define BP_STREAM_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"

/** Default bound of simultaneous streams per process (more are refused: 503). */
#define BP_STREAM_MAX_DEFAULT 1000
/** Updates a stream holds for a slow client; beyond, the oldest one is dropped. */
#define BP_STREAM_QUEUE_MAX 16
/** A stream silent this long writes a ": keep-alive" comment. */
#define BP_STREAM_KEEPALIVE_MS 15000
/** Reconnection delay suggested to clients (the SSE `retry:` field), ms. */
#define BP_STREAM_RETRY_MS 2000

typedef struct bp_stream_hub bp_stream_hub_t;
typedef struct bp_stream bp_stream_t;

/** One message of channel bp:progress:<playerId>, as the worker publishes it after a
 *  committed batch (store/cache.c): the player's new total in a season. */
typedef struct {
    char season_id[BP_ID_MAX + 1];
    int64_t total_xp;
    int32_t level; /**< the worker's level; the stream recomputes it from the season */
} bp_stream_update_t;

/** Growable output text of a stream (SSE lines). */
typedef struct {
    char *data; /**< heap, owned by the stream */
    size_t len;
    size_t cap;
} bp_stream_buf_t;

/** What a stream does with its updates; ctx is the stream's, owned by it (destroy). */
typedef struct {
    /**
     * Append the SSE events for @p up to @p out. @p up is NULL when updates may have been
     * missed (the player's channel was subscribed just now: the first stream of the player,
     * or the hub's Redis connection was re-established): re-read the state.
     * @return BP_OK to go on; anything else ends the stream once @p out is sent.
     */
    bp_err_t (*update)(void *ctx, const bp_stream_update_t *up, bp_stream_buf_t *out);
    /** Called instead of update about every BP_STREAM_KEEPALIVE_MS of silence, before the
     *  keep-alive comment is written. @return as update. May be NULL. */
    bp_err_t (*idle)(void *ctx, bp_stream_buf_t *out);
    /** Free ctx. May be NULL. */
    void (*destroy)(void *ctx);
} bp_stream_ops_t;

/**
 * Create the hub and start its subscriber thread. Redis being down is not an error: the
 * thread reconnects with backoff (logged once per outage) and, once connected again, asks
 * every stream to re-read its state (updates published meanwhile are lost by pub/sub).
 * @param redis_url   redis://... parsed like the cache's (store/cache.h); NULL or "" = no
 *                    Redis: streams only get their first event and keep-alives
 * @param max_streams bound of open streams (< 1: BP_STREAM_MAX_DEFAULT)
 * @return BP_OK with *out owned by the caller (bp_stream_hub_destroy), BP_EINVAL for a bad
 *         URL, BP_ENOMEM, BP_EFATAL when the thread cannot start.
 */
bp_err_t bp_stream_hub_new(const char *redis_url, int max_streams,
                           bp_stream_hub_t **out) BP_MUSTCHECK;

/**
 * Refuse new streams, end every open one (suspended connections are resumed and their
 * readers end the response; waits up to a second for that) and stop the subscriber
 * thread. Call before MHD_stop_daemon(): libmicrohttpd must not be stopped with suspended
 * connections. Idempotent; accepts NULL.
 */
void bp_stream_hub_shutdown(bp_stream_hub_t *hub);

/** Shut down if needed and free. Every stream must have been closed (their responses
 *  destroyed, i.e. after MHD_stop_daemon). Accepts NULL. */
void bp_stream_hub_destroy(bp_stream_hub_t *hub);

/** @return the number of open streams (for tests and metrics). */
size_t bp_stream_hub_count(bp_stream_hub_t *hub);

/**
 * Open a stream of @p player_id's updates: registered at once, and the player's channel
 * subscribed if it was not; once Redis confirms that subscription the stream re-reads its
 * state (update(NULL)), so nothing published after its first read is missed (open before
 * reading the initial state). Updates are queued even before the response starts.
 * @param ops borrowed, must outlive the stream (a static table)
 * @param ctx ownership taken in every case (destroyed on failure); *ctx set to NULL
 * @return BP_OK with *out owned by the caller until handed to bp_stream_respond() (or
 *         bp_stream_close()), BP_ERETRY when the hub is full or shutting down (answer 503),
 *         BP_ENOMEM.
 */
bp_err_t bp_stream_open(bp_stream_hub_t *hub, const char *player_id, const bp_stream_ops_t *ops,
                        void **ctx, bp_stream_t **out) BP_MUSTCHECK;

/** The stream's pending output: what a handler appends here (the first event) is sent first.
 *  Borrowed; use only before bp_stream_respond(). */
bp_stream_buf_t *bp_stream_out(bp_stream_t *st);

/** Unregister and free a stream that was never handed to bp_stream_respond(). Accepts
 *  NULL. */
void bp_stream_close(bp_stream_t *st);

/**
 * Queue the stream as @p conn's response: `text/event-stream`, `Cache-Control: no-store`,
 * body of unknown length (chunked), produced as updates arrive. Called by the server for a
 * handler's response that holds a stream (http/request.h), from the access handler.
 * @param st ownership taken (the response frees it when libmicrohttpd is done with it);
 *           *st set to NULL
 * @return libmicrohttpd's verdict on queueing (MHD_NO closes the connection).
 */
enum MHD_Result bp_stream_respond(struct MHD_Connection *conn, unsigned status, bp_stream_t **st);

/**
 * Append one event "event: NAME\ndata: DATA\n\n" to @p b.
 * @param data one line (compact JSON): must hold no CR or LF
 * @return BP_OK, BP_EINVAL (a line break in @p data: nothing appended), BP_ENOMEM.
 */
bp_err_t bp_stream_buf_event(bp_stream_buf_t *b, const char *event, const char *data) BP_MUSTCHECK;

/** Append @p len bytes of raw SSE text. @return BP_OK or BP_ENOMEM. */
bp_err_t bp_stream_buf_add(bp_stream_buf_t *b, const char *text, size_t len) BP_MUSTCHECK;

#endif
