/** @file The real-time fan-out hub: one Redis subscriber thread per process subscribed to
 *  the channels of the players streamed here, a mutex-protected map playerId → streams with
 *  bounded queues, and the libmicrohttpd content reader that suspends a stream's connection
 *  while it has nothing to send. */
#include "http/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app/log.h"
#include "store/cache.h"

/** Buckets of the playerId → streams map (a power of two). */
#define BUCKETS 1024u
/** libmicrohttpd's advisory block size for the content reader. */
#define BLOCK_SIZE 4096
#define CONNECT_TIMEOUT_US 500000
#define COMMAND_TIMEOUT_US 1000000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/** The subscriber thread looks for due keep-alives and vanished clients this often. */
#define SWEEP_MS 1000
/** bp_stream_hub_shutdown() waits this long for resumed streams to end. */
#define STOP_WAIT_MS 1000
#define CHANNEL_PREFIX "bp:progress:"
#define PREFIX_LEN (sizeof(CHANNEL_PREFIX) - 1)
/** Most channels named by one SUBSCRIBE or UNSUBSCRIBE: bounds the command's size. */
#define SUB_BATCH 256

/**
 * A player's channel: how many streams want it, and what the subscriber thread last asked
 * Redis for on its connection (Redis runs a connection's commands in order, so that is
 * where the channel ends up). Under hub->mu. Streams going to or from 0 put it on the dirty
 * list; the thread reconciles (SUBSCRIBE or UNSUBSCRIBE) and frees an entry nobody wants
 * that is not subscribed.
 */
typedef struct sub {
    struct sub *next;       /* bucket chain of hub->subs */
    struct sub *dirty_next; /* hub->dirty */
    size_t streams;
    bool subscribed; /* the last command for it on the current connection was SUBSCRIBE */
    bool dirty;      /* on hub->dirty */
    char player_id[BP_ID_MAX + 1];
} sub_t;

/** One SUBSCRIBE or UNSUBSCRIBE being assembled by the subscriber thread. */
typedef struct {
    const char *argv[SUB_BATCH + 1];
    size_t argvlen[SUB_BATCH + 1];
    int argc;
    char chan[SUB_BATCH][PREFIX_LEN + BP_ID_MAX + 1];
} batch_t;

struct bp_stream {
    bp_stream_hub_t *hub;
    const bp_stream_ops_t *ops;
    void *ctx;
    char player_id[BP_ID_MAX + 1];
    struct MHD_Connection *conn; /* set by bp_stream_respond */
    int fd;                      /* the connection's socket, -1 when unknown */
    /* Under hub->mu. */
    sub_t *sub;               /* the player's channel, while registered */
    bp_stream_t *prev, *next; /* bucket chain */
    size_t bucket;
    bool registered;
    bp_stream_update_t queue[BP_STREAM_QUEUE_MAX]; /* ring */
    size_t q_head, q_len;
    unsigned dropped;        /* updates dropped for a slow client since the last send */
    bool resync;             /* updates may have been missed: re-read */
    bool suspended;          /* we suspended the connection and nobody resumed it yet */
    bool stop_pending;       /* resumed by shutdown; its reader has not run since */
    bool probe;              /* the client seems gone: write, so libmicrohttpd notices */
    int64_t keepalive_at_ms; /* monotonic */
    /* The reader's own: one libmicrohttpd thread at a time. */
    bp_stream_buf_t out;
    size_t out_off;
    bool finished; /* end the response once out is sent */
};

struct bp_stream_hub {
    pthread_mutex_t mu;
    pthread_cond_t stopped_cv; /* stop_pending reached 0 */
    bp_stream_t *buckets[BUCKETS];
    sub_t *subs[BUCKETS]; /* playerId → channel, same hash as buckets */
    sub_t *dirty;         /* channels to reconcile, LIFO */
    size_t n_open, max_open;
    bool stopping;
    size_t stop_pending;
    struct pollfd *pfds; /* max_open entries: sweep()'s probe of suspended sockets */
    bp_stream_t **pst;
    /* The subscriber thread. */
    bool have_redis;
    bp_cache_url_t url;
    int wake[2];    /* self-pipe: written to stop the thread or when a channel is dirty */
    batch_t *batch; /* [2]: SUBSCRIBE, UNSUBSCRIBE; the thread's */
    atomic_bool quit;
    pthread_t thread;
    bool thread_started; /* joined (and cleared) by shutdown */
};

/** What the reader takes from the shared state in one go. */
typedef struct {
    bp_stream_update_t ups[BP_STREAM_QUEUE_MAX];
    size_t n;
    unsigned dropped;
    bool resync;
    bool keepalive;
    bool probe;
    bool stopping;
} work_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t bucket_of(const char *player_id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)player_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (BUCKETS - 1);
}

/* ---- output buffer ---- */

bp_err_t bp_stream_buf_add(bp_stream_buf_t *b, const char *text, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return BP_ENOMEM;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, len);
    b->len += len;
    b->data[b->len] = '\0';
    return BP_OK;
}

bp_err_t bp_stream_buf_event(bp_stream_buf_t *b, const char *event, const char *data)
{
    if (strpbrk(data, "\r\n") || strpbrk(event, "\r\n"))
        return BP_EINVAL;
    size_t old = b->len;
    bp_err_t err = bp_stream_buf_add(b, "event: ", 7);
    if (err == BP_OK)
        err = bp_stream_buf_add(b, event, strlen(event));
    if (err == BP_OK)
        err = bp_stream_buf_add(b, "\ndata: ", 7);
    if (err == BP_OK)
        err = bp_stream_buf_add(b, data, strlen(data));
    if (err == BP_OK)
        err = bp_stream_buf_add(b, "\n\n", 2);
    if (err != BP_OK)
        b->len = old; /* never half an event */
    return err;
}

/* ---- streams (all *_locked functions run under hub->mu) ---- */

/** Let libmicrohttpd run the stream's reader again if we suspended it. Resuming under the
 *  hub lock orders it after the suspension it undoes (libmicrohttpd never calls us with
 *  its own locks held, so the lock order hub → libmicrohttpd is safe). */
static void wake_locked(bp_stream_t *st)
{
    if (st->suspended) {
        st->suspended = false;
        MHD_resume_connection(st->conn);
    }
}

static void stop_done_locked(bp_stream_t *st)
{
    if (st->stop_pending) {
        st->stop_pending = false;
        if (--st->hub->stop_pending == 0)
            pthread_cond_broadcast(&st->hub->stopped_cv);
    }
}

/** Put @p e on the dirty list. @return true when the thread must be woken (it was not). */
static bool dirty_locked(bp_stream_hub_t *hub, sub_t *e)
{
    if (e->dirty)
        return false;
    e->dirty = true;
    e->dirty_next = hub->dirty;
    hub->dirty = e;
    return true;
}

static void wake_thread(bp_stream_hub_t *hub)
{
    ssize_t w = write(hub->wake[1], "x", 1);
    (void)w; /* a full pipe wakes the thread just as well */
}

/** @return true when the player's last stream went: the thread must be woken. */
static bool unlink_locked(bp_stream_t *st)
{
    bp_stream_hub_t *hub = st->hub;
    bool wake = false;
    if (!st->registered)
        return false;
    if (--st->sub->streams == 0)
        wake = dirty_locked(hub, st->sub);
    st->sub = NULL;
    if (st->prev)
        st->prev->next = st->next;
    else
        hub->buckets[st->bucket] = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    st->registered = false;
    hub->n_open--;
    return wake;
}

bp_err_t bp_stream_open(bp_stream_hub_t *hub, const char *player_id, const bp_stream_ops_t *ops,
                        void **ctx, bp_stream_t **out)
{
    bp_err_t err = BP_OK;
    void *c = *ctx;
    *ctx = NULL;
    *out = NULL;
    bool wake = false;
    sub_t *fresh = NULL;
    bp_stream_t *st = calloc(1, sizeof(*st));
    if (!st) {
        err = BP_ENOMEM;
        goto out;
    }
    st->hub = hub;
    st->fd = -1;
    st->ops = ops;
    st->ctx = c;
    c = NULL;
    snprintf(st->player_id, sizeof(st->player_id), "%s", player_id);
    st->bucket = bucket_of(st->player_id);
    /* First of all: clients reconnect after this long when the stream ends. */
    char retry[32];
    int n = snprintf(retry, sizeof(retry), "retry: %d\n", BP_STREAM_RETRY_MS);
    err = bp_stream_buf_add(&st->out, retry, (size_t)n);
    if (err != BP_OK)
        goto out;
    fresh = calloc(1, sizeof(*fresh)); /* outside the lock; freed if the player has one */
    if (!fresh) {
        err = BP_ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&hub->mu);
    if (hub->stopping || hub->n_open >= hub->max_open) {
        err = BP_ERETRY;
    } else {
        sub_t *e = hub->subs[st->bucket];
        while (e && strcmp(e->player_id, st->player_id) != 0)
            e = e->next;
        if (!e) {
            e = fresh;
            fresh = NULL;
            memcpy(e->player_id, st->player_id, sizeof(e->player_id));
            e->next = hub->subs[st->bucket];
            hub->subs[st->bucket] = e;
        }
        /* The first stream of the player: the thread subscribes, and once Redis confirms,
         * every stream of the player re-reads (what was published before is not sent). */
        if (e->streams++ == 0)
            wake = dirty_locked(hub, e);
        st->sub = e;
        st->keepalive_at_ms = mono_ms() + BP_STREAM_KEEPALIVE_MS;
        st->next = hub->buckets[st->bucket];
        if (st->next)
            st->next->prev = st;
        hub->buckets[st->bucket] = st;
        st->registered = true;
        hub->n_open++;
    }
    pthread_mutex_unlock(&hub->mu);
    if (wake)
        wake_thread(hub);

out:
    free(fresh);
    if (err != BP_OK) {
        if (st) {
            bp_stream_close(st);
        } else if (c && ops->destroy) {
            ops->destroy(c);
        }
        st = NULL;
    }
    *out = st;
    return err;
}

bp_stream_buf_t *bp_stream_out(bp_stream_t *st)
{
    return &st->out;
}

void bp_stream_close(bp_stream_t *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->hub->mu);
    bool wake = unlink_locked(st);
    stop_done_locked(st);
    pthread_mutex_unlock(&st->hub->mu);
    if (wake)
        wake_thread(st->hub);
    if (st->ctx && st->ops->destroy)
        st->ops->destroy(st->ctx);
    free(st->out.data);
    free(st);
}

/** Take the stream's pending work, or suspend its connection when there is none.
 *  @return false when suspended (the reader then returns 0 bytes). */
static bool take_work(bp_stream_t *st, work_t *w)
{
    bp_stream_hub_t *hub = st->hub;
    int64_t now = mono_ms();
    bool got = true;
    w->n = 0;
    w->dropped = 0;
    w->resync = w->keepalive = w->probe = w->stopping = false;
    pthread_mutex_lock(&hub->mu);
    stop_done_locked(st);
    if (hub->stopping) {
        w->stopping = true;
        goto out;
    }
    for (; st->q_len > 0; st->q_len--) {
        w->ups[w->n++] = st->queue[st->q_head];
        st->q_head = (st->q_head + 1) % BP_STREAM_QUEUE_MAX;
    }
    w->dropped = st->dropped;
    st->dropped = 0;
    w->resync = st->resync;
    st->resync = false;
    w->probe = st->probe;
    st->probe = false;
    /* The keep-alive follows BP_STREAM_KEEPALIVE_MS of silence. */
    if (now >= st->keepalive_at_ms || w->n > 0) {
        w->keepalive = w->n == 0;
        st->keepalive_at_ms = now + BP_STREAM_KEEPALIVE_MS;
    }
    if (w->n == 0 && !w->dropped && !w->resync && !w->keepalive && !w->probe) {
        /* Suspending from the content reader is allowed (microhttpd.h); the connection
         * leaves libmicrohttpd's loop until wake_locked(). */
        st->suspended = true;
        MHD_suspend_connection(st->conn);
        got = false;
    }
out:
    pthread_mutex_unlock(&hub->mu);
    return got;
}

/** Turn the work into SSE text in st->out, through the stream's ops. */
static void produce(bp_stream_t *st, const work_t *w)
{
    bp_err_t err = BP_OK;
    char hint[64];
    if (w->dropped) {
        /* Updates carry absolute totals, so the next one is still right: only say (as a
         * comment, no event type beyond the documented ones) that some were coalesced. */
        int n = snprintf(hint, sizeof(hint), ": resync, %u updates dropped\n\n", w->dropped);
        err = bp_stream_buf_add(&st->out, hint, (size_t)n);
    }
    if (err == BP_OK && w->resync)
        err = st->ops->update(st->ctx, NULL, &st->out);
    for (size_t i = 0; err == BP_OK && i < w->n; i++)
        err = st->ops->update(st->ctx, &w->ups[i], &st->out);
    if (err == BP_OK && w->keepalive && st->ops->idle)
        err = st->ops->idle(st->ctx, &st->out);
    if (err == BP_OK && (w->keepalive || w->probe))
        err = bp_stream_buf_add(&st->out, ": keep-alive\n\n", 14);
    if (err != BP_OK)
        st->finished = true;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    bp_stream_t *st = cls;
    work_t w;
    (void)pos;
    for (;;) {
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off;
            if (n > max)
                n = max;
            memcpy(buf, st->out.data + st->out_off, n);
            st->out_off += n;
            return (ssize_t)n;
        }
        st->out.len = st->out_off = 0;
        if (st->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!take_work(st, &w))
            return 0; /* suspended: called again once resumed */
        if (w.stopping)
            return MHD_CONTENT_READER_END_OF_STREAM;
        produce(st, &w);
    }
}

static void free_response_cls(void *cls)
{
    bp_stream_close(cls);
}

enum MHD_Result bp_stream_respond(struct MHD_Connection *conn, unsigned status, bp_stream_t **stp)
{
    bp_stream_t *st = *stp;
    *stp = NULL;
    st->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_SIZE,
                                                                  reader, st, free_response_cls);
    if (!resp) {
        bp_stream_close(st);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") ==
            MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
        MHD_add_response_header(resp, "X-Accel-Buffering", "no") == MHD_YES)
        ret = MHD_queue_response(conn, status, resp);
    /* Queued: libmicrohttpd holds a reference until the request ends, then frees the
     * stream through free_response_cls. Not queued: this frees it now. */
    MHD_destroy_response(resp);
    return ret;
}

/* ---- the subscriber thread ---- */

/** Queue @p up on every stream of @p player_id and wake them. */
static void publish(bp_stream_hub_t *hub, const char *player_id, const bp_stream_update_t *up)
{
    size_t b = bucket_of(player_id);
    pthread_mutex_lock(&hub->mu);
    for (bp_stream_t *st = hub->buckets[b]; st; st = st->next) {
        if (strcmp(st->player_id, player_id) != 0)
            continue;
        if (st->q_len == BP_STREAM_QUEUE_MAX) { /* slow client: drop the oldest */
            st->q_head = (st->q_head + 1) % BP_STREAM_QUEUE_MAX;
            st->q_len--;
            st->dropped++;
        }
        st->queue[(st->q_head + st->q_len) % BP_STREAM_QUEUE_MAX] = *up;
        st->q_len++;
        wake_locked(st);
    }
    pthread_mutex_unlock(&hub->mu);
}

/** @return true when the peer of @p p closed or reset the connection. */
static bool peer_gone(const struct pollfd *p)
{
    char c;
    if (p->revents & (POLLHUP | POLLERR))
        return true;
    /* Readable: end of file, or bytes a client sent after its request (left alone). */
    return (p->revents & POLLIN) && recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/** Ask every stream of @p player_id to re-read its state: its channel was (re)subscribed
 *  just now, and what was published before may not have reached it. */
static void resync_player(bp_stream_hub_t *hub, const char *player_id)
{
    size_t b = bucket_of(player_id);
    pthread_mutex_lock(&hub->mu);
    for (bp_stream_t *st = hub->buckets[b]; st; st = st->next) {
        if (strcmp(st->player_id, player_id) == 0) {
            st->resync = true;
            wake_locked(st);
        }
    }
    pthread_mutex_unlock(&hub->mu);
}

/**
 * Wake the streams whose keep-alive is due. libmicrohttpd does not watch suspended
 * connections, so a client that went away would hold its stream until the next
 * keep-alive: their sockets are probed here (they stay open while suspended) and a gone
 * client's stream writes at once, which ends it.
 */
static void sweep(bp_stream_hub_t *hub)
{
    int64_t now = mono_ms();
    size_t n = 0;
    pthread_mutex_lock(&hub->mu);
    for (size_t b = 0; b < BUCKETS; b++) {
        for (bp_stream_t *st = hub->buckets[b]; st; st = st->next) {
            if (now >= st->keepalive_at_ms) {
                wake_locked(st);
            } else if (st->suspended && st->fd >= 0 && n < hub->max_open) {
                hub->pfds[n].fd = st->fd;
                hub->pfds[n].events = POLLIN;
                hub->pfds[n].revents = 0;
                hub->pst[n++] = st;
            }
        }
    }
    if (n > 0 && poll(hub->pfds, (nfds_t)n, 0) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (peer_gone(&hub->pfds[i])) {
                hub->pst[i]->probe = true;
                wake_locked(hub->pst[i]);
            }
        }
    }
    pthread_mutex_unlock(&hub->mu);
}

/** Copy a JSON string member into @p buf if it is a valid id. */
static bool json_id(json_t *obj, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t n = s ? json_string_length(v) : 0;
    if (!s || n >= len || !bp_id_valid(s, n))
        return false;
    memcpy(buf, s, n + 1);
    return true;
}

/**
 * Handle one reply of the subscription: a message is parsed and published; the
 * confirmation of a SUBSCRIBE makes the player's streams re-read (an update published
 * between their first read and this moment was not delivered).
 */
static void on_reply(bp_stream_hub_t *hub, const redisReply *r)
{
    char player[BP_ID_MAX + 1], ch[128];
    bp_stream_update_t up;
    if (r->type == REDIS_REPLY_ERROR) {
        BP_LOG_WARN("real-time subscriber: redis refused a command", "\"error\":\"%s\"",
                    bp_log_str(ch, sizeof(ch), r->str));
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str, *channel = r->element[1]->str;
    const char *chan_player = channel + PREFIX_LEN;
    size_t chan_len = r->element[1]->len;
    bool is_message = strcmp(kind, "message") == 0;
    if (!is_message && strcmp(kind, "subscribe") != 0)
        return; /* unsubscribe confirmations */
    if (chan_len <= PREFIX_LEN || strncmp(channel, CHANNEL_PREFIX, PREFIX_LEN) != 0 ||
        !bp_id_valid(chan_player, chan_len - PREFIX_LEN)) {
        BP_LOG_DEBUG("unexpected real-time channel ignored", "\"channel\":\"%s\"",
                     bp_log_str(ch, sizeof(ch), channel));
        return;
    }
    if (!is_message) {
        resync_player(hub, chan_player);
        return;
    }
    if (r->element[2]->type != REDIS_REPLY_STRING)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(r->element[2]->str, (size_t)r->element[2]->len, 0, &jerr);
    json_t *xp = json_object_get(msg, "totalXp"), *level = json_object_get(msg, "level");
    memset(&up, 0, sizeof(up));
    if (!msg || !json_id(msg, "playerId", player, sizeof(player)) ||
        !json_id(msg, "seasonId", up.season_id, sizeof(up.season_id)) || !json_is_integer(xp) ||
        !json_is_integer(level) || json_integer_value(xp) < 0 || json_integer_value(level) < 1 ||
        json_integer_value(level) > INT32_MAX || strcmp(chan_player, player) != 0) {
        BP_LOG_DEBUG("unexpected real-time message ignored", "\"channel\":\"%s\"",
                     bp_log_str(ch, sizeof(ch), channel));
        goto out;
    }
    up.total_xp = (int64_t)json_integer_value(xp);
    up.level = (int32_t)json_integer_value(level);
    publish(hub, player, &up);
out:
    json_decref(msg);
}

static void log_down(bp_stream_hub_t *hub, bool *down, const char *detail)
{
    char hb[BP_CACHE_HOST_MAX * 6 + 8], db[256];
    if (*down)
        return; /* once per outage */
    *down = true;
    BP_LOG_WARN("real-time subscriber: redis unavailable, retrying",
                "\"host\":\"%s\",\"port\":%d,\"error\":\"%s\"",
                bp_log_str(hb, sizeof(hb), hub->url.host), hub->url.port,
                bp_log_str(db, sizeof(db), detail ? detail : "unknown"));
}

/** Send one command and check its reply. @return true on success. */
static bool command(bp_stream_hub_t *hub, redisContext *ctx, bool *down, int argc,
                    const char **argv)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok) /* the error text of AUTH never holds the password */
        log_down(hub, down, !r ? ctx->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
    if (r)
        freeReplyObject(r);
    return ok;
}

/** Connect and AUTH; the channels are subscribed by reconcile(). @return the context, or
 *  NULL (logged once per outage). */
static redisContext *connect_redis(bp_stream_hub_t *hub, bool *down)
{
    struct timeval tv = {0, CONNECT_TIMEOUT_US}, cmd_tv = {COMMAND_TIMEOUT_US / 1000000, 0};
    redisContext *ctx = redisConnectWithTimeout(hub->url.host, hub->url.port, tv);
    bool ok = ctx && !ctx->err;
    if (!ok)
        log_down(hub, down, ctx ? ctx->errstr : "out of memory");
    if (ok && redisSetTimeout(ctx, cmd_tv) != REDIS_OK) {
        log_down(hub, down, ctx->errstr);
        ok = false;
    }
    if (ok && hub->url.password) {
        const char *auth_user[] = {"AUTH", hub->url.user ? hub->url.user : "", hub->url.password};
        const char *auth[] = {"AUTH", hub->url.password};
        ok = hub->url.user ? command(hub, ctx, down, 3, auth_user)
                           : command(hub, ctx, down, 2, auth);
    }
    /* No SELECT: pub/sub channels do not belong to a database. */
    if (!ok) {
        if (ctx)
            redisFree(ctx);
        return NULL;
    }
    if (*down) {
        char hb[BP_CACHE_HOST_MAX * 6 + 8];
        BP_LOG_INFO("real-time subscriber: redis reachable again", "\"host\":\"%s\",\"port\":%d",
                    bp_log_str(hb, sizeof(hb), hub->url.host), hub->url.port);
        *down = false;
    }
    return ctx;
}

/** Read what the socket has and handle every complete reply. @return false when the
 *  connection is lost or broken. */
static bool drain(bp_stream_hub_t *hub, redisContext *ctx)
{
    if (redisBufferRead(ctx) != REDIS_OK)
        return false;
    for (;;) {
        void *r = NULL;
        if (redisGetReplyFromReader(ctx, &r) != REDIS_OK)
            return false;
        if (!r)
            return true;
        on_reply(hub, r);
        freeReplyObject(r);
    }
}

static void sub_free_locked(bp_stream_hub_t *hub, sub_t *e)
{
    sub_t **pp = &hub->subs[bucket_of(e->player_id)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    free(e);
}

static void batch_add(batch_t *b, const char *player_id)
{
    int n = snprintf(b->chan[b->argc - 1], sizeof(b->chan[0]), CHANNEL_PREFIX "%s", player_id);
    b->argv[b->argc] = b->chan[b->argc - 1];
    b->argvlen[b->argc++] = (size_t)n;
}

/**
 * Bring the connection's subscriptions in line with the streams: SUBSCRIBE the channels
 * of players that got a stream, UNSUBSCRIBE those of players that lost their last one (at
 * most SUB_BATCH channels a command), and free the entries nobody wants. Without @p ctx
 * only the latter (the channels are subscribed on connect).
 * @return false when the commands could not be sent (the connection is lost).
 */
static bool reconcile(bp_stream_hub_t *hub, redisContext *ctx)
{
    batch_t *sub = &hub->batch[0], *unsub = &hub->batch[1];
    sub->argv[0] = "SUBSCRIBE";
    sub->argvlen[0] = strlen("SUBSCRIBE");
    unsub->argv[0] = "UNSUBSCRIBE";
    unsub->argvlen[0] = strlen("UNSUBSCRIBE");
    for (;;) {
        sub->argc = unsub->argc = 1;
        pthread_mutex_lock(&hub->mu);
        while (hub->dirty && sub->argc <= SUB_BATCH && unsub->argc <= SUB_BATCH) {
            sub_t *e = hub->dirty;
            hub->dirty = e->dirty_next;
            e->dirty_next = NULL;
            e->dirty = false;
            bool want = e->streams > 0;
            if (ctx && want != e->subscribed) {
                batch_add(want ? sub : unsub, e->player_id);
                e->subscribed = want;
            }
            if (!want && !e->subscribed)
                sub_free_locked(hub, e);
        }
        bool more = hub->dirty != NULL;
        pthread_mutex_unlock(&hub->mu);
        if (!ctx)
            return true;
        /* Never an UNSUBSCRIBE without channels: that would drop them all. */
        if ((sub->argc > 1 &&
             redisAppendCommandArgv(ctx, sub->argc, sub->argv, sub->argvlen) != REDIS_OK) ||
            (unsub->argc > 1 &&
             redisAppendCommandArgv(ctx, unsub->argc, unsub->argv, unsub->argvlen) != REDIS_OK))
            return false;
        /* A blocking socket: written in full, or an error (the send timeout included). The
         * replies are read by drain(); Redis queues them meanwhile. */
        for (int done = 0; !done;)
            if (redisBufferWrite(ctx, &done) != REDIS_OK)
                return false;
        if (!more)
            return true;
    }
}

/** On a new connection (nothing subscribed yet): every player streamed here is to be
 *  subscribed; their streams re-read once Redis confirms, as what was published while the
 *  hub was away is lost. */
static void want_all(bp_stream_hub_t *hub)
{
    pthread_mutex_lock(&hub->mu);
    for (size_t b = 0; b < BUCKETS; b++)
        for (sub_t *e = hub->subs[b]; e; e = e->next)
            if (e->streams > 0)
                (void)dirty_locked(hub, e);
    pthread_mutex_unlock(&hub->mu);
}

/** The connection is gone, and its subscriptions with it. */
static void lost(bp_stream_hub_t *hub, redisContext **ctx)
{
    redisFree(*ctx);
    *ctx = NULL;
    pthread_mutex_lock(&hub->mu);
    for (size_t b = 0; b < BUCKETS; b++) {
        for (sub_t *e = hub->subs[b]; e; e = e->next) {
            e->subscribed = false;
            if (e->streams == 0) /* reconcile() frees it */
                (void)dirty_locked(hub, e);
        }
    }
    pthread_mutex_unlock(&hub->mu);
}

static void *subscriber_main(void *arg)
{
    bp_stream_hub_t *hub = arg;
    redisContext *ctx = NULL;
    int64_t next_connect = 0, next_sweep = 0;
    int backoff = BACKOFF_MIN_MS;
    bool down = false;
    char drainbuf[64];

    while (!atomic_load(&hub->quit)) {
        int64_t now = mono_ms();
        if (hub->have_redis && !ctx && now >= next_connect) {
            ctx = connect_redis(hub, &down);
            if (ctx) {
                backoff = BACKOFF_MIN_MS;
                want_all(hub);
            } else {
                next_connect = mono_ms() + backoff;
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            }
        }
        if (!reconcile(hub, ctx)) {
            log_down(hub, &down, ctx->err ? ctx->errstr : "write failed");
            lost(hub, &ctx);
            next_connect = mono_ms() + backoff;
            continue;
        }
        now = mono_ms();
        int64_t wait = next_sweep - now;
        if (hub->have_redis && !ctx && next_connect - now < wait)
            wait = next_connect - now;
        wait = wait < 0 ? 0 : wait > SWEEP_MS ? SWEEP_MS : wait;
        struct pollfd p[2] = {{hub->wake[0], POLLIN, 0}, {ctx ? ctx->fd : -1, POLLIN, 0}};
        if (poll(p, 2, (int)wait) < 0 && errno != EINTR) {
            BP_LOG_WARN("real-time subscriber: poll failed", "\"errno\":%d", errno);
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        if (p[0].revents)
            while (read(hub->wake[0], drainbuf, sizeof(drainbuf)) > 0)
                ;
        if (ctx && p[1].revents && !drain(hub, ctx)) {
            log_down(hub, &down, ctx->err ? ctx->errstr : "connection lost");
            lost(hub, &ctx);
            next_connect = mono_ms() + backoff;
        }
        now = mono_ms();
        if (now >= next_sweep) {
            sweep(hub);
            next_sweep = now + SWEEP_MS;
        }
    }
    if (ctx)
        redisFree(ctx);
    return NULL;
}

/* ---- the hub ---- */

bp_err_t bp_stream_hub_new(const char *redis_url, int max_streams, bp_stream_hub_t **out)
{
    bp_err_t err = BP_OK;
    sigset_t all, old;
    bool cv = false, mu = false;
    bp_stream_hub_t *hub = calloc(1, sizeof(*hub));
    *out = NULL;
    if (!hub)
        return BP_ENOMEM;
    hub->wake[0] = hub->wake[1] = -1;
    hub->max_open = max_streams > 0 ? (size_t)max_streams : BP_STREAM_MAX_DEFAULT;
    atomic_init(&hub->quit, false);
    hub->pfds = calloc(hub->max_open, sizeof(*hub->pfds));
    hub->pst = calloc(hub->max_open, sizeof(*hub->pst));
    hub->batch = calloc(2, sizeof(*hub->batch));
    if (!hub->pfds || !hub->pst || !hub->batch) {
        err = BP_ENOMEM;
        goto out;
    }
    if (redis_url && *redis_url) {
        err = bp_cache_url_parse(redis_url, &hub->url);
        if (err != BP_OK)
            goto out;
        hub->have_redis = true;
    }
    pthread_condattr_t ca;
    mu = pthread_mutex_init(&hub->mu, NULL) == 0;
    if (!mu || pthread_condattr_init(&ca) != 0) {
        err = BP_ENOMEM;
        goto out;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    cv = pthread_cond_init(&hub->stopped_cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!cv || pipe(hub->wake) != 0) {
        err = BP_EFATAL;
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(hub->wake[i], F_SETFL, fcntl(hub->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(hub->wake[i], F_SETFD, FD_CLOEXEC);
    }
    /* The thread takes no signals: they stay with the threads that expect them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    hub->thread_started = pthread_create(&hub->thread, NULL, subscriber_main, hub) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!hub->thread_started) {
        BP_LOG_ERROR("real-time subscriber thread not started", NULL);
        err = BP_EFATAL;
    }

out:
    if (err != BP_OK) {
        if (hub->wake[0] >= 0) {
            close(hub->wake[0]);
            close(hub->wake[1]);
        }
        if (cv)
            pthread_cond_destroy(&hub->stopped_cv);
        if (mu)
            pthread_mutex_destroy(&hub->mu);
        bp_cache_url_fini(&hub->url);
        free(hub->pfds);
        free(hub->pst);
        free(hub->batch);
        free(hub);
        hub = NULL;
    }
    *out = hub;
    return err;
}

void bp_stream_hub_shutdown(bp_stream_hub_t *hub)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->mu);
    if (!hub->stopping) {
        hub->stopping = true;
        for (size_t b = 0; b < BUCKETS; b++) {
            for (bp_stream_t *st = hub->buckets[b]; st; st = st->next) {
                if (st->suspended) {
                    st->stop_pending = true;
                    hub->stop_pending++;
                    wake_locked(st);
                }
            }
        }
        /* Let the resumed readers end their responses before libmicrohttpd is stopped. */
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += STOP_WAIT_MS / 1000;
        while (hub->stop_pending > 0 &&
               pthread_cond_timedwait(&hub->stopped_cv, &hub->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&hub->mu);
    if (hub->thread_started) {
        atomic_store(&hub->quit, true);
        wake_thread(hub);
        pthread_join(hub->thread, NULL);
        hub->thread_started = false;
    }
}

void bp_stream_hub_destroy(bp_stream_hub_t *hub)
{
    if (!hub)
        return;
    bp_stream_hub_shutdown(hub);
    if (hub->n_open > 0)
        BP_LOG_WARN("real-time hub destroyed with open streams", "\"streams\":%zu", hub->n_open);
    close(hub->wake[0]);
    close(hub->wake[1]);
    pthread_cond_destroy(&hub->stopped_cv);
    pthread_mutex_destroy(&hub->mu);
    bp_cache_url_fini(&hub->url);
    for (size_t b = 0; b < BUCKETS; b++) {
        while (hub->subs[b]) {
            sub_t *e = hub->subs[b];
            hub->subs[b] = e->next;
            free(e);
        }
    }
    free(hub->pfds);
    free(hub->pst);
    free(hub->batch);
    free(hub);
}

size_t bp_stream_hub_count(bp_stream_hub_t *hub)
{
    pthread_mutex_lock(&hub->mu);
    size_t n = hub->n_open;
    pthread_mutex_unlock(&hub->mu);
    return n;
}
