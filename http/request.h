/** @file What a route handler sees: the request, the server's shared resources borrowed
 *  for the request's duration, and the response it fills; helpers to fill it. */
#ifndef BP_REQUEST_H
#define BP_REQUEST_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "http/auth.h"
#include "http/bodies.h"
#include "http/pool.h"
#include "http/router.h"
#include "http/server.h"
#include "store/pg.h"
#include "store/seasons.h"

/** Least time between two season-snapshot freshness checks on the request path. */
#define BP_HTTP_SEASONS_CHECK_MS 1000
/** Longest wait for a free pool slot before answering 503. */
#define BP_HTTP_POOL_WAIT_MS 2000

/** Server-wide state shared by every request; owned by the server (http/server.c). */
typedef struct {
    const bp_http_config_t *cfg; /**< the server's copy */
    bp_http_pool_t *pool;
    bp_seasons_t *seasons;              /**< borrowed from the app */
    _Atomic int64_t next_seasons_check; /**< ms; see BP_HTTP_SEASONS_CHECK_MS */
    _Atomic int64_t next_ready_load;    /**< ms; /ready forces a first load at most 1/s */
    atomic_bool seasons_loaded;         /**< a load from /ready has succeeded once */
    _Atomic int64_t ready_until;        /**< ms; /ready answers from memory until then */
    struct bp_http_xp *xp;              /**< XP grant producer (routes_xp.c), owned */
    struct bp_stream_hub *streams;      /**< real-time fan-out (http/stream.h), owned */
    /** Progress reads, batched (routes_progress.c); NULL: read on the request's thread. */
    struct bp_http_reads *reads;
    /** Reward claims, group-committed (routes_rewards.c); NULL: one transaction each. */
    struct bp_http_batcher *claims;
    struct bp_http_season_cache *season_json; /**< rendered seasons (routes_seasons.c) */
    atomic_long deferred_open; /**< deferred requests not answered yet (bp_http_stop waits) */
} bp_http_env_t;

/** A response body shared by many responses (e.g. a rendered season), reference-counted;
 *  immutable once published. */
typedef struct bp_http_blob {
    atomic_long refs;
    size_t len;
    char data[]; /**< len bytes */
} bp_http_blob_t;

/** @return a blob holding a copy of data[0..len) with one reference, or NULL (no memory). */
bp_http_blob_t *bp_http_blob_new(const char *data, size_t len);
/** Take one more reference. @return @p b. */
bp_http_blob_t *bp_http_blob_ref(bp_http_blob_t *b);
/** Drop one reference (the last frees it). Accepts NULL. */
void bp_http_blob_unref(bp_http_blob_t *b);

/** The response a handler fills. Strings other than body are static or outlive the request. */
typedef struct {
    int status; /**< 0 = not set (the server answers 500) */
    char *body; /**< heap (free()), owned; NULL = empty */
    size_t body_len;
    const char *content_type;     /**< NULL = none */
    const char *cache_control;    /**< NULL = none */
    const char *www_authenticate; /**< set on 401 */
    const char *allow;            /**< set on 405 */
    int retry_after_s;            /**< > 0: Retry-After header (503, 429) */
    char location[160];           /**< "" = none; else the Location header (201) */
    struct bp_stream *stream;     /**< owned; set: the body is this event stream
                                   *   (http/stream.h), body and content_type are unused */
    bp_http_blob_t *blob;         /**< one reference, owned; set: the body (body unused) */
} bp_http_resp_t;

struct MHD_Connection;

/** One request as handlers see it. */
typedef struct bp_http_req {
    bp_http_env_t *env;
    const char *method;
    const char *path;
    const bp_route_match_t *match;
    const bp_principal_t *principal; /**< NULL on public routes */
    int64_t now_ms;                  /**< wall clock at the start of the request */
    const char *body;                /**< request body, NULL when empty; borrowed */
    size_t body_len;
    struct MHD_Connection *transport; /**< for bp_http_req_header/_query (server.c) */
    bp_http_resp_t resp;
    /* Borrowed lazily by the helpers below, given back by bp_http_req_finish(). */
    bp_http_conn_t *conn;
    const bp_season_list_t *snap;
    bool deferred; /**< bp_http_req_defer() was called */
} bp_http_req_t;

/** @return the value of path param @p name (never NULL for a param of the route). */
const char *bp_http_req_param(const bp_http_req_t *req, const char *name);

/** @return request header @p name (case-insensitive), or NULL when absent; borrowed for
 *  the request's duration. Implemented by http/server.c. */
const char *bp_http_req_header(const bp_http_req_t *req, const char *name);
/** @return the first query argument @p name (percent-decoded), or NULL when absent;
 *  borrowed for the request's duration. Implemented by http/server.c. */
const char *bp_http_req_query(const bp_http_req_t *req, const char *name);

/**
 * The request's PostgreSQL connection: borrows a pool slot on first use (kept until
 * bp_http_req_finish) and connects it if needed.
 * @return BP_OK with *out borrowed for the request, BP_ERETRY (no slot free in time or the
 *         database is unreachable), BP_ENOMEM.
 */
bp_err_t bp_http_req_pg(bp_http_req_t *req, bp_pg_t **out) BP_MUSTCHECK;

/** @return the request's Redis client (borrowing a pool slot on first use), or NULL when
 *  there is no cache or no slot was free (callers then read PostgreSQL). */
bp_cache_t *bp_http_req_cache(bp_http_req_t *req);

/**
 * The season snapshot, acquired on first use and held until bp_http_req_finish(). At most
 * once per BP_HTTP_SEASONS_CHECK_MS across all threads, asks the snapshot to reload if it
 * is stale; a failed reload keeps the previous snapshot (logged by store/seasons).
 * @return the snapshot (never NULL; may be empty).
 */
const bp_season_list_t *bp_http_req_seasons(bp_http_req_t *req);

/**
 * Parse the request body as one JSON object with the limits of bp_http_body_json (depth,
 * number range, duplicate keys refused).
 * @return BP_OK with *out owned by the caller (json_decref); BP_EINVAL after replying 400
 *         `invalid-body` problem+json naming the problem (no body, too deep, a number out
 *         of range, bad JSON at line:column, not an object).
 */
bp_err_t bp_http_req_json(bp_http_req_t *req, json_t **out) BP_MUSTCHECK;

/**
 * Parse the request body (bp_http_req_json) and check it as body @p kind into @p out, the
 * struct of that kind (bp_http_body_parse).
 * @param root out: the parsed body, which @p out borrows strings from; the caller
 *             json_decref()s it (NULL after a refusal)
 * @return true, or false after replying 400 `invalid-body` naming the problem.
 */
bool bp_http_req_body(bp_http_req_t *req, bp_body_kind_t kind, json_t **root, void *out);

/**
 * Read the numeric query parameters @p params[0..n) into @p out[0..n)
 * (bp_http_query_num: absent ones take their default).
 * @return true, or false after replying 400 `invalid-parameter` with the first broken
 *         parameter's problem.
 */
bool bp_http_req_query_nums(bp_http_req_t *req, const bp_query_num_t *params, size_t n,
                            long long *out);

/** The query of a list read in pages, newest first (GET /audit, GET /progress/{id}/history). */
typedef struct {
    size_t limit;   /**< 1..the list's maximum */
    int64_t cursor; /**< 0: the first page; else the nextCursor of an earlier page */
} bp_http_page_query_t;

/**
 * Read `limit` (1..@p limit_max, @p limit_default when absent) and `cursor` (a nextCursor;
 * absent or empty: the first page) into @p out.
 * @return true, or false after replying 400 `invalid-parameter` ("limit must be an integer
 *         from 1 to <limit_max>", "cursor must be a nextCursor of an earlier page").
 */
bool bp_http_req_page_query(bp_http_req_t *req, long long limit_max, long long limit_default,
                            bp_http_page_query_t *out);

/** One item of a page as JSON (a new reference), or NULL when out of memory. */
typedef json_t *(*bp_http_item_json_fn)(const void *item);

/**
 * Respond 200 (Cache-Control: no-store) with one page: {"items": [...], "nextCursor": "N"},
 * each of the @p n items of @p item_size bytes at @p items rendered by @p item_json;
 * nextCursor (a decimal string) only when @p next_cursor > 0. Out of memory: a bare 500.
 * @p items stays the caller's.
 */
void bp_http_reply_page(bp_http_req_t *req, const void *items, size_t n, size_t item_size,
                        bp_http_item_json_fn item_json, int64_t next_cursor);

/**
 * Answer later, from another thread: the server suspends the connection (no socket work,
 * no timeout) and the handler returns at once without a response. Then whoever holds @p req
 * fills req->resp and calls bp_http_req_resume() exactly once, from any thread. Until then
 * @p req and what it borrows (path params, principal, body, season snapshot) stay valid and
 * nothing else touches it; its pool slot is given back here and at the resume (use the
 * thread's own store connections meanwhile). Call it before handing @p req over, so the
 * resume cannot come first.
 * @return true, or false when this request cannot be deferred (no transport: answer now).
 */
bool bp_http_req_defer(bp_http_req_t *req) BP_MUSTCHECK;
/** Hand a deferred request, answered, back to the server (http/server.c). */
void bp_http_req_resume(bp_http_req_t *req);

/** Answer 200 with a shared body: takes one reference of @p blob (NULL: a bare 500). */
void bp_http_reply_blob(bp_http_req_t *req, bp_http_blob_t *blob, const char *content_type);

/** Give back what the request borrowed (pool slot, snapshot); the response stays. */
void bp_http_req_finish(bp_http_req_t *req);

/** Respond @p status with @p obj serialised compactly as application/json. Takes @p obj's
 *  reference. On allocation failure the response becomes a bare 500. */
void bp_http_reply_json(bp_http_req_t *req, int status, json_t *obj);

/** Respond @p status with @p body (heap, ownership taken; NULL means out of memory: a bare
 *  500) as @p content_type. */
void bp_http_reply_owned(bp_http_req_t *req, int status, char *body, size_t len,
                         const char *content_type);

/**
 * Respond to a failed store call: 503 `database-unavailable` with Retry-After: 1 for
 * BP_ERETRY, else 500 `internal-error`; logs it at warn. @p what completes "cannot ...",
 * e.g. "read the history".
 */
void bp_http_reply_store_error(bp_http_req_t *req, bp_err_t err, const char *what);

/** Respond with an application/problem+json body (http/problem.h); a previous body is
 *  freed. @p slug and @p detail are copied. */
void bp_http_reply_problem(bp_http_req_t *req, int status, const char *slug, const char *detail);

#endif
