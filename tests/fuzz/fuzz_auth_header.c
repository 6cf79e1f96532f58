/** @file libFuzzer target: the Authorization header (bp_auth_verify, then bp_auth_authorize). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The secret the seed tokens of corpus/fuzz_auth_header were minted with (HS256, the
 * default algorithm: members not named here are zero). */
static const bp_auth_config_t cfg = {.hs256_secret = "fuzz-secret-0123456789abcdef",
                                     .issuer = "battlepass-fuzz",
                                     .audience = "battlepass",
                                     .leeway_s = 30};
/* Between the seeds' nbf and exp, so valid tokens get through to authorization. */
#define NOW_S 1767225600 /* 2026-01-01T00:00:00Z */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = malloc(size + 1);
    if (!header)
        return 0;
    memcpy(header, data, size);
    header[size] = '\0';
    bp_principal_t p;
    const char *detail = NULL;
    bp_auth_result_t r = bp_auth_verify(&cfg, header, NOW_S, &p, &detail);
    if (r != BP_AUTH_OK && !detail)
        abort();
    if (r == BP_AUTH_OK) {
        if (!memchr(p.sub, 0, sizeof(p.sub)) || p.sub[0] == '\0')
            abort();
        static const unsigned rules[] = {BP_ACCESS_TOKEN, BP_ACCESS_PLAYER_READ,
                                         BP_ACCESS_TOKEN | BP_SCOPE_ADMIN,
                                         BP_ACCESS_TOKEN | BP_SCOPE_SERVICE};
        for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
            bp_auth_result_t a = bp_auth_authorize(&p, rules[i], "player-42", &detail);
            if (a != BP_AUTH_OK && a != BP_AUTH_FORBIDDEN)
                abort();
            a = bp_auth_authorize(&p, rules[i], p.sub, &detail);
            if (a != BP_AUTH_OK && a != BP_AUTH_FORBIDDEN)
                abort();
            a = bp_auth_authorize(&p, rules[i], NULL, &detail);
            if (a != BP_AUTH_OK && a != BP_AUTH_FORBIDDEN)
                abort();
        }
    }
    free(header);
    return 0;
}
