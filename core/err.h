/** @file The one error enum of the project and its message strings. */
#ifndef BP_ERR_H
#define BP_ERR_H

/** Mark a function whose result must be looked at. */
#define BP_MUSTCHECK __attribute__((warn_unused_result))

typedef enum {
    BP_OK = 0,
    BP_EINVAL,    /**< bad input: the event goes to the DLQ, the request gets a 4xx */
    BP_ENOTFOUND, /**< the thing asked for does not exist (HTTP 404) */
    BP_ERETRY,    /**< a dependency is unavailable: back off and try again */
    BP_ENOMEM,    /**< allocation failed */
    BP_EFATAL     /**< cannot go on (bug, broken invariant, bad configuration) */
} bp_err_t;

/** @return a static, human-readable name of @p err ("ok", "invalid input", ...). */
const char *bp_err_str(bp_err_t err);

#endif
