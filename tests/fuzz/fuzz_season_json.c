/** @file libFuzzer target: the season-definition parser, with a serialise/re-parse round trip. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/season_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bp_season_t a, b;
    char why[256] = "";
    if (bp_season_from_json((const char *)data, size, &a, why, sizeof(why)) != BP_OK)
        return 0;
    char *text = bp_season_to_json(&a, a.starts_at_ms);
    if (!text)
        abort();
    /* What the service prints it must read back, to the same resource. */
    if (bp_season_from_json(text, strlen(text), &b, why, sizeof(why)) != BP_OK) {
        fprintf(stderr, "round trip refused: %s\n%s\n", why, text);
        abort();
    }
    char *again = bp_season_to_json(&b, a.starts_at_ms);
    if (!again || strcmp(text, again) != 0) {
        fprintf(stderr, "round trip differs:\n%s\n%s\n", text, again ? again : "(null)");
        abort();
    }
    free(again);
    free(text);
    bp_season_fini(&b);
    bp_season_fini(&a);
    return 0;
}
