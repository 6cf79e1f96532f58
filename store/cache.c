/** @file Redis progress cache and real-time publication over one synchronous hiredis
 *  connection (RESP2), connected lazily and dropped on any I/O error; progress writes that
 *  failed are remembered and written again once Redis answers. Not thread-safe: one
 *  bp_cache_t per thread. */
#include "store/cache.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/log.h"

#define CONNECT_TIMEOUT_US 200000
#define COMMAND_TIMEOUT_US 500000
/* After a failed connect (or a command timeout) calls fail fast for this long, so a dead
 * Redis costs the hot path nothing. */
#define RECONNECT_AFTER_MS 1000
/* Keys per call of the progress script (all of one season). */
#define CALL_ITEMS 128
/* Script calls sent before their replies are read: bounds hiredis's buffers on huge batches. */
#define PIPELINE_CALLS 16
/* Progress writes remembered while Redis fails, at most (distinct season and player); past
 * that the client forgets every cached progress entry instead once Redis is back. */
#define MISSED_MAX BP_CACHE_MISSED_MAX
/* Keys removed per SCAN step when forgetting every progress entry. */
#define FORGET_CHUNK 1000
#define HOST_MAX 255
#define KEY_MAX (sizeof("bp:progress:{}:") + 2 * BP_ID_MAX)
/* Escaped ids may grow up to 6x (\u00XX); bp_log_str needs 7 bytes of headroom. */
#define ESC_MAX (6 * BP_ID_MAX + 8)

/*
 * Monotonic upsert of progress hashes, any number per call (all keys of one season, so one
 * hash slot: the "{season}" tag of the keys). ARGV[1] = TTL seconds; then 7 values per key,
 * in KEYS order: totalXp, level, updatedAt, premium ("" leaves it alone, "0"/"1" sets it; "1"
 * always wins since a pass once granted stays granted), channel ("" = no publication),
 * message, paidXp ("" leaves it alone; else set when absent or higher, since paid XP never
 * decreases either).
 * XP fields change only when the cached totalXp is absent or lower, and only such a change
 * is published: a late writer can neither regress the cache nor the subscribers.
 * Returns the number of keys whose XP fields were written. One call per batch chunk instead
 * of one per player: the per-call cost of a script is most of what a single key costs.
 */
static const char SCRIPT[] =
    "local ttl = ARGV[1]\n"
    "local applied = 0\n"
    "for i = 1, #KEYS do\n"
    "  local k, b = KEYS[i], 1 + (i - 1) * 7\n"
    "  local total = ARGV[b + 1]\n"
    "  local cur = redis.call('HGET', k, 'totalXp')\n"
    "  if not cur or not tonumber(cur) or tonumber(cur) < tonumber(total) then\n"
    "    redis.call('HSET', k, 'totalXp', total, 'level', ARGV[b + 2], 'updatedAt', ARGV[b + 3])\n"
    "    applied = applied + 1\n"
    "    if ARGV[b + 5] ~= '' then redis.call('PUBLISH', ARGV[b + 5], ARGV[b + 6]) end\n"
    "  end\n"
    "  local premium = ARGV[b + 4]\n"
    "  if premium == '1' or (premium == '0' and redis.call('HEXISTS', k, 'premium') == 0) then\n"
    "    redis.call('HSET', k, 'premium', premium)\n"
    "  end\n"
    "  local paid = ARGV[b + 7]\n"
    "  if paid ~= '' then\n"
    "    local cpaid = redis.call('HGET', k, 'paidXp')\n"
    "    if not cpaid or not tonumber(cpaid) or tonumber(cpaid) < tonumber(paid) then\n"
    "      redis.call('HSET', k, 'paidXp', paid)\n"
    "    end\n"
    "  end\n"
    "  redis.call('EXPIRE', k, ttl)\n"
    "end\n"
    "return applied\n";

/* A SCRIPT call being built: items of one season (cap of them at most), and room for its
 * argument vector. Kept by the client between calls. */
struct call {
    size_t n, cap;
    struct item *items;
    const char **argv; /* 3 + cap * 8 + 1 */
    size_t *lens;
};

typedef struct call call_t;

struct bp_cache {
    char host[HOST_MAX + 1];
    int port;
    int db;
    char *user;     /* NULL: AUTH with the password only */
    char *password; /* NULL: no AUTH; never logged */
    int ttl_s;
    redisContext *ctx; /* NULL while disconnected */
    char sha[48];      /* SHA1 of SCRIPT as returned by SCRIPT LOAD */
    int64_t next_connect_ms;
    bool down; /* unreachability already logged; cleared (and logged) on reconnect */

    /* Progress writes that did not reach Redis. A Redis that kept its data through the
     * outage (a stall, a partition, a restart from a snapshot) would otherwise serve the
     * older totals until their TTL; they are written again before anything else once
     * Redis answers (the monotonic script makes that safe whatever happened meanwhile). */
    struct missed *missed; /* distinct (season, player), highest total kept */
    size_t n_missed, cap_missed;
    uint32_t *slots;          /* open addressing over missed: index + 1, 0 = free */
    size_t n_slots;           /* a power of two >= 2 * cap_missed */
    bool missed_overflow;     /* more than MISSED_MAX: forget every progress entry instead */
    int64_t next_catch_up_ms; /* after Redis refused the catch-up, not before this */

    call_t call; /* buffer of the script calls being sent */
};

struct missed {
    char season_id[BP_ID_MAX + 1];
    char player_id[BP_ID_MAX + 1];
    int64_t total_xp;
    int32_t level;
    int64_t updated_at_ms;
};

/* One key's part of a SCRIPT call, fully formatted. */
typedef struct item {
    char season[BP_ID_MAX + 1]; /* keys of one call share it (one hash slot) */
    char key[KEY_MAX];
    char total_xp[24];
    char level[16];
    char updated_at[24];
    const char *premium;
    char channel[sizeof("bp:progress:") + BP_ID_MAX];
    char msg[2 * ESC_MAX + 96];
    char paid_xp[24]; /* "" = leave alone */
} item_t;

/* Produces item @p i of a pipeline; false skips it. */
typedef bool (*item_fn)(const void *arg, size_t i, item_t *it);

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* hiredis writes with write(2): a peer that went away would raise SIGPIPE and kill the
 * process. Block it around our I/O and swallow one we caused, leaving the process's signal
 * disposition alone (a library must not change it). */
typedef struct {
    sigset_t old;
    bool was_pending;
} sigpipe_guard_t;

static void sigpipe_block(sigpipe_guard_t *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pend);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(sigpipe_guard_t *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pend);
    if (!g->was_pending && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE) == 1) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Decode %XX escapes of a URL userinfo part into a new string. @return NULL on bad input
 * or allocation failure. */
static char *url_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            unsigned v;
            char hex[3] = {0};
            if (i + 2 >= n)
                goto bad;
            hex[0] = s[i + 1];
            hex[1] = s[i + 2];
            if (!hex[0] || !hex[1] || sscanf(hex, "%2x", &v) != 1 || v == 0)
                goto bad;
            out[o++] = (char)v;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Parse a decimal in [lo, hi] spanning exactly s[0..n). */
static bool parse_num(const char *s, size_t n, long lo, long hi, long *out)
{
    long v = 0;
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* redis://[[user]:password@]host[:port][/db] into @p c. @return BP_OK, BP_EINVAL, BP_ENOMEM. */
static bp_err_t parse_url(bp_cache_t *c, const char *url)
{
    static const char scheme[] = "redis://";
    long v;
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return BP_EINVAL;
    const char *p = url + sizeof(scheme) - 1;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q; /* the last one: an unescaped '@' in a password still works */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(c->user = url_decode(p, (size_t)(colon - p))))
                return BP_EINVAL;
            c->password = url_decode(colon + 1, (size_t)(at - colon - 1));
        } else { /* "password@host": no user name */
            c->password = url_decode(p, (size_t)(at - p));
        }
        if (!c->password || !c->password[0])
            return BP_EINVAL;
        p = at + 1;
    }
    const char *hs = p, *he;
    if (*p == '[') { /* [IPv6] */
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he)
            return BP_EINVAL;
        p = he + 1;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (!he)
            he = end;
        p = he;
    }
    if (he == hs || (size_t)(he - hs) > HOST_MAX)
        return BP_EINVAL;
    memcpy(c->host, hs, (size_t)(he - hs));
    c->host[he - hs] = '\0';
    c->port = 6379;
    if (p < end) {
        if (*p != ':' || !parse_num(p + 1, (size_t)(end - p - 1), 1, 65535, &v))
            return BP_EINVAL;
        c->port = (int)v;
    }
    c->db = 0;
    if (slash && slash[1]) {
        if (!parse_num(slash + 1, strlen(slash + 1), 0, INT_MAX, &v))
            return BP_EINVAL;
        c->db = (int)v;
    }
    return BP_OK;
}

bp_err_t bp_cache_new(const char *url, int ttl_s, bp_cache_t **out)
{
    bp_err_t rc = BP_OK;
    bp_cache_t *c = calloc(1, sizeof(*c));
    if (!c) {
        rc = BP_ENOMEM;
        goto out;
    }
    if (ttl_s <= 0) {
        rc = BP_EINVAL;
        goto out;
    }
    c->ttl_s = ttl_s;
    rc = parse_url(c, url);

out:
    if (rc != BP_OK) {
        bp_cache_destroy(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

static void drop(bp_cache_t *c)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}

void bp_cache_destroy(bp_cache_t *c)
{
    if (!c)
        return;
    drop(c);
    free(c->missed);
    free(c->slots);
    free(c->call.items);
    free(c->call.argv);
    free(c->call.lens);
    free(c->user);
    if (c->password) {
        memset(c->password, 0, strlen(c->password));
        free(c->password);
    }
    free(c);
}

static void log_down(bp_cache_t *c, const char *what, const char *detail)
{
    char hb[HOST_MAX * 6 + 8], db[256];
    if (c->down)
        return; /* said once per outage */
    c->down = true;
    BP_LOG_WARN("redis unavailable, cache bypassed", "\"host\":\"%s\",\"port\":%d,\"%s\":\"%s\"",
                bp_log_str(hb, sizeof(hb), c->host), c->port, what,
                bp_log_str(db, sizeof(db), detail ? detail : "unknown"));
}

/* Run one setup command on the fresh context; a reply error or I/O error fails. */
static bool setup_cmd(bp_cache_t *c, redisContext *ctx, redisReply **keep, int argc,
                      const char **argv)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    if (!r) {
        log_down(c, "error", ctx->errstr);
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* The error text of AUTH never contains the password. */
        log_down(c, "error", r->str);
        freeReplyObject(r);
        return false;
    }
    if (keep)
        *keep = r;
    else
        freeReplyObject(r);
    return true;
}

/* Connect, AUTH, SELECT and SCRIPT LOAD. On failure the context is dropped and no new
 * attempt is made for RECONNECT_AFTER_MS. @return BP_OK or BP_ERETRY. */
static bp_err_t connect_now(bp_cache_t *c)
{
    bp_err_t rc = BP_ERETRY;
    redisReply *sha = NULL;
    char dbs[16];
    int64_t now = mono_ms();
    if (now < c->next_connect_ms)
        return BP_ERETRY;

    struct timeval tv = {0, CONNECT_TIMEOUT_US};
    redisContext *ctx = redisConnectWithTimeout(c->host, c->port, tv);
    if (!ctx || ctx->err) {
        log_down(c, "error", ctx ? ctx->errstr : "out of memory");
        goto out;
    }
    struct timeval cmd_tv = {0, COMMAND_TIMEOUT_US};
    if (redisSetTimeout(ctx, cmd_tv) != REDIS_OK) {
        log_down(c, "error", ctx->errstr);
        goto out;
    }
    if (c->password) {
        const char *auth_user[] = {"AUTH", c->user ? c->user : "", c->password};
        const char *auth[] = {"AUTH", c->password};
        if (!(c->user ? setup_cmd(c, ctx, NULL, 3, auth_user) : setup_cmd(c, ctx, NULL, 2, auth)))
            goto out;
    }
    if (c->db != 0) {
        snprintf(dbs, sizeof(dbs), "%d", c->db);
        const char *sel[] = {"SELECT", dbs};
        if (!setup_cmd(c, ctx, NULL, 2, sel))
            goto out;
    }
    const char *load[] = {"SCRIPT", "LOAD", SCRIPT};
    if (!setup_cmd(c, ctx, &sha, 3, load))
        goto out;
    if (sha->type != REDIS_REPLY_STRING || sha->len == 0 || (size_t)sha->len >= sizeof(c->sha)) {
        log_down(c, "error", "unexpected SCRIPT LOAD reply");
        goto out;
    }
    memcpy(c->sha, sha->str, (size_t)sha->len);
    c->sha[sha->len] = '\0';
    c->ctx = ctx;
    ctx = NULL;
    if (c->down) {
        char hb[HOST_MAX * 6 + 8];
        BP_LOG_INFO("redis reachable again", "\"host\":\"%s\",\"port\":%d",
                    bp_log_str(hb, sizeof(hb), c->host), c->port);
        c->down = false;
    }
    rc = BP_OK;

out:
    if (rc != BP_OK)
        c->next_connect_ms = now + RECONNECT_AFTER_MS;
    if (sha)
        freeReplyObject(sha);
    if (ctx)
        redisFree(ctx);
    return rc;
}

/* The connection failed under us: drop it. @return true when it may just have been
 * stale (reset, closed) so that one immediate reconnect is worth it; false for a timeout,
 * after which calls fail fast for RECONNECT_AFTER_MS. */
static bool io_failed(bp_cache_t *c, int err)
{
    bool timeout = c->ctx && c->ctx->err == REDIS_ERR_IO &&
                   (err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT);
    log_down(c, "error", c->ctx ? c->ctx->errstr : "connection lost");
    drop(c);
    if (timeout)
        c->next_connect_ms = mono_ms() + RECONNECT_AFTER_MS;
    return !timeout;
}

/* Decimal text of @p v into @p buf (at least 21 bytes). @return its length. */
static size_t fmt_i64(char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

/* Append @p n bytes of @p s at @p at in @p dst of @p cap bytes (truncating, NUL kept).
 * @return the new length. */
static size_t put(char *dst, size_t at, size_t cap, const char *s, size_t n)
{
    if (at + n >= cap)
        n = at + 1 < cap ? cap - 1 - at : 0;
    memcpy(dst + at, s, n);
    dst[at + n] = '\0';
    return at + n;
}

/* @p s as a JSON string body: itself when nothing needs escaping (ids are restricted to
 * safe characters), else escaped into @p buf. */
static const char *json_body(char *buf, size_t cap, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\' || *p >= 0x7f)
            return bp_log_str(buf, cap, s);
    return s;
}

/* The client's call buffer with room for min(@p n, CALL_ITEMS) items. @return NULL
 * without memory. */
static call_t *call_reserve(bp_cache_t *c, size_t n)
{
    size_t want = n < CALL_ITEMS ? n : CALL_ITEMS;
    call_t *call = &c->call;
    if (want <= call->cap)
        return call;
    item_t *items = realloc(call->items, want * sizeof(*items));
    if (items)
        call->items = items;
    const char **argv = realloc(call->argv, (4 + want * 8) * sizeof(*argv));
    if (argv)
        call->argv = argv;
    size_t *lens = realloc(call->lens, (4 + want * 8) * sizeof(*lens));
    if (lens)
        call->lens = lens;
    if (!items || !argv || !lens)
        return NULL;
    call->cap = want;
    return call;
}

/* Append one call of SCRIPT for call->items (EVALSHA, or EVAL when @p eval). */
static int append_call(bp_cache_t *c, call_t *call, bool eval)
{
    char nkeys[24], ttl[24];
    size_t argc = 0;
    fmt_i64(nkeys, (int64_t)call->n);
    fmt_i64(ttl, c->ttl_s);
    call->argv[argc++] = eval ? "EVAL" : "EVALSHA";
    call->argv[argc++] = eval ? SCRIPT : c->sha;
    call->argv[argc++] = nkeys;
    for (size_t i = 0; i < call->n; i++)
        call->argv[argc++] = call->items[i].key;
    call->argv[argc++] = ttl;
    for (size_t i = 0; i < call->n; i++) {
        const item_t *it = &call->items[i];
        const char *v[7] = {it->total_xp, it->level, it->updated_at, it->premium,
                            it->channel,  it->msg,   it->paid_xp};
        for (int k = 0; k < 7; k++)
            call->argv[argc++] = v[k];
    }
    for (size_t i = 0; i < argc; i++)
        call->lens[i] = strlen(call->argv[i]);
    return redisAppendCommandArgv(c->ctx, (int)argc, call->argv, call->lens);
}

/* An error reply to a cache update: logged for the first of a call (*rc still BP_OK), and
 * *rc becomes BP_ERETRY so that the batch's entries are remembered and written again. */
static void refused(const redisReply *r, bp_err_t *rc)
{
    char eb[256];
    if (*rc == BP_OK)
        BP_LOG_WARN("redis refused a cache update", "\"error\":\"%s\"",
                    bp_log_str(eb, sizeof(eb), r->str));
    *rc = BP_ERETRY;
}

/* Fill @p call with the items of [*next, end) that fit (one season, CALL_ITEMS at most) and
 * advance *next past them. @return false when nothing is left. */
static bool fill_call(call_t *call, item_fn fn, const void *arg, size_t *next, size_t end)
{
    call->n = 0;
    while (*next < end && call->n < call->cap) {
        item_t *it = &call->items[call->n];
        if (!fn(arg, *next, it)) {
            (*next)++;
            continue;
        }
        if (call->n > 0 && strcmp(it->season, call->items[0].season) != 0)
            break; /* another hash slot: next call (fn is pure, it runs again then) */
        call->n++;
        (*next)++;
    }
    return call->n > 0;
}

/*
 * Send items [0, n) as SCRIPT calls of up to CALL_ITEMS keys of one season, up to
 * PIPELINE_CALLS calls before reading their replies, and read every reply. Calls refused
 * with NOSCRIPT (script cache flushed) are re-sent with EVAL and the script is loaded again.
 * @param stale out: set when the connection broke and one reconnect is worth trying
 * @return BP_OK; BP_ERETRY on an I/O error (connection dropped) or when Redis refused a
 *         command (logged; the connection stays usable).
 */
static bp_err_t pipeline(bp_cache_t *c, size_t n, item_fn fn, const void *arg, bool *stale)
{
    bp_err_t rc = BP_OK;
    size_t from[PIPELINE_CALLS + 1]; /* item range of each call sent */
    size_t next = 0;
    call_t *call = call_reserve(c, n);
    if (!call) {
        *stale = false;
        return BP_ERETRY; /* like a refusal: the caller remembers the writes */
    }
    while (next < n) {
        size_t sent = 0, redo[PIPELINE_CALLS], n_redo = 0;
        from[0] = next;
        while (sent < PIPELINE_CALLS && fill_call(call, fn, arg, &next, n)) {
            if (append_call(c, call, false) != REDIS_OK) {
                *stale = false;
                io_failed(c, errno); /* half a pipeline is queued: start over */
                return BP_ERETRY;
            }
            from[++sent] = next;
        }
        for (size_t j = 0; j < sent; j++) {
            redisReply *r = NULL;
            if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK) {
                *stale = io_failed(c, errno);
                return BP_ERETRY;
            }
            if (r && r->type == REDIS_REPLY_ERROR) {
                if (strncmp(r->str, "NOSCRIPT", 8) == 0) {
                    redo[n_redo++] = j;
                } else {
                    refused(r, &rc);
                }
            }
            freeReplyObject(r);
        }
        if (n_redo == 0)
            continue;
        /* Again with the script's text, then load it so the next calls can use EVALSHA. */
        for (size_t k = 0; k < n_redo; k++) {
            size_t at = from[redo[k]];
            if (!fill_call(call, fn, arg, &at, from[redo[k] + 1]) ||
                append_call(c, call, true) != REDIS_OK) {
                *stale = false;
                io_failed(c, errno);
                return BP_ERETRY;
            }
        }
        const char *load[] = {"SCRIPT", "LOAD", SCRIPT};
        if (redisAppendCommandArgv(c->ctx, 3, load, NULL) != REDIS_OK) {
            *stale = false;
            io_failed(c, errno);
            return BP_ERETRY;
        }
        for (size_t j = 0; j < n_redo + 1; j++) {
            redisReply *r = NULL;
            if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK) {
                *stale = io_failed(c, errno);
                return BP_ERETRY;
            }
            if (r && r->type == REDIS_REPLY_ERROR)
                refused(r, &rc);
            freeReplyObject(r);
        }
    }
    return rc;
}

static void make_key(char *key, const char *season_id, const char *player_id)
{
    size_t n = put(key, 0, KEY_MAX, "bp:progress:{", 13);
    n = put(key, n, KEY_MAX, season_id, strlen(season_id));
    n = put(key, n, KEY_MAX, "}:", 2);
    put(key, n, KEY_MAX, player_id, strlen(player_id));
}

/* A progress write of a batch (or of a write missed earlier) as a pipeline item; no printf
 * on this path (it runs once per player of every batch). */
static void progress_item(item_t *it, const char *season_id, const char *player_id,
                          int64_t total_xp, int32_t level, int64_t updated_at_ms)
{
    char pe[ESC_MAX], se[ESC_MAX];
    size_t n;
    snprintf(it->season, sizeof(it->season), "%s", season_id);
    make_key(it->key, season_id, player_id);
    size_t tl = fmt_i64(it->total_xp, total_xp);
    size_t ll = fmt_i64(it->level, level);
    fmt_i64(it->updated_at, updated_at_ms);
    it->premium = ""; /* unknown here; filled from PostgreSQL */
    it->paid_xp[0] = '\0';
    n = put(it->channel, 0, sizeof(it->channel), "bp:progress:", 12);
    put(it->channel, n, sizeof(it->channel), player_id, strlen(player_id));
    const char *pj = json_body(pe, sizeof(pe), player_id);
    const char *sj = json_body(se, sizeof(se), season_id);
    const size_t cap = sizeof(it->msg);
    n = put(it->msg, 0, cap, "{\"playerId\":\"", 13);
    n = put(it->msg, n, cap, pj, strlen(pj));
    n = put(it->msg, n, cap, "\",\"seasonId\":\"", 14);
    n = put(it->msg, n, cap, sj, strlen(sj));
    n = put(it->msg, n, cap, "\",\"totalXp\":", 12);
    n = put(it->msg, n, cap, it->total_xp, tl);
    n = put(it->msg, n, cap, ",\"level\":", 9);
    n = put(it->msg, n, cap, it->level, ll);
    put(it->msg, n, cap, "}", 1);
}

/* ---- progress writes that failed, written again later ---- */

static uint32_t missed_hash(const char *season_id, const char *player_id)
{
    uint32_t h = 2166136261u; /* FNV-1a over "season\0player" */
    for (const char *p = season_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ 0u) * 16777619u;
    for (const char *p = player_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

static void missed_clear(bp_cache_t *c)
{
    free(c->missed);
    free(c->slots);
    c->missed = NULL;
    c->slots = NULL;
    c->n_missed = c->cap_missed = c->n_slots = 0;
    c->missed_overflow = false;
}

/* Double the room for missed writes and rebuild the index. @return false when the bound
 * is reached or memory is short (the caller gives up tracking one by one). */
static bool missed_grow(bp_cache_t *c)
{
    size_t cap = c->cap_missed ? c->cap_missed * 2 : 256;
    if (c->cap_missed >= MISSED_MAX)
        return false;
    if (cap > MISSED_MAX)
        cap = MISSED_MAX;
    size_t n_slots = 1;
    while (n_slots < cap * 2)
        n_slots *= 2;
    struct missed *m = realloc(c->missed, cap * sizeof(*m));
    if (!m)
        return false;
    c->missed = m;
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (!slots)
        return false;
    for (size_t i = 0; i < c->n_missed; i++) {
        size_t k = missed_hash(m[i].season_id, m[i].player_id) & (n_slots - 1);
        while (slots[k])
            k = (k + 1) & (n_slots - 1);
        slots[k] = (uint32_t)(i + 1);
    }
    free(c->slots);
    c->slots = slots;
    c->n_slots = n_slots;
    c->cap_missed = cap;
    return true;
}

/* Remember a progress write that did not reach Redis (the highest total per season and
 * player). Past MISSED_MAX (or without memory) it stops counting them one by one: every
 * cached progress entry is then forgotten once Redis answers. */
static void missed_add(bp_cache_t *c, const char *season_id, const char *player_id,
                       int64_t total_xp, int32_t level, int64_t updated_at_ms)
{
    if (c->missed_overflow)
        return;
    uint32_t h = missed_hash(season_id, player_id);
    size_t k = 0;
    for (int round = 0; round < 2; round++) {
        /* Already remembered: keep the highest total. Else, when full, grow and look
         * again for the free slot in the rebuilt index. */
        k = c->n_slots ? h & (c->n_slots - 1) : 0;
        for (; c->n_slots && c->slots[k]; k = (k + 1) & (c->n_slots - 1)) {
            struct missed *m = &c->missed[c->slots[k] - 1];
            if (strcmp(m->season_id, season_id) == 0 && strcmp(m->player_id, player_id) == 0) {
                if (total_xp > m->total_xp) {
                    m->total_xp = total_xp;
                    m->level = level;
                    m->updated_at_ms = updated_at_ms;
                }
                return;
            }
        }
        if (c->n_missed < c->cap_missed)
            break;
        if (round == 1 || !missed_grow(c)) {
            char hb[HOST_MAX * 6 + 8];
            BP_LOG_WARN("too many progress writes missed Redis: every cached progress entry "
                        "will be dropped once it answers",
                        "\"host\":\"%s\",\"port\":%d,\"missed\":%zu",
                        bp_log_str(hb, sizeof(hb), c->host), c->port, c->n_missed);
            missed_clear(c);
            c->missed_overflow = true;
            return;
        }
    }
    struct missed *m = &c->missed[c->n_missed];
    snprintf(m->season_id, sizeof(m->season_id), "%s", season_id);
    snprintf(m->player_id, sizeof(m->player_id), "%s", player_id);
    m->total_xp = total_xp;
    m->level = level;
    m->updated_at_ms = updated_at_ms;
    c->slots[k] = (uint32_t)++c->n_missed;
}

static bool missed_item(const void *arg, size_t i, item_t *it)
{
    const struct missed *m = &((const bp_cache_t *)arg)->missed[i];
    progress_item(it, m->season_id, m->player_id, m->total_xp, m->level, m->updated_at_ms);
    return true;
}

/* UNLINK every progress entry (SCAN in steps), when too many writes were missed to write
 * them again one by one: readers fill from PostgreSQL. @return BP_OK, BP_ERETRY. */
static bp_err_t forget_progress(bp_cache_t *c, bool *stale)
{
    char cursor[32] = "0";
    size_t forgotten = 0;
    do {
        redisReply *r =
            redisCommand(c->ctx, "SCAN %s MATCH bp:progress:{* COUNT %d", cursor, FORGET_CHUNK);
        if (!r) {
            *stale = io_failed(c, errno);
            return BP_ERETRY;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
            (size_t)r->element[0]->len >= sizeof(cursor)) {
            BP_LOG_WARN("redis refused a SCAN of the progress entries", NULL);
            freeReplyObject(r);
            return BP_ERETRY;
        }
        memcpy(cursor, r->element[0]->str, (size_t)r->element[0]->len);
        cursor[r->element[0]->len] = '\0';
        size_t n = r->element[1]->elements;
        const char **argv = n ? malloc((n + 1) * sizeof(*argv)) : NULL;
        size_t *lens = n ? malloc((n + 1) * sizeof(*lens)) : NULL;
        bp_err_t rc = BP_OK;
        if (n && (!argv || !lens)) {
            rc = BP_ERETRY;
        } else if (n) {
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < n; i++) {
                argv[i + 1] = r->element[1]->element[i]->str;
                lens[i + 1] = r->element[1]->element[i]->len;
            }
            redisReply *u = redisCommandArgv(c->ctx, (int)n + 1, argv, lens);
            if (!u) {
                *stale = io_failed(c, errno);
                rc = BP_ERETRY;
            } else if (u->type == REDIS_REPLY_ERROR) {
                rc = BP_ERETRY;
            }
            freeReplyObject(u);
            forgotten += n;
        }
        free(argv);
        free(lens);
        freeReplyObject(r);
        if (rc != BP_OK)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    BP_LOG_INFO("cached progress entries dropped after missed writes", "\"keys\":%zu", forgotten);
    return BP_OK;
}

/* Before anything else on a working connection: write again what was missed. @return
 * BP_OK (done, nothing to do, or Redis refused it: tried again later while the caller goes
 * on), BP_ERETRY on an I/O error (the connection is gone; *stale as for any operation). */
static bp_err_t catch_up(bp_cache_t *c, bool *stale)
{
    if ((c->n_missed == 0 && !c->missed_overflow) || mono_ms() < c->next_catch_up_ms)
        return BP_OK;
    size_t n = c->n_missed;
    bool all = c->missed_overflow;
    bp_err_t rc = all ? forget_progress(c, stale) : pipeline(c, n, missed_item, c, stale);
    if (rc == BP_OK) {
        char hb[HOST_MAX * 6 + 8];
        BP_LOG_INFO("redis caught up with the progress writes it missed",
                    "\"host\":\"%s\",\"port\":%d,\"written\":%zu,\"droppedAll\":%s",
                    bp_log_str(hb, sizeof(hb), c->host), c->port, n, all ? "true" : "false");
        missed_clear(c);
        return BP_OK;
    }
    if (!c->ctx)
        return BP_ERETRY;
    c->next_catch_up_ms = mono_ms() + RECONNECT_AFTER_MS;
    return BP_OK;
}

/* Run @p op once (after catching up with missed writes), and once more on a fresh
 * connection when an old one turned out stale. */
typedef bp_err_t (*op_fn)(bp_cache_t *c, const void *arg, bool *stale);

static bp_err_t with_connection(bp_cache_t *c, op_fn op, const void *arg)
{
    bp_err_t rc = BP_ERETRY;
    sigpipe_guard_t g;
    sigpipe_block(&g);
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = c->ctx == NULL, stale = false;
        if (fresh && connect_now(c) != BP_OK) {
            rc = BP_ERETRY;
            break;
        }
        rc = catch_up(c, &stale);
        if (rc == BP_OK && op)
            rc = op(c, arg, &stale);
        if (c->ctx || fresh || !stale)
            break; /* done, or failed on a connection made in this call */
    }
    sigpipe_restore(&g);
    return rc;
}

typedef struct {
    const char *const *season_ids;
    const bp_progress_change_t *ch;
    size_t n;
    int64_t now_ms;
} put_args_t;

/* The season of change @p ch, or NULL when it has none (nothing cached then). */
static const char *put_season(const put_args_t *a, const bp_progress_change_t *ch)
{
    if (ch->season_idx < 0 || !ch->player_id[0])
        return NULL;
    return a->season_ids[ch->season_idx];
}

static bool put_item(const void *arg, size_t i, item_t *it)
{
    const put_args_t *a = arg;
    const bp_progress_change_t *ch = &a->ch[i];
    const char *season_id = put_season(a, ch);
    if (!season_id)
        return false;
    progress_item(it, season_id, ch->player_id, ch->total_xp, ch->level, a->now_ms);
    return true;
}

static bp_err_t put_op(bp_cache_t *c, const void *arg, bool *stale)
{
    const put_args_t *a = arg;
    return pipeline(c, a->n, put_item, a, stale);
}

bp_err_t bp_cache_put_progress(bp_cache_t *c, const char *const *season_ids,
                               const bp_progress_change_t *ch, size_t n, int64_t now_ms)
{
    put_args_t a = {season_ids, ch, n, now_ms};
    if (n == 0)
        return BP_OK;
    bp_err_t rc = with_connection(c, put_op, &a);
    if (rc != BP_OK) /* part of it may have landed: the monotonic script makes a resend safe */
        for (size_t i = 0; i < n; i++) {
            const char *season_id = put_season(&a, &ch[i]);
            if (season_id)
                missed_add(c, season_id, ch[i].player_id, ch[i].total_xp, ch[i].level, now_ms);
        }
    return rc;
}

bp_err_t bp_cache_catch_up(bp_cache_t *c)
{
    if (!bp_cache_behind(c))
        return BP_OK;
    bp_err_t rc = with_connection(c, NULL, NULL);
    return rc == BP_OK && bp_cache_behind(c) ? BP_ERETRY : rc;
}

bool bp_cache_behind(const bp_cache_t *c)
{
    return c->n_missed > 0 || c->missed_overflow;
}

typedef struct {
    const char *season_id;
    const char *player_id;
    const bp_progress_row_t *row;
} fill_args_t;

static bool fill_item(const void *arg, size_t i, item_t *it)
{
    const fill_args_t *a = arg;
    (void)i;
    snprintf(it->season, sizeof(it->season), "%s", a->season_id);
    make_key(it->key, a->season_id, a->player_id);
    fmt_i64(it->total_xp, a->row->total_xp);
    fmt_i64(it->level, a->row->level);
    fmt_i64(it->updated_at, a->row->updated_at_ms);
    it->premium = a->row->premium ? "1" : "0";
    fmt_i64(it->paid_xp, a->row->paid_xp);
    it->channel[0] = '\0'; /* a read-through fill is no change: nothing published */
    it->msg[0] = '\0';
    return true;
}

static bp_err_t fill_op(bp_cache_t *c, const void *arg, bool *stale)
{
    return pipeline(c, 1, fill_item, arg, stale);
}

bp_err_t bp_cache_fill_progress(bp_cache_t *c, const char *season_id, const char *player_id,
                                const bp_progress_row_t *row)
{
    fill_args_t a = {season_id, player_id, row};
    return with_connection(c, fill_op, &a);
}

/* Parse a whole reply string as a long long. */
static bool reply_ll(const redisReply *r, long long *out)
{
    char buf[32], *end;
    if (!r || r->type != REDIS_REPLY_STRING || r->len <= 0 || (size_t)r->len >= sizeof(buf))
        return false;
    memcpy(buf, r->str, (size_t)r->len);
    buf[r->len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

typedef struct {
    const char *season_id;
    const char *player_id;
    bp_progress_row_t *out;
} get_args_t;

static bp_err_t get_op(bp_cache_t *c, const void *arg, bool *stale)
{
    const get_args_t *a = arg;
    bp_err_t rc = BP_ENOTFOUND;
    char key[KEY_MAX];
    long long xp, level, premium, updated = 0, paid;
    make_key(key, a->season_id, a->player_id);
    redisReply *r = redisCommand(c->ctx, "HMGET %s totalXp level premium updatedAt paidXp", key);
    if (!r) {
        *stale = io_failed(c, errno);
        return BP_ERETRY;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char eb[256];
        BP_LOG_WARN("redis refused a cache read", "\"error\":\"%s\"",
                    bp_log_str(eb, sizeof(eb), r->str));
        rc = BP_ERETRY;
        goto out;
    }
    /* An entry written by a batch before any fill has no premium flag and no paidXp yet:
     * not usable. */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 || !reply_ll(r->element[0], &xp) ||
        !reply_ll(r->element[1], &level) || !reply_ll(r->element[2], &premium) || level < 1 ||
        level > INT32_MAX || !reply_ll(r->element[4], &paid) || paid < 0 || paid > xp)
        goto out;
    if (r->element[3]->type == REDIS_REPLY_STRING && !reply_ll(r->element[3], &updated))
        goto out;
    a->out->total_xp = (int64_t)xp;
    a->out->level = (int32_t)level;
    a->out->premium = premium != 0;
    a->out->updated_at_ms = (int64_t)updated;
    a->out->paid_xp = (int64_t)paid;
    a->out->earned_xp = (int64_t)(xp - paid);
    rc = BP_OK;

out:
    freeReplyObject(r);
    return rc;
}

bp_err_t bp_cache_get_progress(bp_cache_t *c, const char *season_id, const char *player_id,
                               bp_progress_row_t *out)
{
    get_args_t a = {season_id, player_id, out};
    return with_connection(c, get_op, &a);
}

/*
 * Fixed-window counter. KEYS[1] = counter; ARGV[1] = window in seconds. The first hit of a
 * window creates the key with the window as its TTL; a key somehow left without a TTL gets
 * one again. Returns {hits in this window, seconds until it ends}.
 */
static const char RATE_SCRIPT[] = "local n = redis.call('INCR', KEYS[1])\n"
                                  "local ttl = redis.call('TTL', KEYS[1])\n"
                                  "if n == 1 or ttl < 0 then\n"
                                  "  redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
                                  "  ttl = tonumber(ARGV[1])\n"
                                  "end\n"
                                  "return {n, ttl}\n";

typedef struct {
    const char *key;
    int limit;
    int window_s;
    int *retry_after_s;
} rate_args_t;

static bp_err_t rate_op(bp_cache_t *c, const void *arg, bool *stale)
{
    const rate_args_t *a = arg;
    bp_err_t rc = BP_ERETRY;
    redisReply *r = redisCommand(c->ctx, "EVAL %s 1 %s %d", RATE_SCRIPT, a->key, a->window_s);
    if (!r) {
        *stale = io_failed(c, errno);
        return BP_ERETRY;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        char eb[256];
        BP_LOG_WARN(
            "redis refused a rate-limit hit", "\"error\":\"%s\"",
            bp_log_str(eb, sizeof(eb), r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply"));
        goto out;
    }
    if (r->element[0]->integer > a->limit) {
        long long ttl = r->element[1]->integer;
        *a->retry_after_s = ttl < 1 ? 1 : ttl > a->window_s ? a->window_s : (int)ttl;
        rc = BP_EINVAL;
    } else {
        rc = BP_OK;
    }
out:
    freeReplyObject(r);
    return rc;
}

bp_err_t bp_cache_rate_hit(bp_cache_t *c, const char *key, int limit, int window_s,
                           int *retry_after_s)
{
    rate_args_t a = {key, limit, window_s, retry_after_s};
    *retry_after_s = 0;
    if (window_s < 1)
        window_s = a.window_s = 1;
    return with_connection(c, rate_op, &a);
}

bp_err_t bp_cache_url_parse(const char *url, bp_cache_url_t *out)
{
    memset(out, 0, sizeof(*out));
    bp_cache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return BP_ENOMEM;
    bp_err_t rc = parse_url(c, url);
    if (rc == BP_OK) { /* the cache's own parser, so both clients read a URL alike */
        snprintf(out->host, sizeof(out->host), "%s", c->host);
        out->port = c->port;
        out->db = c->db;
        out->user = c->user;
        out->password = c->password;
        c->user = NULL;
        c->password = NULL;
    }
    bp_cache_destroy(c);
    return rc;
}

void bp_cache_url_fini(bp_cache_url_t *u)
{
    free(u->user);
    if (u->password) {
        memset(u->password, 0, strlen(u->password));
        free(u->password);
    }
    u->user = NULL;
    u->password = NULL;
}
