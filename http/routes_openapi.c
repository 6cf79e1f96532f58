/** @file GET /openapi.yaml (public): the OpenAPI document at cfg->openapi_path, read on each
 *  request (it is small, asked for rarely, and this way always the deployed file). */
#include "http/routes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/log.h"
#include "http/auth.h"
#include "http/request.h"

/** Largest document served; a bigger file is taken for a misconfiguration. */
#define DOC_MAX (8 * 1024 * 1024)

/**
 * Read the regular file @p path whole.
 * @return BP_OK with *out (heap, owned by the caller) and *len; BP_ERETRY with errno set
 *         when it cannot be read (EFBIG when too large), BP_ENOMEM.
 */
static bp_err_t read_doc(const char *path, char **out, size_t *len)
{
    bp_err_t err = BP_ERETRY;
    char *buf = NULL;
    size_t have = 0;
    struct stat st;
    int saved;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return BP_ERETRY;
    if (fstat(fd, &st) != 0)
        goto out;
    if (!S_ISREG(st.st_mode) || st.st_size > DOC_MAX) {
        errno = S_ISREG(st.st_mode) ? EFBIG : EISDIR;
        goto out;
    }
    size_t cap = (size_t)st.st_size;
    buf = malloc(cap + 1);
    if (!buf) {
        err = BP_ENOMEM;
        goto out;
    }
    /* The file may shrink meanwhile: read up to its end, never past the buffer. */
    while (have < cap) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    buf = NULL;
    err = BP_OK;
out:
    saved = errno;
    free(buf);
    close(fd);
    errno = saved;
    return err;
}

static void get_openapi(bp_http_req_t *req)
{
    const char *path = req->env->cfg->openapi_path;
    char *doc = NULL;
    size_t len = 0;
    bp_err_t err = BP_ERETRY;
    errno = ENOENT; /* no path configured */
    if (path && path[0])
        err = read_doc(path, &doc, &len);
    if (err == BP_ENOMEM) {
        bp_http_reply_owned(req, 500, NULL, 0, NULL);
        return;
    }
    if (err != BP_OK) {
        char p[512];
        int e = errno; /* strerror() is not thread-safe */
        BP_LOG_WARN("OpenAPI document unreadable", "\"path\":\"%s\",\"errno\":%d",
                    bp_log_str(p, sizeof(p), path ? path : ""), e);
        bp_http_reply_problem(req, 503, "document-unavailable",
                              "the OpenAPI document cannot be read");
        req->resp.retry_after_s = 5;
        return;
    }
    bp_http_reply_owned(req, 200, doc, len, "application/yaml");
    req->resp.cache_control = "no-cache";
}

const bp_http_route_t bp_http_routes_openapi[] = {
    {"GET", "/openapi.yaml", get_openapi, BP_ACCESS_PUBLIC},
};
const size_t bp_http_routes_openapi_n =
    sizeof(bp_http_routes_openapi) / sizeof(bp_http_routes_openapi[0]);
