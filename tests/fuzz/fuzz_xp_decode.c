/** @file libFuzzer target: the worker's XP-event decoder (Confluent-framed Avro) and validation. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event.h"
#include "producers/codec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bp_codec_t *codec;
static int32_t xp_id;

/* The codec keeps decoded values for reuse; freeing it at exit keeps LeakSanitizer quiet. */
static void destroy_codec(void)
{
    bp_codec_destroy(codec);
    codec = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[4096];
    char why[256] = "";
    const char *src = getenv("BP_SOURCE_DIR");
    snprintf(dir, sizeof(dir), "%s/schemas/avro", src && *src ? src : BP_SOURCE_DIR);
    if (bp_codec_new(dir, &codec, why, sizeof(why)) != BP_OK) {
        fprintf(stderr, "fuzz_xp_decode: bp_codec_new(%s): %s\n", dir, why);
        abort();
    }
    atexit(destroy_codec);
    xp_id = bp_codec_subject_id(codec, "battlepass.xp-events-value");
    if (xp_id < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bp_xp_event_t ev;
    const char *why = NULL;
    memset(&ev, 0, sizeof(ev));
    if (bp_codec_decode_xp(codec, xp_id, data, size, &ev, &why) == BP_OK) {
        /* Decoded strings must be NUL-terminated within their buffers. */
        if (!memchr(ev.event_id, 0, sizeof(ev.event_id)) ||
            !memchr(ev.player_id, 0, sizeof(ev.player_id)) ||
            !memchr(ev.season_id, 0, sizeof(ev.season_id)) ||
            !memchr(ev.reason, 0, sizeof(ev.reason)))
            abort();
        why = NULL;
        if (bp_xp_event_validate(&ev, &why) != BP_OK && !why)
            abort();
    } else if (!why) {
        abort(); /* every refusal names its reason */
    }
    /* The generic decoder (tools, tests) reads every known schema from the same bytes. */
    char *json = NULL;
    int32_t id = -1;
    why = NULL;
    if (bp_codec_decode_json(codec, data, size, &json, &id, &why) == BP_OK && !json)
        abort();
    free(json);
    return 0;
}
