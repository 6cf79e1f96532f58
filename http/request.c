/** @file Request-scoped borrowing of store resources and the response helpers. */
#include "http/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"
#include "http/problem.h"

const char *bp_http_req_param(const bp_http_req_t *req, const char *name)
{
    const char *v = req->match ? bp_route_param(req->match, name) : NULL;
    return v ? v : "";
}

/** Borrow the request's pool slot once. @return BP_OK or BP_ERETRY (none free in time). */
static bp_err_t req_slot(bp_http_req_t *req)
{
    if (req->conn)
        return BP_OK;
    bp_err_t err = bp_http_pool_acquire(req->env->pool, BP_HTTP_POOL_WAIT_MS, &req->conn);
    if (err != BP_OK)
        BP_LOG_WARN("no free store connection slot", "\"waitedMs\":%d", BP_HTTP_POOL_WAIT_MS);
    return err;
}

bp_err_t bp_http_req_pg(bp_http_req_t *req, bp_pg_t **out)
{
    *out = NULL;
    bp_err_t err = req_slot(req);
    if (err != BP_OK)
        return err;
    return bp_http_conn_pg(req->conn, req->now_ms, out);
}

bp_cache_t *bp_http_req_cache(bp_http_req_t *req)
{
    if (req_slot(req) != BP_OK)
        return NULL;
    return bp_http_conn_cache(req->conn);
}

/** Ask the snapshot holder to reload when stale, from one request per check period. */
static void maybe_refresh(bp_http_req_t *req)
{
    bp_http_env_t *env = req->env;
    int64_t due = atomic_load_explicit(&env->next_seasons_check, memory_order_relaxed);
    if (req->now_ms < due ||
        !atomic_compare_exchange_strong(&env->next_seasons_check, &due,
                                        req->now_ms + BP_HTTP_SEASONS_CHECK_MS))
        return;
    bp_pg_t *pg = NULL;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_seasons_refresh(env->seasons, pg, req->now_ms, 0);
    if (err != BP_OK)
        BP_LOG_DEBUG("season snapshot not refreshed, serving the loaded one", "\"error\":\"%s\"",
                     bp_err_str(err));
}

const bp_season_list_t *bp_http_req_seasons(bp_http_req_t *req)
{
    if (!req->snap) {
        maybe_refresh(req);
        req->snap = bp_seasons_acquire(req->env->seasons);
    }
    return req->snap;
}

void bp_http_req_finish(bp_http_req_t *req)
{
    if (req->snap) {
        bp_seasons_release(req->env->seasons, req->snap);
        req->snap = NULL;
    }
    if (req->conn) {
        bp_http_pool_release(req->env->pool, req->conn);
        req->conn = NULL;
    }
}

bp_http_blob_t *bp_http_blob_new(const char *data, size_t len)
{
    bp_http_blob_t *b = malloc(sizeof(*b) + len);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    memcpy(b->data, data, len);
    return b;
}

bp_http_blob_t *bp_http_blob_ref(bp_http_blob_t *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void bp_http_blob_unref(bp_http_blob_t *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

void bp_http_reply_blob(bp_http_req_t *req, bp_http_blob_t *blob, const char *content_type)
{
    bp_http_reply_owned(req, 200, NULL, 0, NULL); /* drops an earlier body; 500 if no blob */
    if (!blob)
        return;
    req->resp.blob = blob;
    req->resp.status = 200;
    req->resp.content_type = content_type;
}

void bp_http_reply_owned(bp_http_req_t *req, int status, char *body, size_t len,
                         const char *content_type)
{
    bp_http_resp_t *r = &req->resp;
    bp_http_blob_unref(r->blob);
    r->blob = NULL;
    free(r->body);
    r->body = body;
    r->body_len = body ? len : 0;
    r->status = body ? status : 500;
    r->content_type = body ? content_type : NULL;
}

void bp_http_reply_json(bp_http_req_t *req, int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    bp_http_reply_owned(req, status, text, text ? strlen(text) : 0, "application/json");
}

void bp_http_reply_problem(bp_http_req_t *req, int status, const char *slug, const char *detail)
{
    size_t len = 0;
    char *text = bp_http_problem_json(status, slug, detail, &len);
    bp_http_reply_owned(req, status, text, len, BP_PROBLEM_CONTENT_TYPE);
    if (status == 401)
        req->resp.www_authenticate = "Bearer realm=\"battlepass\"";
    /* Every 503 tells when to come back (callers may set a longer wait afterwards). */
    if (status == 503 && req->resp.retry_after_s <= 0)
        req->resp.retry_after_s = 1;
}

bp_err_t bp_http_req_json(bp_http_req_t *req, json_t **out)
{
    char why[BP_BODY_WHY_MAX];
    bp_err_t err = bp_http_body_json(req->body, req->body_len, out, why, sizeof(why));
    if (err != BP_OK)
        bp_http_reply_problem(req, 400, "invalid-body", why);
    return err;
}

bool bp_http_req_body(bp_http_req_t *req, bp_body_kind_t kind, json_t **root, void *out)
{
    char why[BP_BODY_WHY_MAX];
    if (bp_http_req_json(req, root) != BP_OK)
        return false;
    if (bp_http_body_parse(kind, *root, out, why, sizeof(why)) == BP_OK)
        return true;
    json_decref(*root);
    *root = NULL;
    bp_http_reply_problem(req, 400, "invalid-body", why);
    return false;
}

bool bp_http_req_query_nums(bp_http_req_t *req, const bp_query_num_t *params, size_t n,
                            long long *out)
{
    for (size_t i = 0; i < n; i++) {
        if (bp_http_query_num(&params[i], bp_http_req_query(req, params[i].name), &out[i]))
            continue;
        bp_http_reply_problem(req, 400, "invalid-parameter", params[i].problem);
        return false;
    }
    return true;
}

bool bp_http_req_page_query(bp_http_req_t *req, long long limit_max, long long limit_default,
                            bp_http_page_query_t *out)
{
    char limit_problem[64];
    snprintf(limit_problem, sizeof(limit_problem), "limit must be an integer from 1 to %lld",
             limit_max);
    const bp_query_num_t params[2] = {
        {"limit", 1, limit_max, limit_default, false, limit_problem},
        {"cursor", 1, INT64_MAX, 0, true, "cursor must be a nextCursor of an earlier page"},
    };
    long long nums[2];
    if (!bp_http_req_query_nums(req, params, 2, nums))
        return false;
    out->limit = (size_t)nums[0];
    out->cursor = (int64_t)nums[1];
    return true;
}

void bp_http_reply_page(bp_http_req_t *req, const void *items, size_t n, size_t item_size,
                        bp_http_item_json_fn item_json, int64_t next_cursor)
{
    char cursor[24];
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, item_json((const char *)items + i * item_size)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (next_cursor > 0)
        snprintf(cursor, sizeof(cursor), "%lld", (long long)next_cursor);
    json_t *obj =
        arr ? json_pack("{s:o, s:s?}", "items", arr, "nextCursor", next_cursor > 0 ? cursor : NULL)
            : NULL;
    bp_http_reply_json(req, 200, obj);
    req->resp.cache_control = "no-store";
}

void bp_http_reply_store_error(bp_http_req_t *req, bp_err_t err, const char *what)
{
    char detail[160];
    BP_LOG_WARN("store call failed", "\"path\":\"%s\",\"what\":\"%s\",\"error\":\"%s\"",
                req->match ? req->match->route->pattern : "", what, bp_err_str(err));
    if (err == BP_ERETRY) {
        bp_http_conn_failed(req->conn);
        snprintf(detail, sizeof(detail), "cannot %s right now, retry later", what);
        bp_http_reply_problem(req, 503, "database-unavailable", detail);
        req->resp.retry_after_s = 1;
        return;
    }
    snprintf(detail, sizeof(detail), "cannot %s", what);
    bp_http_reply_problem(req, 500, "internal-error", detail);
}
