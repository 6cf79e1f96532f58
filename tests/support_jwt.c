/** @file JWT minting shared by the unit and the integration tests. */
#include "tests/support_jwt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *tjwt_mint(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

char *tjwt_b64url(const char *s)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    char *out = malloc(n * 4 / 3 + 4);
    assert_non_null(out);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint32_t)(unsigned char)s[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tab[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tab[v & 63];
    }
    out[o] = '\0';
    return out;
}

char *tjwt_unsigned(const char *header, const char *claims)
{
    char *h = tjwt_b64url(header), *p = tjwt_b64url(claims);
    size_t len = strlen(h) + strlen(p) + 3;
    char *t = malloc(len);
    assert_non_null(t);
    snprintf(t, len, "%s.%s.", h, p);
    free(h);
    free(p);
    return t;
}

char *tjwt_swap_payload(const char *token, const char *claims)
{
    const char *dot1 = strchr(token, '.');
    assert_non_null(dot1);
    const char *dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    char *p = tjwt_b64url(claims);
    size_t len = (size_t)(dot1 - token) + strlen(p) + strlen(dot2) + 2;
    char *t = malloc(len);
    assert_non_null(t);
    snprintf(t, len, "%.*s.%s%s", (int)(dot1 - token), token, p, dot2);
    free(p);
    return t;
}

char *tjwt_padded(const char *claims, size_t pad_bytes)
{
    size_t n = strlen(claims);
    assert_true(n >= 2 && claims[n - 1] == '}');
    static const char member[] = ",\"pad\":\"";
    size_t len = n - 1 + sizeof(member) - 1 + pad_bytes + 3;
    char *t = malloc(len);
    assert_non_null(t);
    memcpy(t, claims, n - 1);
    memcpy(t + n - 1, member, sizeof(member) - 1);
    size_t o = n - 1 + sizeof(member) - 1;
    memset(t + o, 'x', pad_bytes);
    memcpy(t + o + pad_bytes, "\"}", 3);
    return t;
}
