/** @file The libmicrohttpd daemon: request lifecycle, routing, authentication, response
 *  headers and request logging. Handlers live in routes_*.c. */
#include "http/server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "app/log.h"
#include "app/metrics.h"
#include "http/auth.h"
#include "http/batcher.h"
#include "http/pool.h"
#include "http/problem.h"
#include "http/request.h"
#include "http/router.h"
#include "http/routes.h"
#include "http/stream.h"

/** Largest request body accepted; larger ones get 413. */
#define BODY_MAX (64 * 1024)
/** Idle keep-alive connections are closed after this many seconds. */
#define CONNECTION_TIMEOUT_S 30u
/** libmicrohttpd's memory pool per connection (its default is 32 KiB). It clears the whole
 *  pool after every request, which was a tenth of the HTTP threads' time; what a request
 *  needs is its headers (a bearer token of up to BP_AUTH_TOKEN_MAX bytes must still reach
 *  the 401 that names it, not a 431) and the response's. */
#define CONNECTION_MEMORY 16384u
/** Upper bound of simultaneous connections (lowered to fit RLIMIT_NOFILE). */
#define CONNECTION_LIMIT_MAX 10000u
/** Tolerated clock skew on exp/nbf: none, tokens are short-lived and checked as issued. */
#define JWT_LEEWAY_S 0
/** Verified tokens remembered (http/auth.h bp_auth_cache_t; ~180 B each, tokens aside). */
#define JWT_CACHE_SLOTS 1024
/** bp_http_stop() waits at most this long for deferred requests to be answered (under load
 *  new ones keep coming over open connections; libmicrohttpd closes the rest, resumed). */
#define DEFERRED_DRAIN_MS 500

struct bp_http {
    bp_http_config_t cfg;
    bp_http_env_t env;
    bp_auth_config_t auth;
    bp_auth_cache_t *auth_cache;
    bp_http_route_t *routes;
    size_t n_routes;
    struct MHD_Daemon *daemon;
};

/** Per-request state kept by libmicrohttpd between calls of the access handler. The request
 *  lives here, not on the dispatching call's stack, so that a handler can defer it. */
typedef struct {
    char *body;
    size_t len;
    bool too_large;
    bool answered; /**< a response is queued: later calls only drain */
    struct timespec start;
    bp_http_req_t req;
    bp_route_match_t match;
    bp_principal_t principal;
} conn_ctx_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long elapsed_us(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - start->tv_sec) * 1000000LL +
           (now.tv_nsec - start->tv_nsec) / 1000;
}

const char *bp_http_req_header(const bp_http_req_t *req, const char *name)
{
    return req->transport ? MHD_lookup_connection_value(req->transport, MHD_HEADER_KIND, name)
                          : NULL;
}

const char *bp_http_req_query(const bp_http_req_t *req, const char *name)
{
    return req->transport ? MHD_lookup_connection_value(req->transport, MHD_GET_ARGUMENT_KIND, name)
                          : NULL;
}

/** Give back the request's pool slot now: a suspended request must not hold one, or the
 *  next request of its HTTP thread could wait for it while the answer that would release it
 *  waits for that very thread. */
static void release_slot(bp_http_req_t *req)
{
    if (req->conn) {
        bp_http_pool_release(req->env->pool, req->conn);
        req->conn = NULL;
    }
}

bool bp_http_req_defer(bp_http_req_t *req)
{
    if (!req->transport || req->deferred)
        return false;
    release_slot(req);
    MHD_suspend_connection(req->transport);
    req->deferred = true;
    atomic_fetch_add(&req->env->deferred_open, 1);
    return true;
}

void bp_http_req_resume(bp_http_req_t *req)
{
    release_slot(req); /* taken after all when the lanes were closing */
    /* libmicrohttpd calls the access handler again, which queues the response; its lock
     * orders what this thread wrote before it. */
    MHD_resume_connection(req->transport);
}

static void blob_free(void *cls)
{
    bp_http_blob_unref(cls);
}

/** Turn @p r into a libmicrohttpd response and queue it; the body moves to libmicrohttpd. */
static enum MHD_Result queue_response(struct MHD_Connection *conn, bp_http_resp_t *r)
{
    if (r->stream)
        return bp_stream_respond(conn, (unsigned)r->status, &r->stream);
    if (r->status == 0) { /* a handler that could not even build its answer */
        free(r->body);
        r->body = NULL;
        r->body_len = 0;
        bp_http_blob_unref(r->blob);
        r->blob = NULL;
        r->status = 500;
        r->content_type = NULL;
    }
    struct MHD_Response *resp;
    if (r->blob) { /* shared: the response holds the reference until it is destroyed */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(r->blob->len, r->blob->data,
                                                                      blob_free, r->blob);
        if (!resp) {
            bp_http_blob_unref(r->blob);
            r->blob = NULL;
            return MHD_NO;
        }
        r->blob = NULL;
    } else {
        resp = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(r->body);
            r->body = NULL;
            return MHD_NO;
        }
        r->body = NULL;
    }
    bool ok = true;
    if (r->content_type)
        ok &=
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type) == MHD_YES;
    if (r->cache_control)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, r->cache_control) ==
              MHD_YES;
    if (r->www_authenticate)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                      r->www_authenticate) == MHD_YES;
    if (r->allow)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow) == MHD_YES;
    if (r->location[0])
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location) == MHD_YES;
    if (r->retry_after_s > 0) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", r->retry_after_s);
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs) == MHD_YES;
    }
    enum MHD_Result ret = ok ? MHD_queue_response(conn, (unsigned)r->status, resp) : MHD_NO;
    MHD_destroy_response(resp);
    return ret;
}

/** Check the token and the route's access rule; on failure fill the 401/403 response.
 *  @return true when the handler may run. */
static bool authenticate(bp_http_t *h, struct MHD_Connection *conn, bp_http_req_t *req,
                         bp_principal_t *principal)
{
    unsigned access = req->match->route->access;
    if (!(access & BP_ACCESS_TOKEN))
        return true;
    const char *detail = NULL;
    const char *header =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    bp_auth_result_t r = bp_auth_verify_cached(h->auth_cache, &h->auth, header, req->now_ms / 1000,
                                               principal, &detail);
    if (r == BP_AUTH_OK) {
        r = bp_auth_authorize(principal, access, bp_route_param(req->match, "playerId"), &detail);
    }
    if (r == BP_AUTH_OK) {
        req->principal = principal;
        return true;
    }
    bp_http_reply_problem(req, bp_auth_http_status(r), bp_auth_result_slug(r), detail);
    /* RFC 6750 3: say why only when a token was presented. */
    if (r != BP_AUTH_MISSING && r != BP_AUTH_FORBIDDEN)
        req->resp.www_authenticate = "Bearer realm=\"battlepass\", error=\"invalid_token\"";
    return false;
}

/** Fill req->resp: enforce the body limit, route, authenticate, run the handler. */
static void handle(bp_http_t *h, struct MHD_Connection *conn, bp_http_req_t *req, conn_ctx_t *ctx,
                   bp_route_match_t *m)
{
    char detail[160];

    /* The body limit is a property of the transport: it is enforced before routing. */
    if (ctx->too_large) {
        bp_http_reply_problem(req, 413, "body-too-large",
                              "request bodies are limited to 65536 bytes");
        return;
    }
    switch (bp_route_match(h->routes, h->n_routes, req->method, req->path, m)) {
    case BP_ROUTE_NOT_FOUND:
        bp_http_reply_problem(req, 404, "not-found", "no such resource");
        return;
    case BP_ROUTE_BAD_METHOD:
        snprintf(detail, sizeof(detail), "this resource allows %s", m->allow);
        bp_http_reply_problem(req, 405, "method-not-allowed", detail);
        req->resp.allow = m->allow;
        return;
    case BP_ROUTE_BAD_PARAM:
        snprintf(detail, sizeof(detail), "%s must be 1 to %d characters of [A-Za-z0-9._:@-]",
                 m->bad_param, BP_ID_MAX);
        bp_http_reply_problem(req, 400, "invalid-parameter", detail);
        return;
    case BP_ROUTE_FOUND:
        break;
    }
    req->match = m;
    if (authenticate(h, conn, req, &ctx->principal))
        m->route->handler(req);
}

/** Queue the answer of a request handled (now or, deferred, earlier) and log it. */
static enum MHD_Result finish(struct MHD_Connection *conn, const char *url, const char *method,
                              conn_ctx_t *ctx)
{
    bp_http_req_t *req = &ctx->req;

    ctx->answered = true;
    bp_http_req_finish(req);
    req->principal = NULL;
    int status = req->resp.status ? req->resp.status : 500;
    enum MHD_Result ret = queue_response(conn, &req->resp);
    if (req->deferred)
        atomic_fetch_sub(&req->env->deferred_open, 1);
    char path[256], meth[32];
    bp_log_str(path, sizeof(path), url);
    bp_log_str(meth, sizeof(meth), method);
    if (status >= 500)
        BP_LOG_WARN("request failed", "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d", meth, path,
                    status);
    long long us = elapsed_us(&ctx->start);
    BP_LOG_DEBUG("request", "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"us\":%lld", meth,
                 path, status, us);
    bp_metrics_http(meth, req->match ? req->match->route->pattern : NULL, status, (double)us / 1e6);
    return ret;
}

/** Handle a fully received request (or one refused early): answer it now, or leave it to
 *  the thread it was deferred to (the connection is suspended until it is resumed). */
static enum MHD_Result dispatch(bp_http_t *h, struct MHD_Connection *conn, const char *url,
                                const char *method, conn_ctx_t *ctx)
{
    bp_http_req_t *req = &ctx->req;

    req->env = &h->env;
    req->method = method;
    req->path = url;
    req->now_ms = wall_ms();
    req->body = ctx->body;
    req->body_len = ctx->len;
    req->transport = conn;
    handle(h, conn, req, ctx, &ctx->match);
    if (req->deferred)
        return MHD_YES; /* called again once resumed */
    return finish(conn, url, method, ctx);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    bp_http_t *h = cls;
    conn_ctx_t *ctx = *con_cls;
    (void)version;

    if (!ctx) {
        /* First call: headers only. Answering now would make libmicrohttpd drop
         * keep-alive (design §7), so the response is queued on a later call. */
        ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &ctx->start);
        *con_cls = ctx;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > BODY_MAX) {
            /* Refuse before reading the body; closing the connection is right here. */
            ctx->too_large = true;
            return dispatch(h, conn, url, method, ctx);
        }
        return MHD_YES;
    }
    if (ctx->answered) { /* refused early; libmicrohttpd may still hand us the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->req.deferred) /* resumed: the answer is ready */
        return finish(conn, url, method, ctx);
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->too_large)
            return MHD_YES;
        if (ctx->len + n > BODY_MAX) { /* chunked: only known now; drain, then 413 */
            ctx->too_large = true;
            free(ctx->body);
            ctx->body = NULL;
            ctx->len = 0;
            return MHD_YES;
        }
        char *grown = realloc(ctx->body, ctx->len + n + 1);
        if (!grown)
            return MHD_NO;
        memcpy(grown + ctx->len, upload_data, n);
        ctx->len += n;
        grown[ctx->len] = '\0';
        ctx->body = grown;
        return MHD_YES;
    }
    return dispatch(h, conn, url, method, ctx);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    conn_ctx_t *ctx = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (ctx) {
        /* A request that ends before its answer was queued (e.g. refused, or its client
         * gone while it was deferred) still holds what it borrowed. */
        if (ctx->req.deferred && !ctx->answered)
            atomic_fetch_sub(&ctx->req.env->deferred_open, 1);
        bp_http_req_finish(&ctx->req);
        free(ctx->req.resp.body);
        bp_http_blob_unref(ctx->req.resp.blob);
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512], esc[600];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    /* Clients leaving mid-response are routine (every event stream ends so): no warning. */
    if (strstr(msg, "closed by remote peer") || strstr(msg, "no longer available for sending"))
        BP_LOG_DEBUG("libmicrohttpd", "\"detail\":\"%s\"", bp_log_str(esc, sizeof(esc), msg));
    else
        BP_LOG_WARN("libmicrohttpd", "\"detail\":\"%s\"", bp_log_str(esc, sizeof(esc), msg));
}

/** Concatenate the per-resource tables. @return BP_OK or BP_ENOMEM. */
static bp_err_t build_routes(bp_http_t *h)
{
    const struct {
        const bp_http_route_t *routes;
        const size_t *n;
    } tables[] = {
        {bp_http_routes_health, &bp_http_routes_health_n},
        {bp_http_routes_openapi, &bp_http_routes_openapi_n},
        {bp_http_routes_seasons, &bp_http_routes_seasons_n},
        {bp_http_routes_progress, &bp_http_routes_progress_n},
        {bp_http_routes_analytics, &bp_http_routes_analytics_n},
        {bp_http_routes_audit, &bp_http_routes_audit_n},
        {bp_http_routes_xp, &bp_http_routes_xp_n},
        {bp_http_routes_rewards, &bp_http_routes_rewards_n},
        {bp_http_routes_premium, &bp_http_routes_premium_n},
        {bp_http_routes_stream, &bp_http_routes_stream_n},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
        total += *tables[i].n;
    h->routes = calloc(total, sizeof(*h->routes));
    if (!h->routes)
        return BP_ENOMEM;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        memcpy(h->routes + h->n_routes, tables[i].routes, *tables[i].n * sizeof(*h->routes));
        h->n_routes += *tables[i].n;
    }
    return BP_OK;
}

/**
 * @return the connection limit: CONNECTION_LIMIT_MAX, or what the descriptor limit leaves.
 * The soft RLIMIT_NOFILE is raised first, up to the hard one: many systems start processes
 * at a soft 1024, which would hold fewer than a thousand clients at once (the others wait
 * in the listen queue until a connection closes, and keep-alive ones close only after
 * CONNECTION_TIMEOUT_S).
 */
static unsigned connection_limit(int threads)
{
    struct rlimit rl;
    unsigned limit = CONNECTION_LIMIT_MAX;
    /* Leave room for listen/epoll/ITC fds and the store connections. */
    rlim_t reserve = 64 + (rlim_t)threads * 8;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return limit;
    rlim_t want = CONNECTION_LIMIT_MAX + reserve;
    if (rl.rlim_cur < want && rl.rlim_max > rl.rlim_cur) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            BP_LOG_INFO("descriptor limit raised for HTTP connections", "\"from\":%llu,\"to\":%llu",
                        (unsigned long long)was, (unsigned long long)rl.rlim_cur);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t room = rl.rlim_cur > reserve + 16 ? rl.rlim_cur - reserve : 16;
    if (room < limit) {
        limit = (unsigned)room;
        BP_LOG_WARN("HTTP connections limited by the descriptor limit (RLIMIT_NOFILE)",
                    "\"maxConnections\":%u,\"nofile\":%llu", limit,
                    (unsigned long long)rl.rlim_cur);
    }
    return limit;
}

bp_err_t bp_http_start(const bp_http_config_t *cfg, bp_http_t **out)
{
    bp_err_t err = BP_OK;
    bp_http_t *h = NULL;
    struct addrinfo hints, *ai = NULL;
    char port[8];

    *out = NULL;
    if (!cfg || !cfg->seasons || !cfg->pg_dsn) {
        BP_LOG_ERROR("HTTP server misconfigured: seasons and pg_dsn are required", NULL);
        return BP_EFATAL;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        return BP_ENOMEM;
    h->cfg = *cfg;
    if (h->cfg.threads < 1)
        h->cfg.threads = 1;
    h->auth.hs256_secret = cfg->jwt_hs256_secret;
    h->auth.issuer = cfg->jwt_issuer;
    h->auth.audience = cfg->jwt_audience;
    h->auth.leeway_s = JWT_LEEWAY_S;
    h->auth.rs256_public_key = cfg->jwt_rs256_public_key;
    if (cfg->jwt_alg && bp_auth_alg_parse(cfg->jwt_alg, &h->auth.alg) != 0) {
        BP_LOG_ERROR("HTTP server misconfigured: JWT algorithm must be HS256 or RS256", NULL);
        err = BP_EFATAL;
        goto out;
    }
    if (h->auth.alg == BP_AUTH_ALG_RS256 &&
        (!cfg->jwt_rs256_public_key || !*cfg->jwt_rs256_public_key))
        BP_LOG_WARN("no RS256 public key configured: authenticated routes will answer 401", NULL);
    else if (h->auth.alg == BP_AUTH_ALG_HS256 &&
             (!cfg->jwt_hs256_secret || !*cfg->jwt_hs256_secret))
        BP_LOG_WARN("no JWT secret configured: authenticated routes will answer 401", NULL);
    err = build_routes(h);
    if (err != BP_OK)
        goto out;
    err = bp_http_pool_new(cfg->pg_dsn, cfg->redis_url, cfg->cache_ttl_s, h->cfg.threads,
                           &h->env.pool);
    if (err != BP_OK) {
        BP_LOG_ERROR("HTTP store pool not created", "\"error\":\"%s\"", bp_err_str(err));
        err = err == BP_ENOMEM ? BP_ENOMEM : BP_EFATAL;
        goto out;
    }
    err = bp_http_xp_new(&h->cfg, &h->env.xp);
    if (err != BP_OK)
        goto out;
    if (!(h->auth_cache = bp_auth_cache_new(JWT_CACHE_SLOTS)) ||
        !(h->env.season_json = bp_http_season_cache_new())) {
        err = BP_ENOMEM;
        goto out;
    }
    err = bp_http_reads_new(&h->cfg, &h->env.reads);
    if (err == BP_OK)
        err = bp_http_claims_new(&h->cfg, &h->env.claims);
    if (err != BP_OK) {
        BP_LOG_ERROR("HTTP batch lanes not started", "\"error\":\"%s\"", bp_err_str(err));
        goto out;
    }
    err = bp_stream_hub_new(cfg->redis_url, BP_STREAM_MAX_DEFAULT, &h->env.streams);
    if (err != BP_OK)
        goto out;
    h->env.cfg = &h->cfg;
    h->env.seasons = cfg->seasons;
    atomic_init(&h->env.next_seasons_check, 0);
    atomic_init(&h->env.next_ready_load, 0);
    atomic_init(&h->env.seasons_loaded, false);
    atomic_init(&h->env.ready_until, 0);
    atomic_init(&h->env.deferred_open, 0);

    const char *host = cfg->listen_host && *cfg->listen_host ? cfg->listen_host : NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        BP_LOG_ERROR("cannot resolve HTTP listen address", "\"host\":\"%s\",\"error\":\"%s\"",
                     host ? host : "", gai_strerror(gai));
        err = BP_EFATAL;
        goto out;
    }

    unsigned max_conns = connection_limit(h->cfg.threads);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
    flags |= MHD_ALLOW_SUSPEND_RESUME; /* event streams wait suspended (http/stream.c) */
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)h->cfg.threads,
        MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (!h->daemon) {
        BP_LOG_ERROR("cannot start the HTTP server", "\"host\":\"%s\",\"port\":%u",
                     host ? host : "", (unsigned)cfg->port);
        err = BP_EFATAL;
        goto out;
    }
    BP_LOG_INFO("HTTP server listening",
                "\"host\":\"%s\",\"port\":%u,\"threads\":%d,\"poll\":\"%s\",\"maxConnections\":%u",
                host ? host : "", (unsigned)cfg->port, h->cfg.threads,
                (flags & MHD_USE_EPOLL) ? "epoll" : "poll", max_conns);
out:
    if (ai)
        freeaddrinfo(ai);
    if (err != BP_OK) {
        bp_http_stop(h);
        h = NULL;
    }
    *out = h;
    return err;
}

void bp_http_stop(bp_http_t *h)
{
    if (!h)
        return;
    /* libmicrohttpd must not be stopped with suspended connections: end the streams first. */
    bp_stream_hub_shutdown(h->env.streams);
    /* Then the deferred requests: the lanes answer what they hold (requests deferred from
     * now on are answered on their own thread), and the HTTP threads queue the answers. */
    bp_http_reads_close(h->env.reads);
    bp_http_batcher_close(h->env.claims);
    struct timespec tick = {0, 1000000L};
    for (int waited = 0; waited < DEFERRED_DRAIN_MS && atomic_load(&h->env.deferred_open) > 0;
         waited++)
        nanosleep(&tick, NULL);
    /* Joins the worker threads: handlers running now finish first. */
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    bp_stream_hub_destroy(h->env.streams); /* after the daemon, which frees the streams */
    bp_http_reads_destroy(h->env.reads);
    bp_http_batcher_destroy(h->env.claims);
    bp_http_season_cache_destroy(h->env.season_json, h->env.seasons);
    bp_auth_cache_destroy(h->auth_cache);
    bp_http_pool_destroy(h->env.pool);
    bp_http_xp_destroy(h->env.xp);
    free(h->routes);
    free(h);
}
