/** @file Unit tests of producers/codec.c: framing, XpEvent decoding, hostile input, JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "producers/codec.h"

#define XP_ID 1
#define LEVEL_UP_ID 3
#define REWARD_GRANT_ID 4

static const char *source_dir(void)
{
    const char *d = getenv("BP_SOURCE_DIR");
    return d && *d ? d : BP_SOURCE_DIR;
}

static int setup(void **state)
{
    char dir[4096], why[256] = "";
    bp_codec_t *c = NULL;

    snprintf(dir, sizeof dir, "%s/schemas/avro", source_dir());
    if (bp_codec_new(dir, &c, why, sizeof why) != BP_OK) {
        fprintf(stderr, "bp_codec_new: %s\n", why);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    bp_codec_destroy(*state);
    return 0;
}

static bp_xp_event_t sample_event(void)
{
    bp_xp_event_t ev;
    memset(&ev, 0, sizeof ev);
    strcpy(ev.event_id, "evt-1");
    strcpy(ev.player_id, "player-1");
    strcpy(ev.season_id, "season-2024-1");
    strcpy(ev.reason, "match_complete");
    ev.amount = 150;
    ev.occurred_at_ms = 1700000000000;
    return ev;
}

static void assert_event_equal(const bp_xp_event_t *a, const bp_xp_event_t *b)
{
    assert_string_equal(a->event_id, b->event_id);
    assert_string_equal(a->player_id, b->player_id);
    assert_string_equal(a->season_id, b->season_id);
    assert_string_equal(a->reason, b->reason);
    assert_int_equal(a->amount, b->amount);
    assert_true(a->occurred_at_ms == b->occurred_at_ms);
}

/** Decode @p buf with bp_codec_decode_json and compare with the JSON text @p expect. */
static void assert_json_decodes_to(bp_codec_t *c, const void *buf, size_t len, const char *expect,
                                   int32_t expect_id)
{
    char *text = NULL;
    const char *why = NULL;
    int32_t id = -1;
    json_t *got, *want;

    assert_int_equal(bp_codec_decode_json(c, buf, len, &text, &id, &why), BP_OK);
    assert_int_equal(id, expect_id);
    got = json_loads(text, 0, NULL);
    want = json_loads(expect, 0, NULL);
    assert_non_null(got);
    assert_non_null(want);
    if (!json_equal(got, want))
        fail_msg("decoded %s, expected %s", text, expect);
    json_decref(got);
    json_decref(want);
    free(text);
}

static void test_subject_ids(void **state)
{
    bp_codec_t *c = *state;
    assert_int_equal(bp_codec_subject_id(c, "battlepass.xp-events-value"), XP_ID);
    assert_int_equal(bp_codec_subject_id(c, "battlepass.premium-events-value"), 2);
    assert_int_equal(bp_codec_subject_id(c, "battlepass.level-ups-value"), LEVEL_UP_ID);
    assert_int_equal(bp_codec_subject_id(c, "battlepass.reward-grants-value"), REWARD_GRANT_ID);
    assert_int_equal(bp_codec_subject_id(c, "battlepass.dlq-value"), -1);
    assert_int_equal(bp_codec_subject_id(c, NULL), -1);
}

static void test_xp_round_trip_full(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t ev = sample_event(), got;
    const char *keys[] = {"matchId", "mode"}, *values[] = {"m-99", "ranked"};
    const char *why = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;

    assert_int_equal(bp_codec_encode_xp(c, XP_ID, &ev, keys, values, 2, (void **)&buf, &len),
                     BP_OK);
    assert_true(len > 5);
    assert_memory_equal(buf, "\x00\x00\x00\x00\x01", 5);
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, len, &got, &why), BP_OK);
    assert_event_equal(&got, &ev);
    assert_json_decodes_to(c, buf, len,
                           "{\"eventId\":\"evt-1\",\"playerId\":\"player-1\",\"amount\":150,"
                           "\"reason\":\"match_complete\",\"occurredAt\":1700000000000,"
                           "\"seasonId\":\"season-2024-1\","
                           "\"metadata\":{\"matchId\":\"m-99\",\"mode\":\"ranked\"}}",
                           XP_ID);
    free(buf);
}

static void test_xp_round_trip_minimal(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t ev = sample_event(), got;
    const char *why = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;

    ev.season_id[0] = '\0';
    assert_int_equal(bp_codec_encode_xp(c, XP_ID, &ev, NULL, NULL, 0, (void **)&buf, &len), BP_OK);
    /* the null branch of seasonId (0x00), then an empty metadata map (0x00) */
    assert_true(len > 7);
    assert_int_equal(buf[len - 2], 0x00);
    assert_int_equal(buf[len - 1], 0x00);
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, len, &got, &why), BP_OK);
    assert_event_equal(&got, &ev);
    assert_json_decodes_to(c, buf, len,
                           "{\"eventId\":\"evt-1\",\"playerId\":\"player-1\",\"amount\":150,"
                           "\"reason\":\"match_complete\",\"occurredAt\":1700000000000,"
                           "\"seasonId\":null,\"metadata\":{}}",
                           XP_ID);
    free(buf);
}

/*
 * A datum written by hand from the Avro specification, not by avro-c: strings are a zigzag
 * varint length and the bytes, int/long are zigzag varints, a union is the branch index then
 * the value, a map is blocks of (count, key, value) ending with a 0 count; a negative count
 * is followed by the block's size in bytes.
 */
static const uint8_t handbuilt[] = {
    0x00, 0x00, 0x00, 0x00, 0x01,            /* magic, schema id 1 */
    0x04, 'e',  '1',                         /* eventId "e1" (len 2 -> 0x04) */
    0x0c, 'p',  'l',  'a',  'y',  'e',  'r', /* playerId "player" (6 -> 0x0c) */
    0xac, 0x02,                              /* amount 150 -> zigzag 300 */
    0x0a, 'm',  'a',  't',  'c',  'h',       /* reason "match" */
    0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62,      /* occurredAt 1700000000000 */
    0x02, 0x04, 's',  '1',                   /* seasonId: branch 1, "s1" */
    0x02, 0x02, 'k',  0x02, 'v',  0x00,      /* metadata {"k":"v"} */
};

static void test_xp_handbuilt(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t got;
    const char *why = NULL;
    /* the same with the map as one block of count -1 and size 4 bytes, season null */
    static const uint8_t blocked[] = {
        0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 'e',  '1',  0x0c, 'p',
        'l',  'a',  'y',  'e',  'r',  0xac, 0x02, 0x0a, 'm',  'a',
        't',  'c',  'h',  0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0x00, /* seasonId: branch 0, null */
        0x01, 0x08, 0x02, 'k',  0x02, 'v',  0x00 /* metadata: count -1, size 4, k, v, end */
    };

    assert_int_equal(bp_codec_decode_xp(c, XP_ID, handbuilt, sizeof handbuilt, &got, &why), BP_OK);
    assert_string_equal(got.event_id, "e1");
    assert_string_equal(got.player_id, "player");
    assert_int_equal(got.amount, 150);
    assert_string_equal(got.reason, "match");
    assert_true(got.occurred_at_ms == 1700000000000);
    assert_string_equal(got.season_id, "s1");

    assert_int_equal(bp_codec_decode_xp(c, XP_ID, blocked, sizeof blocked, &got, &why), BP_OK);
    assert_string_equal(got.season_id, "");
    assert_json_decodes_to(c, blocked, sizeof blocked,
                           "{\"eventId\":\"e1\",\"playerId\":\"player\",\"amount\":150,"
                           "\"reason\":\"match\",\"occurredAt\":1700000000000,"
                           "\"seasonId\":null,\"metadata\":{\"k\":\"v\"}}",
                           XP_ID);
}

static void test_xp_truncated_every_length(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t ev = sample_event(), got;
    const char *keys[] = {"matchId"}, *values[] = {"m-99"};
    uint8_t *buf = NULL;
    size_t len = 0;

    assert_int_equal(bp_codec_encode_xp(c, XP_ID, &ev, keys, values, 1, (void **)&buf, &len),
                     BP_OK);
    for (size_t n = 0; n < len; n++) {
        /* a copy of exactly n bytes, so valgrind/ASan see any read past the end */
        uint8_t *cut = malloc(n ? n : 1);
        const char *why = NULL;
        char *text = NULL;
        assert_non_null(cut);
        memcpy(cut, buf, n);
        assert_int_equal(bp_codec_decode_xp(c, XP_ID, cut, n, &got, &why), BP_EINVAL);
        if (n == 0)
            assert_string_equal(why, "no magic byte");
        else if (n < 5)
            assert_string_equal(why, "truncated schema id");
        else
            assert_string_equal(why, "truncated Avro datum");
        assert_int_equal(bp_codec_decode_json(c, cut, n, &text, NULL, &why), BP_EINVAL);
        assert_null(text);
        free(cut);
    }
    free(buf);
}

static void test_wrong_magic(void **state)
{
    bp_codec_t *c = *state;
    uint8_t buf[sizeof handbuilt];
    bp_xp_event_t got;
    const char *why = NULL;

    memcpy(buf, handbuilt, sizeof buf);
    buf[0] = 0x01;
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, sizeof buf, &got, &why), BP_EINVAL);
    assert_string_equal(why, "no magic byte");
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, "{\"json\":1}", 10, &got, &why), BP_EINVAL);
    assert_string_equal(why, "no magic byte");
}

static void test_unknown_schema_id(void **state)
{
    bp_codec_t *c = *state;
    uint8_t buf[sizeof handbuilt];
    bp_xp_event_t got;
    const char *why = NULL;
    char *text = NULL;

    memcpy(buf, handbuilt, sizeof buf);
    buf[4] = 99;
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, sizeof buf, &got, &why), BP_EINVAL);
    assert_string_equal(why, "unknown schema id");
    assert_int_equal(bp_codec_decode_json(c, buf, sizeof buf, &text, NULL, &why), BP_EINVAL);
    assert_string_equal(why, "unknown schema id");
    /* a known id that is not the one expected on this topic */
    buf[4] = LEVEL_UP_ID;
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, sizeof buf, &got, &why), BP_EINVAL);
    assert_string_equal(why, "unknown schema id");
    /* bytes 1-4 are big-endian: 0x01000000 is not id 1 */
    memcpy(buf, handbuilt, sizeof buf);
    buf[1] = 0x01;
    buf[4] = 0x00;
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, sizeof buf, &got, &why), BP_EINVAL);
    assert_string_equal(why, "unknown schema id");
    /* a LevelUp schema is not an XpEvent schema */
    assert_int_equal(bp_codec_decode_xp(c, LEVEL_UP_ID, "\0\0\0\0\3", 5, &got, &why), BP_EINVAL);
    assert_string_equal(why, "schema id is not an XpEvent schema");
}

static void test_trailing_bytes(void **state)
{
    bp_codec_t *c = *state;
    uint8_t buf[sizeof handbuilt + 1];
    bp_xp_event_t got;
    const char *why = NULL;
    char *text = NULL;

    memcpy(buf, handbuilt, sizeof handbuilt);
    buf[sizeof handbuilt] = 0x00;
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, sizeof buf, &got, &why), BP_EINVAL);
    assert_string_equal(why, "trailing bytes");
    assert_int_equal(bp_codec_decode_json(c, buf, sizeof buf, &text, NULL, &why), BP_EINVAL);
    assert_string_equal(why, "trailing bytes");
}

/** Encode an XpEvent given as JSON (any lengths), then decode it as the worker does. */
static bp_err_t decode_json_event(bp_codec_t *c, const char *json, bp_xp_event_t *got,
                                  const char **why)
{
    void *buf = NULL;
    size_t len = 0;
    bp_err_t err;

    assert_int_equal(bp_codec_encode_json(c, XP_ID, json, &buf, &len, why), BP_OK);
    err = bp_codec_decode_xp(c, XP_ID, buf, len, got, why);
    free(buf);
    return err;
}

/** A minimal XpEvent as JSON text with @p field set to @p value (caller frees). */
static char *event_json_with(const char *field, const char *value)
{
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:i}", "eventId", "e", "playerId", "p", "amount", 1,
                          "reason", "r", "occurredAt", 1);
    char *text;

    assert_non_null(o);
    assert_int_equal(json_object_set_new(o, field, json_string(value)), 0);
    text = json_dumps(o, JSON_COMPACT);
    assert_non_null(text);
    json_decref(o);
    return text;
}

static void test_overlong_strings(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t got;
    const char *why = NULL;
    char s64[65], s65[66];
    static const struct {
        const char *field, *why;
    } cases[] = {
        {"eventId", "eventId longer than 64 bytes"},
        {"playerId", "playerId longer than 64 bytes"},
        {"reason", "reason longer than 64 bytes"},
        {"seasonId", "seasonId longer than 64 bytes"},
    };

    memset(s64, 'a', 64);
    s64[64] = '\0';
    memset(s65, 'b', 65);
    s65[65] = '\0';
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *json = event_json_with(cases[i].field, s64);
        assert_int_equal(decode_json_event(c, json, &got, &why), BP_OK);
        assert_int_equal(strlen(got.event_id) + strlen(got.player_id) + strlen(got.reason) +
                             strlen(got.season_id),
                         64 + (i == 3 ? 3 : 2));
        free(json);
        json = event_json_with(cases[i].field, s65);
        assert_int_equal(decode_json_event(c, json, &got, &why), BP_EINVAL);
        assert_string_equal(why, cases[i].why);
        free(json);
    }
    /* a NUL inside an id would silently shorten it (and merge two idempotency keys) */
    {
        static const uint8_t nul[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x06, 'e',  0x00, 'x',
                                      0x02, 'p',  0x02, 0x02, 'r',  0x02, 0x00, 0x00};
        assert_int_equal(bp_codec_decode_xp(c, XP_ID, nul, sizeof nul, &got, &why), BP_EINVAL);
    }
    assert_string_equal(why, "eventId contains a NUL byte");
}

/* avro-c allocator that remembers the largest request (see the hostile-length test) */
static struct avro_allocator_state saved_allocator;
static size_t largest_alloc, n_allocs;

static void *counting_allocator(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize > largest_alloc)
        largest_alloc = nsize;
    if (nsize)
        n_allocs++;
    return saved_allocator.alloc(saved_allocator.user_data, ptr, osize, nsize);
}

static void counting_allocator_install(void)
{
    if (AVRO_CURRENT_ALLOCATOR.alloc != counting_allocator)
        saved_allocator = AVRO_CURRENT_ALLOCATOR;
    largest_alloc = n_allocs = 0;
    avro_set_allocator(counting_allocator, NULL);
}

static void counting_allocator_remove(void)
{
    avro_set_allocator(saved_allocator.alloc, saved_allocator.user_data);
}

static void test_hostile_lengths(void **state)
{
    bp_codec_t *c = *state;
    static const uint8_t head[] = {0x00, 0x00, 0x00, 0x00, 0x01};
    static const struct {
        uint8_t bytes[24];
        size_t len;
        const char *why;
    } cases[] = {
        /* eventId declares 2^31 bytes: avro-c 1.11.1 alone would malloc 2 GiB */
        {{0x80, 0x80, 0x80, 0x80, 0x10, 'a', 'b'}, 7, "truncated Avro datum"},
        /* 2^62 bytes */
        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 'a'},
         11,
         "truncated Avro datum"},
        /* length -1 and -2^31 */
        {{0x01, 'a'}, 2, "negative Avro length"},
        {{0xff, 0xff, 0xff, 0xff, 0x0f, 'a'}, 6, "negative Avro length"},
        /* an 11-byte varint */
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 11, "bad Avro varint"},
        /* amount 2^31 does not fit an int */
        {{0x02, 'e', 0x02, 'p', 0x80, 0x80, 0x80, 0x80, 0x10}, 9, "Avro int out of range"},
        /* seasonId union index 2 and -1 */
        {{0x02, 'e', 0x02, 'p', 0x02, 0x02, 'r', 0x02, 0x04}, 9, "bad Avro union index"},
        {{0x02, 'e', 0x02, 'p', 0x02, 0x02, 'r', 0x02, 0x01}, 9, "bad Avro union index"},
        /* metadata map declaring 2^62 entries, and a block count of -2^63 */
        {{0x02, 'e',  0x02, 'p',  0x02, 0x02, 'r',  0x02, 0x00, 0x80, 0x80, 0x80,
          0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x02, 'k',  0x02, 'v'},
         23,
         "truncated Avro datum"},
        {{0x02, 'e',  0x02, 'p',  0x02, 0x02, 'r',  0x02, 0x00, 0xff, 0xff, 0xff,
          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 'k',  0x02, 'v'},
         23,
         "bad Avro block count"},
        /* block size of a negative-count block larger than the message */
        {{0x02, 'e',  0x02, 'p',  0x02, 0x02, 'r', 0x02, 0x00, 0x01,
          0x80, 0x80, 0x80, 0x80, 0x10, 0x02, 'k', 0x02, 'v',  0x00},
         20,
         "truncated Avro datum"},
    };

    char failure[256] = "";

    counting_allocator_install();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[64];
        bp_xp_event_t got;
        const char *why = NULL;
        char *text = NULL;

        memcpy(buf, head, sizeof head);
        memcpy(buf + sizeof head, cases[i].bytes, cases[i].len);
        /* no cmocka assertion while the allocator is ours: a failure longjmps past it */
        if (bp_codec_decode_xp(c, XP_ID, buf, sizeof head + cases[i].len, &got, &why) !=
                BP_EINVAL ||
            strcmp(why, cases[i].why) != 0)
            snprintf(failure, sizeof failure, "case %zu: decode_xp: got \"%s\", expected \"%s\"", i,
                     why ? why : "(ok)", cases[i].why);
        why = NULL;
        if (bp_codec_decode_json(c, buf, sizeof head + cases[i].len, &text, NULL, &why) !=
                BP_EINVAL ||
            strcmp(why, cases[i].why) != 0)
            snprintf(failure, sizeof failure, "case %zu: decode_json: got \"%s\", expected \"%s\"",
                     i, why ? why : "(ok)", cases[i].why);
        free(text);
    }
    counting_allocator_remove();
    if (failure[0])
        fail_msg("%s", failure);
    if (largest_alloc > 4096)
        fail_msg("avro-c was asked for %zu bytes", largest_alloc);
}

static void test_decode_allocations(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t got;
    const char *why = NULL;
    bp_err_t err;

    /* warm up, then count avro-c's allocations for one decode (documented, not a goal) */
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, handbuilt, sizeof handbuilt, &got, &why), BP_OK);
    counting_allocator_install();
    err = bp_codec_decode_xp(c, XP_ID, handbuilt, sizeof handbuilt, &got, &why);
    counting_allocator_remove();
    assert_int_equal(err, BP_OK);
    print_message("avro-c allocations per XpEvent decode (5 strings, 1 map entry): %zu\n",
                  n_allocs);
    assert_true(n_allocs < 32);
}

static void test_python_fixture(void **state)
{
    bp_codec_t *c = *state;
    char path[4096];
    uint8_t buf[1024];
    size_t len;
    FILE *f;
    bp_xp_event_t got;
    const char *why = NULL;

    snprintf(path, sizeof path, "%s/tests/unit/data/codec/xp_event_python.bin", source_dir());
    f = fopen(path, "rb");
    assert_non_null(f);
    len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(bp_codec_decode_xp(c, XP_ID, buf, len, &got, &why), BP_OK);
    assert_string_equal(got.event_id, "evt-python-0001");
    assert_string_equal(got.player_id, "player-42");
    assert_int_equal(got.amount, 1250);
    assert_string_equal(got.reason, "mission_complete");
    assert_true(got.occurred_at_ms == 1709296496789); /* 2024-03-01T12:34:56.789Z */
    assert_string_equal(got.season_id, "season-2024-1");
    assert_json_decodes_to(c, buf, len,
                           "{\"eventId\":\"evt-python-0001\",\"playerId\":\"player-42\","
                           "\"amount\":1250,\"reason\":\"mission_complete\","
                           "\"occurredAt\":1709296496789,\"seasonId\":\"season-2024-1\","
                           "\"metadata\":{\"missionId\":\"m-7\",\"matchId\":\"x\\u00e9\"}}",
                           XP_ID);
}

static void json_round_trip(bp_codec_t *c, int32_t id, const char *json)
{
    void *buf = NULL;
    size_t len = 0;
    const char *why = NULL;
    bp_err_t err = bp_codec_encode_json(c, id, json, &buf, &len, &why);

    if (err != BP_OK)
        fail_msg("encode_json: %s", why);
    assert_memory_equal(buf, "\x00\x00\x00\x00", 4);
    assert_int_equal(((uint8_t *)buf)[4], id);
    assert_json_decodes_to(c, buf, len, json, id);
    free(buf);
}

static void test_json_level_up(void **state)
{
    json_round_trip(*state, LEVEL_UP_ID,
                    "{\"eventId\":\"levelup:s1:p1:3\",\"playerId\":\"p1\",\"seasonId\":\"s1\","
                    "\"previousLevel\":2,\"newLevel\":3,\"totalXp\":4500000000,"
                    "\"causeEventId\":\"evt-9\",\"occurredAt\":1700000000000}");
}

static void test_json_reward_grant(void **state)
{
    bp_codec_t *c = *state;
    void *buf = NULL;
    size_t len = 0;
    const char *why = NULL;
    const char *json = "{\"grantId\":\"g1\",\"playerId\":\"p1\",\"seasonId\":\"s1\",\"level\":5,"
                       "\"tier\":\"premium\",\"rewardId\":\"r5p\",\"itemId\":\"skin-1\","
                       "\"quantity\":1,\"grantedAt\":1700000000123,\"source\":\"auto\"}";
    /* the datum by hand: tier "premium" is enum index 1 -> 0x02; source "auto" last */
    static const uint8_t expect[] = {0x00, 0x00, 0x00, 0x00, 0x04, 0x04, 'g',  '1',  0x04, 'p',
                                     '1',  0x04, 's',  '1',  0x0a, 0x02, 0x06, 'r',  '5',  'p',
                                     0x0c, 's',  'k',  'i',  'n',  '-',  '1',  0x02, 0xf6, 0xa1,
                                     0xab, 0xfe, 0xf9, 0x62, 0x08, 'a',  'u',  't',  'o'};

    json_round_trip(c, REWARD_GRANT_ID, json);
    json_round_trip(c, REWARD_GRANT_ID,
                    "{\"grantId\":\"g2\",\"playerId\":\"p1\",\"seasonId\":\"s1\",\"level\":1,"
                    "\"tier\":\"free\",\"rewardId\":\"r1f\",\"itemId\":\"coins\","
                    "\"quantity\":100,\"grantedAt\":0,\"source\":\"claim\"}");
    /* source is optional for producers: its default is "claim" */
    char *decoded = NULL;
    int32_t id = -1;
    assert_int_equal(bp_codec_encode_json(c, REWARD_GRANT_ID,
                                          "{\"grantId\":\"g3\",\"playerId\":\"p1\",\"seasonId\":"
                                          "\"s1\",\"level\":1,\"tier\":\"free\",\"rewardId\":"
                                          "\"r\",\"itemId\":\"i\",\"quantity\":1,\"grantedAt\":0}",
                                          &buf, &len, &why),
                     BP_OK);
    assert_int_equal(bp_codec_decode_json(c, buf, len, &decoded, &id, &why), BP_OK);
    assert_non_null(strstr(decoded, "\"source\":\"claim\""));
    free(decoded);
    free(buf);
    assert_int_equal(bp_codec_encode_json(c, REWARD_GRANT_ID, json, &buf, &len, &why), BP_OK);
    assert_int_equal(len, sizeof expect);
    assert_memory_equal(buf, expect, sizeof expect);
    free(buf);
}

static void test_json_missing_field(void **state)
{
    bp_codec_t *c = *state;
    void *buf = (void *)1;
    size_t len = 1;
    const char *why = NULL;

    assert_int_equal(bp_codec_encode_json(c, REWARD_GRANT_ID,
                                          "{\"grantId\":\"g1\",\"playerId\":\"p1\",\"seasonId\":"
                                          "\"s1\",\"level\":5,\"tier\":\"free\",\"rewardId\":"
                                          "\"r\",\"itemId\":\"i\",\"quantity\":1}",
                                          &buf, &len, &why),
                     BP_EINVAL);
    assert_string_equal(why, "missing field grantedAt");
    assert_null(buf);
    assert_int_equal(len, 0);
}

static void test_json_bad_enum(void **state)
{
    bp_codec_t *c = *state;
    void *buf = NULL;
    size_t len = 0;
    const char *why = NULL;

    assert_int_equal(bp_codec_encode_json(c, REWARD_GRANT_ID,
                                          "{\"grantId\":\"g1\",\"playerId\":\"p1\",\"seasonId\":"
                                          "\"s1\",\"level\":5,\"tier\":\"gold\",\"rewardId\":"
                                          "\"r\",\"itemId\":\"i\",\"quantity\":1,\"grantedAt\":1}",
                                          &buf, &len, &why),
                     BP_EINVAL);
    assert_string_equal(why, "field tier: unknown enum symbol \"gold\"");
    assert_null(buf);
}

static void test_json_bad_input(void **state)
{
    bp_codec_t *c = *state;
    void *buf = NULL;
    size_t len = 0;
    const char *why = NULL;
    static const struct {
        int32_t id;
        const char *json, *why;
    } cases[] = {
        {99, "{}", "unknown schema id"},
        {LEVEL_UP_ID, "{\"eventId\":", "bad JSON: "},
        {LEVEL_UP_ID, "[1]", "expected a JSON object"},
        {XP_ID,
         "{\"eventId\":\"e\",\"playerId\":\"p\",\"amount\":\"1\",\"reason\":\"r\","
         "\"occurredAt\":1}",
         "field amount: expected an integer"},
        {XP_ID,
         "{\"eventId\":\"e\",\"playerId\":\"p\",\"amount\":2147483648,\"reason\":\"r\","
         "\"occurredAt\":1}",
         "field amount: integer out of int range"},
        {XP_ID,
         "{\"eventId\":\"e\",\"playerId\":null,\"amount\":1,\"reason\":\"r\",\"occurredAt\":1}",
         "field playerId: expected a string"},
        {XP_ID,
         "{\"eventId\":\"e\",\"playerId\":\"p\",\"amount\":1,\"reason\":\"r\",\"occurredAt\":1,"
         "\"seasonId\":7}",
         "field seasonId: JSON value fits no branch of the union"},
        {XP_ID,
         "{\"eventId\":\"e\",\"playerId\":\"p\",\"amount\":1,\"reason\":\"r\",\"occurredAt\":1,"
         "\"metadata\":{\"k\":1}}",
         "field metadata: expected a string"},
        {XP_ID, "{\"playerId\":\"p\",\"amount\":1,\"reason\":\"r\",\"occurredAt\":1}",
         "missing field eventId"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(bp_codec_encode_json(c, cases[i].id, cases[i].json, &buf, &len, &why),
                         BP_EINVAL);
        if (strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("case %zu: got \"%s\", expected \"%s\"", i, why, cases[i].why);
        assert_null(buf);
    }
}

static void test_json_defaults(void **state)
{
    bp_codec_t *c = *state;
    bp_xp_event_t got;
    const char *why = NULL;

    /* seasonId and metadata absent: their defaults (null, {}) */
    assert_int_equal(decode_json_event(c,
                                       "{\"eventId\":\"e\",\"playerId\":\"p\",\"amount\":3,"
                                       "\"reason\":\"r\",\"occurredAt\":42}",
                                       &got, &why),
                     BP_OK);
    assert_string_equal(got.season_id, "");
    assert_int_equal(got.amount, 3);
    assert_true(got.occurred_at_ms == 42);
    json_round_trip(c, XP_ID,
                    "{\"eventId\":\"e\",\"playerId\":\"p\",\"amount\":3,\"reason\":\"r\","
                    "\"occurredAt\":42,\"seasonId\":\"s\",\"metadata\":{\"a\":\"b\",\"c\":\"\"}}");
}

static void test_decode_json_bad_datum(void **state)
{
    bp_codec_t *c = *state;
    char *text = NULL;
    const char *why = NULL;
    /* RewardGrant with tier index 2 (only free, premium exist) */
    static const uint8_t bad_enum[] = {0x00, 0x00, 0x00, 0x00, 0x04, 0x02, 'g', 0x02, 'p', 0x02,
                                       's',  0x02, 0x04, 0x02, 'r',  0x02, 'i', 0x02, 0x02};
    /* LevelUp whose playerId is not UTF-8 */
    static const uint8_t bad_utf8[] = {0x00, 0x00, 0x00, 0x00, 0x03, 0x02, 'e', 0x02, 0xff,
                                       0x02, 's',  0x02, 0x04, 0x02, 0x02, 'c', 0x02};

    assert_int_equal(bp_codec_decode_json(c, bad_enum, sizeof bad_enum, &text, NULL, &why),
                     BP_EINVAL);
    assert_string_equal(why, "bad Avro enum index");
    assert_int_equal(bp_codec_decode_json(c, bad_utf8, sizeof bad_utf8, &text, NULL, &why),
                     BP_EINVAL);
    assert_string_equal(why, "string is not valid UTF-8");
    assert_null(text);
}

/* ---------------------------------------------------------------- bp_codec_new errors */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void expect_new_fails(const char *dir, const char *why_part)
{
    bp_codec_t *c = (bp_codec_t *)1;
    char why[512] = "";

    assert_int_equal(bp_codec_new(dir, &c, why, sizeof why), BP_EFATAL);
    assert_null(c);
    if (!strstr(why, why_part))
        fail_msg("why \"%s\" does not contain \"%s\"", why, why_part);
}

static void test_codec_new_errors(void **state)
{
    char dir[] = "/tmp/bp_codec_test_XXXXXX";
    static const char rec[] =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}";
    (void)state;

    assert_non_null(mkdtemp(dir));
    expect_new_fails(dir, "subjects.json");
    write_file(dir, "subjects.json", "{\"t-value\": {\"id\": 1, \"schema\": ");
    expect_new_fails(dir, "subjects.json");
    write_file(dir, "subjects.json", "{\"t-value\": {\"id\": \"1\", \"schema\": \"r.avsc\"}}");
    expect_new_fails(dir, "t-value");
    write_file(dir, "subjects.json", "{\"t-value\": {\"id\": 1, \"schema\": \"r.avsc\"}}");
    expect_new_fails(dir, "r.avsc");
    write_file(dir, "r.avsc", "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":");
    expect_new_fails(dir, "r.avsc: bad Avro schema");
    write_file(dir, "r.avsc", "\"string\"");
    expect_new_fails(dir, "r.avsc: not a record schema");
    write_file(dir, "r.avsc", rec);
    write_file(dir, "s.avsc", rec);
    write_file(dir, "subjects.json",
               "{\"t-value\": {\"id\": 1, \"schema\": \"r.avsc\"},"
               " \"u-value\": {\"id\": 1, \"schema\": \"s.avsc\"}}");
    expect_new_fails(dir, "schema id 1 names both");
    {
        /* the same schema under two subjects shares its id, as with a registry */
        bp_codec_t *c = NULL;
        char why[256] = "";
        write_file(dir, "subjects.json",
                   "{\"t-value\": {\"id\": 7, \"schema\": \"r.avsc\"},"
                   " \"u-value\": {\"id\": 7, \"schema\": \"r.avsc\"}}");
        assert_int_equal(bp_codec_new(dir, &c, why, sizeof why), BP_OK);
        assert_int_equal(bp_codec_subject_id(c, "t-value"), 7);
        assert_int_equal(bp_codec_subject_id(c, "u-value"), 7);
        bp_codec_destroy(c);
    }
    bp_codec_destroy(NULL);
    remove_file(dir, "subjects.json");
    remove_file(dir, "r.avsc");
    remove_file(dir, "s.avsc");
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_ids),
        cmocka_unit_test(test_xp_round_trip_full),
        cmocka_unit_test(test_xp_round_trip_minimal),
        cmocka_unit_test(test_xp_handbuilt),
        cmocka_unit_test(test_xp_truncated_every_length),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_unknown_schema_id),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_overlong_strings),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_decode_allocations),
        cmocka_unit_test(test_python_fixture),
        cmocka_unit_test(test_json_level_up),
        cmocka_unit_test(test_json_reward_grant),
        cmocka_unit_test(test_json_missing_field),
        cmocka_unit_test(test_json_bad_enum),
        cmocka_unit_test(test_json_bad_input),
        cmocka_unit_test(test_json_defaults),
        cmocka_unit_test(test_decode_json_bad_datum),
        cmocka_unit_test(test_codec_new_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
