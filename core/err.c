/** @file Message strings of the project's error enum. */
#include "core/err.h"

const char *bp_err_str(bp_err_t err)
{
    switch (err) {
    case BP_OK:
        return "ok";
    case BP_EINVAL:
        return "invalid input";
    case BP_ENOTFOUND:
        return "not found";
    case BP_ERETRY:
        return "temporarily unavailable, retry";
    case BP_ENOMEM:
        return "out of memory";
    case BP_EFATAL:
        return "fatal error";
    }
    return "unknown error";
}
