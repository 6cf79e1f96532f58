/** @file The Season resources: GET /seasons[?status=], /seasons/current and
 *  /seasons/{seasonId} from the shared snapshot with their status at request time;
 *  POST /seasons and PATCH /seasons/{seasonId} (admin) write PostgreSQL, then refresh the
 *  snapshot so that reads see the change at once. */
#include "http/routes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"
#include "http/auth.h"
#include "http/request.h"
#include "store/season_admin.h"
#include "store/season_json.h"

/** Who may write seasons. */
#define ACCESS_ADMIN (BP_ACCESS_TOKEN | BP_SCOPE_ADMIN)
/** Members a PATCH may change whatever the season's status; any other change needs an
 *  upcoming season. */
static const char *const always_patchable[] = {"name", "endsAt"};

static void reply_season(bp_http_req_t *req, int status, const bp_season_t *s)
{
    char *text = bp_season_to_json(s, req->now_ms);
    bp_http_reply_owned(req, status, text, text ? strlen(text) : 0, "application/json");
}

/* ---- rendered seasons ----
 * A season's JSON (the sample's is 22 kB) only changes with the snapshot or the season's
 * status, yet rendering and copying it was most of the work of GET /seasons/current. Each
 * entry holds a reference to its snapshot, so the snapshot's address cannot be reused while
 * the entry names it. */

#define SEASON_CACHE_SLOTS 8

typedef struct {
    const bp_season_list_t *snap; /* one reference (bp_seasons_acquire); NULL: empty */
    size_t idx;
    bp_season_status_t status;
    bp_http_blob_t *blob; /* one reference */
} season_entry_t;

struct bp_http_season_cache {
    pthread_mutex_t lock;
    season_entry_t e[SEASON_CACHE_SLOTS];
    size_t next; /* round-robin replacement */
};

struct bp_http_season_cache *bp_http_season_cache_new(void)
{
    struct bp_http_season_cache *c = calloc(1, sizeof(*c));
    if (c && pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

void bp_http_season_cache_destroy(struct bp_http_season_cache *c, bp_seasons_t *seasons)
{
    if (!c)
        return;
    for (size_t i = 0; i < SEASON_CACHE_SLOTS; i++) {
        if (c->e[i].snap)
            bp_seasons_release(seasons, c->e[i].snap);
        bp_http_blob_unref(c->e[i].blob);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/** @return a new reference to the cached rendering of (@p snap, @p i, @p st), or NULL. */
static bp_http_blob_t *season_cached(struct bp_http_season_cache *c, const bp_season_list_t *snap,
                                     size_t i, bp_season_status_t st)
{
    bp_http_blob_t *b = NULL;
    pthread_mutex_lock(&c->lock);
    for (size_t k = 0; k < SEASON_CACHE_SLOTS && !b; k++)
        if (c->e[k].snap == snap && c->e[k].idx == i && c->e[k].status == st)
            b = bp_http_blob_ref(c->e[k].blob);
    pthread_mutex_unlock(&c->lock);
    return b;
}

/** Remember @p blob for (@p snap, @p i, @p st) when @p snap is still the current snapshot;
 *  entries of other snapshots go first. */
static void season_remember(struct bp_http_season_cache *c, bp_seasons_t *seasons,
                            const bp_season_list_t *snap, size_t i, bp_season_status_t st,
                            bp_http_blob_t *blob)
{
    season_entry_t drop[SEASON_CACHE_SLOTS + 1];
    size_t n_drop = 0;
    const bp_season_list_t *ref = bp_seasons_acquire(seasons);
    if (ref != snap) { /* reloaded meanwhile: not worth keeping */
        bp_seasons_release(seasons, ref);
        return;
    }
    pthread_mutex_lock(&c->lock);
    season_entry_t *slot = NULL;
    for (size_t k = 0; k < SEASON_CACHE_SLOTS; k++) {
        season_entry_t *e = &c->e[k];
        if (e->snap == snap && e->idx == i && e->status == st) { /* another thread was first */
            slot = NULL;
            drop[n_drop++] = (season_entry_t){ref, 0, st, NULL};
            goto out;
        }
        if (e->snap && e->snap != snap) {
            drop[n_drop++] = *e;
            memset(e, 0, sizeof(*e));
        }
        if (!e->snap && !slot)
            slot = e;
    }
    if (!slot) {
        slot = &c->e[c->next];
        c->next = (c->next + 1) % SEASON_CACHE_SLOTS;
        drop[n_drop++] = *slot;
    }
    *slot = (season_entry_t){ref, i, st, bp_http_blob_ref(blob)};
out:
    pthread_mutex_unlock(&c->lock);
    for (size_t k = 0; k < n_drop; k++) { /* a release may free a snapshot: not under lock */
        if (drop[k].snap)
            bp_seasons_release(seasons, drop[k].snap);
        bp_http_blob_unref(drop[k].blob);
    }
}

/** Answer 200 with season @p i of the request's snapshot, rendered once per status. */
static void reply_snapshot_season(bp_http_req_t *req, size_t i)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    const bp_season_t *s = &snap->items[i];
    struct bp_http_season_cache *c = req->env->season_json;
    bp_season_status_t st = bp_season_status(s, req->now_ms);
    bp_http_blob_t *b = c ? season_cached(c, snap, i, st) : NULL;
    if (!b) {
        char *text = bp_season_to_json(s, req->now_ms);
        b = text ? bp_http_blob_new(text, strlen(text)) : NULL;
        free(text);
        if (b && c)
            season_remember(c, req->env->seasons, snap, i, st, b);
    }
    bp_http_reply_blob(req, b, "application/json");
}

/* How a store error of a season write is answered. */
static const struct {
    bp_err_t err;
    int status;
    const char *slug;
} write_errors[] = {
    {BP_EINVAL, 409, "season-conflict"},      {BP_ENOTFOUND, 404, "season-not-found"},
    {BP_ERETRY, 503, "database-unavailable"}, {BP_ENOMEM, 500, "internal-error"},
    {BP_EFATAL, 500, "internal-error"},
};

static void reply_write_error(bp_http_req_t *req, bp_err_t err, const char *why)
{
    size_t i = 0, n = sizeof(write_errors) / sizeof(write_errors[0]);
    while (i < n - 1 && write_errors[i].err != err)
        i++;
    int status = write_errors[i].status;
    /* Database internals stay in the log. */
    bp_http_reply_problem(req, status, write_errors[i].slug,
                          status == 500   ? "the season could not be stored"
                          : status == 503 ? "the database is not reachable right now, retry later"
                                          : why);
    if (status == 503)
        req->resp.retry_after_s = 1;
}

/* After a write: make this instance's snapshot show it before the answer goes out. */
static void refresh_seasons(bp_http_req_t *req, bp_pg_t *pg)
{
    bp_err_t err = bp_seasons_refresh(req->env->seasons, pg, req->now_ms, 1);
    if (err != BP_OK)
        BP_LOG_WARN("season snapshot not refreshed after a write; it catches up on its own",
                    "\"error\":\"%s\"", bp_err_str(err));
}

/* Season writes are rare and matter: say who did what. */
static void log_write(const bp_http_req_t *req, const char *what, const char *id)
{
    char by[6 * BP_AUTH_SUB_MAX + 8];
    BP_LOG_INFO(what, "\"seasonId\":\"%s\",\"by\":\"%s\"", id,
                bp_log_str(by, sizeof(by), req->principal ? req->principal->sub : ""));
}

/* The definition as stored (the Season resource minus its time-dependent status, as
 * `battlepassd season import` stores it). @return a new reference, NULL when out of
 * memory. */
static json_t *definition_of(const bp_season_t *s)
{
    char *text = bp_season_to_json(s, 0);
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (o)
        json_object_del(o, "status");
    return o;
}

/* Parse and validate @p obj as a season definition. @return BP_OK with *s initialised,
 * BP_EINVAL with @p why naming the field, BP_ENOMEM. */
static bp_err_t parse_definition(json_t *obj, bp_season_t *s, char *why, size_t why_len)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    if (!text)
        return BP_ENOMEM;
    bp_err_t err = bp_season_from_json(text, strlen(text), s, why, why_len);
    free(text);
    return err;
}

static void get_current(bp_http_req_t *req)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i < 0) {
        bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
        return;
    }
    reply_snapshot_season(req, (size_t)i);
}

static void reply_not_found(bp_http_req_t *req, const char *id)
{
    char detail[BP_ID_MAX + 64];
    snprintf(detail, sizeof(detail), "season %s does not exist", id);
    bp_http_reply_problem(req, 404, "season-not-found", detail);
}

static void get_season(bp_http_req_t *req)
{
    const char *id = bp_http_req_param(req, "seasonId");
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_find(snap->items, snap->n, id);
    if (i < 0) {
        reply_not_found(req, id);
        return;
    }
    reply_snapshot_season(req, (size_t)i);
}

/* GET /seasons?status=upcoming|active|ended: {"seasons": [...]} by start time. */
static void list_seasons(bp_http_req_t *req)
{
    const char *filter = bp_http_req_query(req, "status");
    int want = -1; /* every status */
    if (filter) {
        for (int st = BP_SEASON_UPCOMING; st <= BP_SEASON_ENDED; st++)
            if (strcmp(filter, bp_season_status_str((bp_season_status_t)st)) == 0)
                want = st;
        if (want < 0) {
            bp_http_reply_problem(req, 400, "invalid-parameter",
                                  "status must be one of upcoming, active, ended");
            return;
        }
    }
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    static const char head[] = "{\"seasons\":[", tail[] = "]}";
    size_t len = sizeof(head) - 1, cap = 4096;
    char *out = malloc(cap);
    if (out)
        memcpy(out, head, len);
    for (size_t i = 0; out && i < snap->n; i++) {
        const bp_season_t *s = &snap->items[i];
        if (want >= 0 && (int)bp_season_status(s, req->now_ms) != want)
            continue;
        char *one = bp_season_to_json(s, req->now_ms);
        size_t n = one ? strlen(one) : 0;
        char *grown = out;
        if (one && len + n + sizeof(tail) + 1 > cap) {
            while (len + n + sizeof(tail) + 1 > cap)
                cap *= 2;
            grown = realloc(out, cap);
        }
        if (!one || !grown) {
            free(one);
            free(out);
            out = NULL;
            break;
        }
        out = grown;
        if (len > sizeof(head) - 1)
            out[len++] = ',';
        memcpy(out + len, one, n);
        len += n;
        free(one);
    }
    if (out) {
        memcpy(out + len, tail, sizeof(tail)); /* with the NUL */
        len += sizeof(tail) - 1;
    }
    bp_http_reply_owned(req, 200, out, len, "application/json");
    req->resp.cache_control = "no-store";
}

/* POST /seasons: the body is a season definition (status, if any, is ignored). */
static void create_season(bp_http_req_t *req)
{
    json_t *body = NULL, *def = NULL;
    char *def_text = NULL;
    char why[512];
    bp_season_t s;
    bool have_season = false;
    bp_pg_t *pg = NULL;

    if (bp_http_req_json(req, &body) != BP_OK)
        return;
    json_object_del(body, "status");
    bp_err_t err = parse_definition(body, &s, why, sizeof(why));
    if (err == BP_EINVAL) {
        bp_http_reply_problem(req, 422, "invalid-season", why);
        goto out;
    }
    if (err != BP_OK)
        goto oom;
    have_season = true;
    if (!(def = definition_of(&s)) || !(def_text = json_dumps(def, JSON_COMPACT)))
        goto oom;
    err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_season_insert(pg, &s, def_text, why, sizeof(why));
    if (err != BP_OK) {
        reply_write_error(req, err, why);
        goto out;
    }
    refresh_seasons(req, pg);
    log_write(req, "season created", s.id);
    reply_season(req, 201, &s);
    snprintf(req->resp.location, sizeof(req->resp.location), "/seasons/%s", s.id);
    goto out;
oom:
    bp_http_reply_problem(req, 500, "internal-error", "out of memory");
out:
    if (have_season)
        bp_season_fini(&s);
    free(def_text);
    json_decref(def);
    json_decref(body);
}

/* Apply a JSON merge patch (RFC 7396) to object @p target in place.
 * @return false when out of memory. */
static bool merge_patch(json_t *target, json_t *patch)
{
    const char *key;
    json_t *val;
    json_object_foreach(patch, key, val)
    {
        if (json_is_null(val)) {
            json_object_del(target, key);
            continue;
        }
        if (json_is_object(val)) {
            json_t *cur = json_object_get(target, key);
            if (!json_is_object(cur)) {
                cur = json_object();
                if (!cur || json_object_set_new(target, key, cur) != 0)
                    return false;
            }
            if (!merge_patch(cur, val))
                return false;
        } else if (json_object_set(target, key, val) != 0) {
            return false;
        }
    }
    return true;
}

/* Does @p after differ from @p before in more than the members that may always change?
 * Both are stored definitions. */
static bool changes_beyond_always_patchable(json_t *before, json_t *after)
{
    json_t *cmp = json_deep_copy(after);
    if (!cmp)
        return true;
    for (size_t i = 0; i < sizeof(always_patchable) / sizeof(always_patchable[0]); i++) {
        json_t *v = json_object_get(before, always_patchable[i]);
        if (v)
            json_object_set(cmp, always_patchable[i], v);
        else
            json_object_del(cmp, always_patchable[i]);
    }
    bool differs = !json_equal(before, cmp);
    json_decref(cmp);
    return differs;
}

/* What a PATCH works on; released by patch_fini. */
typedef struct {
    json_t *patch, *merged, *before_def, *after_def;
    char *stored, *after_text;
    bp_season_t before, after;
    bool have_before, have_after;
} patch_t;

static void patch_fini(patch_t *p)
{
    json_decref(p->patch);
    json_decref(p->merged);
    json_decref(p->before_def);
    json_decref(p->after_def);
    free(p->stored);
    free(p->after_text);
    if (p->have_before)
        bp_season_fini(&p->before);
    if (p->have_after)
        bp_season_fini(&p->after);
}

/* PATCH /seasons/{seasonId}: a JSON merge patch of the definition. */
static void patch_season(bp_http_req_t *req)
{
    const char *id = bp_http_req_param(req, "seasonId");
    patch_t p;
    char why[512];
    bp_pg_t *pg = NULL;
    memset(&p, 0, sizeof(p));

    if (bp_http_req_json(req, &p.patch) != BP_OK)
        return;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_season_admin_get(pg, id, &p.stored);
    if (err == BP_ENOTFOUND) {
        reply_not_found(req, id);
        goto out;
    }
    if (err != BP_OK) {
        reply_write_error(req, err, NULL);
        goto out;
    }
    if (bp_season_from_json(p.stored, strlen(p.stored), &p.before, why, sizeof(why)) != BP_OK) {
        char esc[600];
        BP_LOG_ERROR("stored season definition does not parse",
                     "\"seasonId\":\"%s\",\"error\":\"%s\"", id, bp_log_str(esc, sizeof(esc), why));
        bp_http_reply_problem(req, 500, "internal-error", "the stored season is unreadable");
        goto out;
    }
    p.have_before = true;
    bp_season_status_t status = bp_season_status(&p.before, req->now_ms);

    /* status is derived from the window: accepted only as what it already is. */
    json_t *st = json_object_get(p.patch, "status");
    if (st && !json_is_null(st)) {
        if (!json_is_string(st) ||
            strcmp(json_string_value(st), bp_season_status_str(status)) != 0) {
            bp_http_reply_problem(req, 422, "invalid-season",
                                  "status follows from startsAt and endsAt: change endsAt to "
                                  "end a season early");
            goto out;
        }
    }
    json_object_del(p.patch, "status");

    if (!(p.before_def = definition_of(&p.before)) || !(p.merged = json_deep_copy(p.before_def)) ||
        !merge_patch(p.merged, p.patch))
        goto oom;
    err = parse_definition(p.merged, &p.after, why, sizeof(why));
    if (err == BP_EINVAL) {
        bp_http_reply_problem(req, 422, "invalid-season", why);
        goto out;
    }
    if (err != BP_OK)
        goto oom;
    p.have_after = true;
    if (strcmp(p.after.id, id) != 0) {
        bp_http_reply_problem(req, 422, "invalid-season", "id cannot be changed");
        goto out;
    }
    if (!(p.after_def = definition_of(&p.after)))
        goto oom;
    if (status != BP_SEASON_UPCOMING &&
        changes_beyond_always_patchable(p.before_def, p.after_def)) {
        snprintf(why, sizeof(why),
                 "season %s is %s: only name and endsAt can change once a season has started", id,
                 bp_season_status_str(status));
        bp_http_reply_problem(req, 409, "season-not-upcoming", why);
        goto out;
    }
    if (!(p.after_text = json_dumps(p.after_def, JSON_COMPACT)))
        goto oom;
    err = bp_season_admin_update(pg, &p.after, p.after_text, p.stored, why, sizeof(why));
    if (err != BP_OK) {
        reply_write_error(req, err, why);
        goto out;
    }
    refresh_seasons(req, pg);
    log_write(req, "season changed", id);
    reply_season(req, 200, &p.after);
    goto out;
oom:
    bp_http_reply_problem(req, 500, "internal-error", "out of memory");
out:
    patch_fini(&p);
}

/* The literal routes go first: "current" would also match {seasonId}. */
const bp_http_route_t bp_http_routes_seasons[] = {
    {"GET", "/seasons", list_seasons, BP_ACCESS_TOKEN},
    {"POST", "/seasons", create_season, ACCESS_ADMIN},
    {"GET", "/seasons/current", get_current, BP_ACCESS_TOKEN},
    {"GET", "/seasons/{seasonId}", get_season, BP_ACCESS_TOKEN},
    {"PATCH", "/seasons/{seasonId}", patch_season, ACCESS_ADMIN},
};
const size_t bp_http_routes_seasons_n =
    sizeof(bp_http_routes_seasons) / sizeof(bp_http_routes_seasons[0]);
