/** @file Path matching of the routing table. */
#include "http/router.h"

#include <stdbool.h>
#include <string.h>

/** Match @p path against @p pattern, segment by segment, collecting {params} into @p m.
 *  @param bad out: index of the first param that is not a valid id, or -1
 *  @return true when the shapes match (params may still be invalid). */
static bool path_matches(const char *pattern, const char *path, bp_route_match_t *m, int *bad)
{
    *bad = -1;
    m->n_params = 0;
    if (*pattern != '/' || *path != '/')
        return false;
    while (*pattern == '/' && *path == '/') {
        pattern++;
        path++;
        size_t pl = strcspn(pattern, "/");
        size_t sl = strcspn(path, "/");
        if (pl >= 2 && pattern[0] == '{' && pattern[pl - 1] == '}') {
            size_t nl = pl - 2;
            if (sl == 0 || m->n_params == BP_ROUTE_PARAMS_MAX || nl > BP_ROUTE_PARAM_NAME_MAX)
                return false;
            bp_route_param_t *p = &m->params[m->n_params++];
            memcpy(p->name, pattern + 1, nl);
            p->name[nl] = '\0';
            size_t vl = sl > BP_ID_MAX ? BP_ID_MAX : sl;
            memcpy(p->value, path, vl);
            p->value[vl] = '\0';
            if (*bad < 0 && !bp_id_valid(path, sl))
                *bad = (int)m->n_params - 1;
        } else if (pl != sl || memcmp(pattern, path, pl) != 0) {
            return false;
        }
        pattern += pl;
        path += sl;
    }
    return *pattern == '\0' && *path == '\0';
}

/** @return true when @p have is one of the comma-separated tokens of @p list. */
static bool listed(const char *list, const char *have)
{
    size_t n = strlen(have);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && memcmp(p, have, n) == 0)
            return true;
        p += l;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return false;
}

static void allow_add(char *allow, size_t size, const char *method)
{
    size_t used = strlen(allow);
    if (listed(allow, method) || used + strlen(method) + 3 > size)
        return;
    if (used)
        strcat(allow, ", ");
    strcat(allow, method);
}

bp_route_result_t bp_route_match(const bp_http_route_t *routes, size_t n, const char *method,
                                 const char *path, bp_route_match_t *m)
{
    bool path_found = false;
    bp_route_match_t tmp;
    int bad;

    /* Only what a result uses is written: clearing every candidate's params (most of the
     * struct) for each route tried showed in the profile of the hot routes. */
    m->route = NULL;
    m->n_params = 0;
    m->allow[0] = '\0';
    m->bad_param = NULL;
    for (size_t i = 0; i < n; i++) {
        const bp_http_route_t *r = &routes[i];
        if (!path_matches(r->pattern, path, &tmp, &bad))
            continue;
        path_found = true;
        bool get_like = strcmp(r->method, "GET") == 0 && strcmp(method, "HEAD") == 0;
        if (strcmp(r->method, method) == 0 || get_like) {
            m->n_params = tmp.n_params;
            memcpy(m->params, tmp.params, tmp.n_params * sizeof(tmp.params[0]));
            m->route = r;
            if (bad >= 0) {
                m->bad_param = m->params[bad].name;
                return BP_ROUTE_BAD_PARAM;
            }
            return BP_ROUTE_FOUND;
        }
        allow_add(m->allow, sizeof(m->allow), r->method);
        if (strcmp(r->method, "GET") == 0)
            allow_add(m->allow, sizeof(m->allow), "HEAD");
    }
    if (path_found)
        return BP_ROUTE_BAD_METHOD;
    m->allow[0] = '\0';
    return BP_ROUTE_NOT_FOUND;
}

const char *bp_route_param(const bp_route_match_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_params; i++) {
        if (strcmp(m->params[i].name, name) == 0)
            return m->params[i].value;
    }
    return NULL;
}
