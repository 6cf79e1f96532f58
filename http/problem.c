/** @file RFC 7807 problem details as compact JSON (jansson). */
#include "http/problem.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

const char *bp_http_status_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

char *bp_http_problem_json(int status, const char *slug, const char *detail, size_t *len)
{
    char type[128];
    char *text = NULL;
    json_t *obj = NULL;

    if (slug)
        snprintf(type, sizeof(type), "%s%s", BP_PROBLEM_TYPE_PREFIX, slug);
    else
        snprintf(type, sizeof(type), "about:blank");
    obj = json_pack("{s:s, s:s, s:i}", "type", type, "title", bp_http_status_title(status),
                    "status", status);
    if (!obj)
        goto out;
    /* json_string() refuses invalid UTF-8: the detail is then left out, not the problem. */
    json_t *d = detail ? json_string(detail) : NULL;
    if (d && json_object_set_new(obj, "detail", d) != 0)
        goto out;
    text = json_dumps(obj, JSON_COMPACT);
    if (text)
        *len = strlen(text);
out:
    json_decref(obj);
    return text;
}
