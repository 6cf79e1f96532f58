/** @file The routing table as data (method, path pattern, handler, access rule) and the
 *  matching of a request's method and path against it; no server needed. */
#ifndef BP_ROUTER_H
#define BP_ROUTER_H

#include <stddef.h>

#include "core/event.h"

/** Most {params} one pattern may hold. */
#define BP_ROUTE_PARAMS_MAX 4
/** Longest {param} name. */
#define BP_ROUTE_PARAM_NAME_MAX 31

struct bp_http_req;
/** A route's handler: fills req->resp (http/request.h); never queues anything itself. */
typedef void (*bp_http_handler_fn)(struct bp_http_req *req);

/** One route. Tables are static const arrays owned by the routes_*.c files. */
typedef struct {
    const char *method;  /**< "GET", "POST", ...; a GET route also answers HEAD */
    const char *pattern; /**< "/progress/{playerId}": literal segments and {name} params;
                          *   every param is an id (core/event.h bp_id_valid) */
    bp_http_handler_fn handler;
    unsigned access; /**< BP_ACCESS_* rule (http/auth.h) */
} bp_http_route_t;

typedef struct {
    char name[BP_ROUTE_PARAM_NAME_MAX + 1];
    char value[BP_ID_MAX + 1];
} bp_route_param_t;

/** The outcome of matching one request. */
typedef struct {
    const bp_http_route_t *route; /**< set on BP_ROUTE_FOUND */
    size_t n_params;
    bp_route_param_t params[BP_ROUTE_PARAMS_MAX];
    char allow[64];        /**< on BP_ROUTE_BAD_METHOD: the Allow header ("GET, HEAD") */
    const char *bad_param; /**< on BP_ROUTE_BAD_PARAM: the param's name in params[] */
} bp_route_match_t;

typedef enum {
    BP_ROUTE_FOUND = 0,
    BP_ROUTE_NOT_FOUND,  /**< no pattern matches the path: 404 */
    BP_ROUTE_BAD_METHOD, /**< patterns match, none for this method: 405 + Allow */
    BP_ROUTE_BAD_PARAM   /**< the matched route's param is not a valid id: 400 */
} bp_route_result_t;

/**
 * Match @p method and @p path (already percent-decoded, without query) against
 * @p routes[0..n) in order: the first route whose pattern and method match wins, so
 * literal routes go before param routes with the same shape.
 * @param m out: filled as documented per result
 * @return the result; a pattern with more than BP_ROUTE_PARAMS_MAX params never matches.
 */
bp_route_result_t bp_route_match(const bp_http_route_t *routes, size_t n, const char *method,
                                 const char *path, bp_route_match_t *m);

/** @return the value of param @p name in @p m (borrowed from @p m), or NULL. */
const char *bp_route_param(const bp_route_match_t *m, const char *name);

#endif
