/** @file Avro codec in the Confluent wire format on avro-c and jansson (see codec.h). */
#include "producers/codec.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>

/*
 * Hostile lengths. avro-c 1.11.1 (Debian's libavro) reads a string or bytes value by
 * allocating the declared length + 1 *before* it looks at how many bytes are left: a
 * 20-byte message declaring a 2^31-byte string makes it malloc 2 GiB (seen under valgrind;
 * with a memory limit it fails with ENOMEM), negative lengths come back as ENOMEM too (which
 * a caller would take for "retry", not "bad input"), a map block count of -2^63 overflows
 * its negation, and nothing bounds an array-of-null block count. So every datum is first
 * walked by scan(), driven by the schema and bounded by the buffer: varints at most 10
 * bytes, lengths >= 0 and <= the bytes left, block item counts <= the bytes left, enum and
 * union indexes in range, booleans 0/1, ints in range, and the datum consumed exactly
 * (trailing bytes are refused). Only a datum that passed is handed to avro_value_read, so
 * nothing it allocates can exceed a small multiple of the message size. The scan is one
 * pass over the message; it also gives the exact-consumption check (avro-c's memory reader
 * does not expose its position, and avro_value_sizeof would be a second walk anyway).
 *
 * Allocation: one memory reader per codec (avro_reader_memory_set_source) and one generic
 * value per schema are reused, but avro_value_read itself mallocs every string it reads
 * (read_string, then a wrapper), ~15 small allocations for an XpEvent with one metadata
 * entry. Measured at ~1.4M XpEvent decodes/s on one core here, far above the ~100k/s
 * needed, so avro-c's reader is kept rather than replaced by a hand-written one.
 *
 * Schemas: avro-c drops logicalType (and defaults) from its parsed schema, so each entry
 * keeps the original text and its jansson tree; field defaults come from that tree. Each
 * schema is compiled into a small tree of struct node (type, children, field names, enum
 * symbols) that scan() and the JSON conversion walk without avro-c's hash lookups.
 */

/** Deepest nesting of types accepted in a schema (also stops recursive named types). */
#define MAX_SCHEMA_DEPTH 16
/** Largest schema or subjects file read. */
#define MAX_SCHEMA_FILE (1024 * 1024)
/** Confluent framing: magic byte + 4-byte schema id. */
#define FRAME_LEN 5

#define STR_(x) #x
#define STR(x) STR_(x)

static const char R_TRUNC[] = "truncated Avro datum";
static const char R_VARINT[] = "bad Avro varint";
static const char R_NEGLEN[] = "negative Avro length";
static const char R_INTRANGE[] = "Avro int out of range";
static const char R_BOOL[] = "bad Avro boolean";
static const char R_ENUM[] = "bad Avro enum index";
static const char R_UNION[] = "bad Avro union index";
static const char R_BLOCK[] = "bad Avro block count";
static const char R_TYPE[] = "unsupported Avro type";
static const char R_UNKNOWN_ID[] = "unknown schema id";

struct node {
    avro_type_t type;
    size_t n;                /**< record fields, union branches, enum symbols; 1 for map/array */
    struct node **kids;      /**< field types, branch types, map value / array item type */
    const char **names;      /**< record field names, enum symbols (owned by the avro schema) */
    const json_t **defaults; /**< record fields: default or NULL (owned by entry.json) */
    int64_t fixed_size;
};

/** Where the XpEvent fields sit in a schema, when the schema is an XpEvent. */
struct xp_layout {
    bool ok;
    int event_id, player_id, amount, reason, occurred_at;
    int season_id;     /**< -1 when absent */
    int season_branch; /**< branch of the string in a ["null","string"] union; -1 if plain */
    int season_null;   /**< branch of the null */
    int metadata;      /**< map<string> field or -1 */
};

struct entry {
    int32_t id;
    char *file;
    char *text; /**< the original schema text (avro-c loses logicalType when printing) */
    size_t text_len;
    json_t *json;
    avro_schema_t schema;
    struct node *root;
    avro_value_iface_t *iface;
    avro_value_t value; /**< reused for every encode and decode with this schema */
    bool has_value;
    struct xp_layout xp;
};

struct subject {
    char *name;
    int32_t id;
};

struct bp_codec {
    struct entry *entries;
    size_t n_entries;
    struct subject *subjects;
    size_t n_subjects;
    avro_reader_t reader;
    avro_writer_t writer;
    char why[192]; /**< reasons of the JSON functions, valid until the next call */
};

static const char dummy_buf[1];

/* ---------------------------------------------------------------- schema tree */

static void node_free(struct node *n)
{
    if (!n)
        return;
    if (n->kids)
        for (size_t i = 0; i < n->n; i++)
            node_free(n->kids[i]);
    free(n->kids);
    free(n->names);
    free(n->defaults);
    free(n);
}

static bp_err_t build_node(avro_schema_t s, int depth, struct node **out, const char **why)
{
    bp_err_t err = BP_ENOMEM;
    struct node *n = NULL;
    size_t nk = 0;

    while (is_avro_link(s))
        s = avro_schema_link_target(s);
    if (depth > MAX_SCHEMA_DEPTH) {
        *why = "schema nested too deeply (recursive type?)";
        err = BP_EFATAL;
        goto out;
    }
    n = calloc(1, sizeof *n);
    if (!n)
        goto out;
    n->type = avro_typeof(s);
    switch (n->type) {
    case AVRO_RECORD:
        n->n = nk = avro_schema_record_size(s);
        n->names = calloc(nk ? nk : 1, sizeof *n->names);
        if (!n->names)
            goto out;
        for (size_t i = 0; i < nk; i++)
            n->names[i] = avro_schema_record_field_name(s, (int)i);
        break;
    case AVRO_UNION:
        n->n = nk = avro_schema_union_size(s);
        break;
    case AVRO_MAP:
    case AVRO_ARRAY:
        n->n = nk = 1;
        break;
    case AVRO_ENUM:
        n->n = (size_t)avro_schema_enum_number_of_symbols(s);
        n->names = calloc(n->n ? n->n : 1, sizeof *n->names);
        if (!n->names)
            goto out;
        for (size_t i = 0; i < n->n; i++)
            n->names[i] = avro_schema_enum_get(s, (int)i);
        break;
    case AVRO_FIXED:
        n->fixed_size = avro_schema_fixed_size(s);
        break;
    default:
        break;
    }
    if (nk) {
        n->kids = calloc(nk, sizeof *n->kids);
        if (!n->kids)
            goto out;
        for (size_t i = 0; i < nk; i++) {
            avro_schema_t k = n->type == AVRO_RECORD
                                  ? avro_schema_record_field_get_by_index(s, (int)i)
                              : n->type == AVRO_UNION ? avro_schema_union_branch(s, (int)i)
                              : n->type == AVRO_MAP   ? avro_schema_map_values(s)
                                                      : avro_schema_array_items(s);
            err = build_node(k, depth + 1, &n->kids[i], why);
            if (err != BP_OK)
                goto out;
        }
    }
    err = BP_OK;
out:
    if (err != BP_OK) {
        if (err == BP_ENOMEM)
            *why = "out of memory";
        node_free(n);
        n = NULL;
    }
    *out = n;
    return err;
}

/** @return the index of the first union branch of @p type, or -1. */
static int union_branch(const struct node *u, avro_type_t type)
{
    for (size_t i = 0; i < u->n; i++)
        if (u->kids[i]->type == type)
            return (int)i;
    return -1;
}

static int field_index(const struct node *rec, const char *name, avro_type_t type)
{
    for (size_t i = 0; i < rec->n; i++)
        if (strcmp(rec->names[i], name) == 0)
            return rec->kids[i]->type == type ? (int)i : -1;
    return -1;
}

/** Recognise an XpEvent by its fields (names and types), whatever its other fields. */
static void xp_layout_find(const struct node *rec, struct xp_layout *xp)
{
    int u;

    memset(xp, 0, sizeof *xp);
    xp->event_id = field_index(rec, "eventId", AVRO_STRING);
    xp->player_id = field_index(rec, "playerId", AVRO_STRING);
    xp->amount = field_index(rec, "amount", AVRO_INT32);
    xp->reason = field_index(rec, "reason", AVRO_STRING);
    xp->occurred_at = field_index(rec, "occurredAt", AVRO_INT64);
    xp->season_branch = xp->season_null = -1;
    /* seasonId: absent, a string, or ["null","string"] in either order */
    xp->season_id = field_index(rec, "seasonId", AVRO_STRING);
    u = field_index(rec, "seasonId", AVRO_UNION);
    if (u >= 0) {
        xp->season_branch = union_branch(rec->kids[u], AVRO_STRING);
        xp->season_null = union_branch(rec->kids[u], AVRO_NULL);
        if (rec->kids[u]->n != 2 || xp->season_branch < 0 || xp->season_null < 0)
            return; /* a seasonId of another shape: not an XpEvent this code understands */
        xp->season_id = u;
    }
    xp->metadata = field_index(rec, "metadata", AVRO_MAP);
    if (xp->metadata >= 0 && rec->kids[xp->metadata]->kids[0]->type != AVRO_STRING)
        xp->metadata = -1;
    xp->ok = xp->event_id >= 0 && xp->player_id >= 0 && xp->amount >= 0 && xp->reason >= 0 &&
             xp->occurred_at >= 0;
}

/* ---------------------------------------------------------------- scan */

static const char *scan_long(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    uint64_t v = 0;

    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (*p == end)
            return R_TRUNC;
        b = *(*p)++;
        /* the 10th byte carries bit 63 only, and ends the varint */
        if (shift == 63 && (b & 0xfe))
            return R_VARINT;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1)); /* zigzag */
            return NULL;
        }
    }
    return R_VARINT;
}

static const char *scan_skip(const uint8_t **p, const uint8_t *end, int64_t n)
{
    if (n < 0)
        return R_NEGLEN;
    if (n > end - *p)
        return R_TRUNC;
    *p += n;
    return NULL;
}

static const char *scan_bytes(const uint8_t **p, const uint8_t *end)
{
    int64_t n;
    const char *r = scan_long(p, end, &n);
    return r ? r : scan_skip(p, end, n);
}

/**
 * Walk one value of type @p n from *p, bounded by @p end (see the comment at the top).
 * @return NULL with *p past the value, or a static reason.
 */
static const char *scan(const struct node *n, const uint8_t **p, const uint8_t *end)
{
    int64_t v, count;
    const char *r = NULL;

    switch (n->type) {
    case AVRO_NULL:
        return NULL;
    case AVRO_BOOLEAN:
        if (*p == end)
            return R_TRUNC;
        if (**p > 1)
            return R_BOOL;
        (*p)++;
        return NULL;
    case AVRO_INT32:
        r = scan_long(p, end, &v);
        if (!r && (v < INT32_MIN || v > INT32_MAX))
            r = R_INTRANGE;
        return r;
    case AVRO_INT64:
        return scan_long(p, end, &v);
    case AVRO_FLOAT:
        return scan_skip(p, end, 4);
    case AVRO_DOUBLE:
        return scan_skip(p, end, 8);
    case AVRO_FIXED:
        return scan_skip(p, end, n->fixed_size);
    case AVRO_STRING:
    case AVRO_BYTES:
        return scan_bytes(p, end);
    case AVRO_ENUM:
        r = scan_long(p, end, &v);
        if (!r && (v < 0 || (uint64_t)v >= n->n))
            r = R_ENUM;
        return r;
    case AVRO_UNION:
        r = scan_long(p, end, &v);
        if (!r && (v < 0 || (uint64_t)v >= n->n))
            r = R_UNION;
        return r ? r : scan(n->kids[v], p, end);
    case AVRO_RECORD:
        for (size_t i = 0; i < n->n && !r; i++)
            r = scan(n->kids[i], p, end);
        return r;
    case AVRO_MAP:
    case AVRO_ARRAY:
        for (;;) {
            r = scan_long(p, end, &count);
            if (r || count == 0)
                return r;
            if (count < 0) {
                if (count == INT64_MIN)
                    return R_BLOCK;
                count = -count;
                r = scan_long(p, end, &v); /* block size in bytes */
                if (!r && v < 0)
                    r = R_NEGLEN;
                if (!r && v > end - *p)
                    r = R_TRUNC;
                if (r)
                    return r;
            }
            /* Every item of a real datum takes >= 1 byte, except arrays of null or of empty
             * records: capping the count by the bytes left bounds those too. */
            if (count > end - *p)
                return R_TRUNC;
            for (int64_t i = 0; i < count; i++) {
                if (n->type == AVRO_MAP && (r = scan_bytes(p, end)) != NULL)
                    return r;
                if ((r = scan(n->kids[0], p, end)) != NULL)
                    return r;
            }
        }
    default:
        return R_TYPE;
    }
}

/* ---------------------------------------------------------------- loading */

static void entry_fini(struct entry *e)
{
    if (e->has_value)
        avro_value_decref(&e->value);
    if (e->iface)
        avro_value_iface_decref(e->iface);
    if (e->schema)
        avro_schema_decref(e->schema);
    json_decref(e->json);
    node_free(e->root);
    free(e->text);
    free(e->file);
    memset(e, 0, sizeof *e);
}

/** Read a whole file (at most MAX_SCHEMA_FILE bytes) into a NUL-terminated buffer. */
static bp_err_t read_file(const char *path, char **text, size_t *len, const char **why)
{
    bp_err_t err = BP_EFATAL;
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;

    *text = NULL;
    if (!f) {
        *why = strerror(errno);
        goto out;
    }
    buf = malloc(MAX_SCHEMA_FILE + 1);
    if (!buf) {
        *why = "out of memory";
        err = BP_ENOMEM;
        goto out;
    }
    n = fread(buf, 1, MAX_SCHEMA_FILE + 1, f);
    if (ferror(f)) {
        *why = "read error";
        goto out;
    }
    if (n > MAX_SCHEMA_FILE) {
        *why = "file larger than 1 MiB";
        goto out;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    buf = NULL;
    err = BP_OK;
out:
    free(buf);
    if (f)
        fclose(f);
    return err;
}

static bp_err_t load_entry(const char *dir, const char *file, int32_t id, struct entry *e,
                           char *why, size_t why_len)
{
    bp_err_t err = BP_EFATAL;
    char path[4096];
    const char *reason = NULL;
    json_error_t jerr;
    json_t *fields;

    memset(e, 0, sizeof *e);
    e->id = id;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
        snprintf(why, why_len, "%s/%s: path too long", dir, file);
        goto out;
    }
    e->file = strdup(file);
    if (!e->file) {
        err = BP_ENOMEM;
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    err = read_file(path, &e->text, &e->text_len, &reason);
    if (err != BP_OK) {
        snprintf(why, why_len, "%s: %s", path, reason);
        goto out;
    }
    err = BP_EFATAL;
    if (avro_schema_from_json_length(e->text, e->text_len, &e->schema) != 0) {
        e->schema = NULL;
        snprintf(why, why_len, "%s: bad Avro schema: %s", path, avro_strerror());
        goto out;
    }
    if (!is_avro_record(e->schema)) {
        snprintf(why, why_len, "%s: not a record schema", path);
        goto out;
    }
    e->json = json_loadb(e->text, e->text_len, 0, &jerr);
    if (!e->json) {
        snprintf(why, why_len, "%s: bad JSON: %s (line %d)", path, jerr.text, jerr.line);
        goto out;
    }
    err = build_node(e->schema, 0, &e->root, &reason);
    if (err != BP_OK) {
        snprintf(why, why_len, "%s: %s", path, reason);
        goto out;
    }
    err = BP_ENOMEM;
    e->root->defaults = calloc(e->root->n ? e->root->n : 1, sizeof *e->root->defaults);
    if (!e->root->defaults) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    /* defaults of the top-level record, which avro-c does not keep */
    fields = json_object_get(e->json, "fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        for (size_t k = 0; name && k < e->root->n; k++)
            if (strcmp(e->root->names[k], name) == 0)
                e->root->defaults[k] = json_object_get(f, "default");
    }
    e->iface = avro_generic_class_from_schema(e->schema);
    if (!e->iface || avro_generic_value_new(e->iface, &e->value) != 0) {
        snprintf(why, why_len, "%s: avro-c: %s", path, avro_strerror());
        err = BP_EFATAL;
        goto out;
    }
    e->has_value = true;
    xp_layout_find(e->root, &e->xp);
    err = BP_OK;
out:
    if (err != BP_OK)
        entry_fini(e);
    return err;
}

static struct entry *find_entry(const bp_codec_t *c, int32_t id)
{
    for (size_t i = 0; i < c->n_entries; i++)
        if (c->entries[i].id == id)
            return &c->entries[i];
    return NULL;
}

bp_err_t bp_codec_new(const char *schemas_dir, bp_codec_t **out, char *why, size_t why_len)
{
    bp_err_t err = BP_ENOMEM;
    bp_codec_t *c = NULL;
    json_t *subjects = NULL;
    json_error_t jerr;
    char path[4096];
    char scratch[8];
    const char *name;
    json_t *val;
    size_t n;

    if (!why || why_len == 0) {
        why = scratch;
        why_len = sizeof scratch;
    }
    *out = NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    c->reader = avro_reader_memory(dummy_buf, 0);
    c->writer = avro_writer_memory(dummy_buf, 0);
    if (!c->reader || !c->writer)
        goto out;
    err = BP_EFATAL;
    if ((size_t)snprintf(path, sizeof path, "%s/subjects.json", schemas_dir) >= sizeof path) {
        snprintf(why, why_len, "%s: path too long", schemas_dir);
        goto out;
    }
    subjects = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!subjects) {
        snprintf(why, why_len, "%s: %s (line %d)", path, jerr.text, jerr.line);
        goto out;
    }
    n = json_object_size(subjects);
    if (!json_is_object(subjects) || n == 0) {
        snprintf(why, why_len, "%s: expected a non-empty object of subjects", path);
        goto out;
    }
    err = BP_ENOMEM;
    c->entries = calloc(n, sizeof *c->entries);
    c->subjects = calloc(n, sizeof *c->subjects);
    if (!c->entries || !c->subjects)
        goto out;
    json_object_foreach(subjects, name, val)
    {
        json_t *jid = json_object_get(val, "id");
        const char *file = json_string_value(json_object_get(val, "schema"));
        json_int_t id = json_integer_value(jid);
        struct entry *e;

        err = BP_EFATAL;
        if (!json_is_integer(jid) || id < 0 || id > INT32_MAX || !file || !*file) {
            snprintf(why, why_len,
                     "%s: subject %s needs \"id\" (integer 0..2^31-1) and \"schema\" (file name)",
                     path, name);
            goto out;
        }
        e = find_entry(c, (int32_t)id);
        if (e && strcmp(e->file, file) != 0) {
            snprintf(why, why_len, "%s: schema id %d names both %s and %s", path, (int)id, e->file,
                     file);
            goto out;
        }
        if (!e) {
            err =
                load_entry(schemas_dir, file, (int32_t)id, &c->entries[c->n_entries], why, why_len);
            if (err != BP_OK)
                goto out;
            c->n_entries++;
        }
        err = BP_ENOMEM;
        c->subjects[c->n_subjects].name = strdup(name);
        if (!c->subjects[c->n_subjects].name)
            goto out;
        c->subjects[c->n_subjects++].id = (int32_t)id;
    }
    err = BP_OK;
    *out = c;
    c = NULL;
out:
    if (err == BP_ENOMEM)
        snprintf(why, why_len, "out of memory");
    json_decref(subjects);
    bp_codec_destroy(c);
    return err;
}

void bp_codec_destroy(bp_codec_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_entries; i++)
        entry_fini(&c->entries[i]);
    for (size_t i = 0; i < c->n_subjects; i++)
        free(c->subjects[i].name);
    free(c->entries);
    free(c->subjects);
    if (c->reader)
        avro_reader_free(c->reader);
    if (c->writer)
        avro_writer_free(c->writer);
    free(c);
}

int32_t bp_codec_subject_id(const bp_codec_t *c, const char *subject)
{
    if (!c || !subject)
        return -1;
    for (size_t i = 0; i < c->n_subjects; i++)
        if (strcmp(c->subjects[i].name, subject) == 0)
            return c->subjects[i].id;
    return -1;
}

/* ---------------------------------------------------------------- framing, datum */

static const char *unframe(const void *buf, size_t len, int32_t *id, const uint8_t **datum,
                           size_t *dlen)
{
    const uint8_t *b = buf;

    if (!b || len == 0 || b[0] != 0)
        return "no magic byte";
    if (len < FRAME_LEN)
        return "truncated schema id";
    *id = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 |
                    (uint32_t)b[4]);
    *datum = b + FRAME_LEN;
    *dlen = len - FRAME_LEN;
    return NULL;
}

/** Scan, then read the datum into e->value. */
static bp_err_t read_datum(bp_codec_t *c, struct entry *e, const uint8_t *datum, size_t dlen,
                           const char **why)
{
    const uint8_t *p = datum;
    const char *r = scan(e->root, &p, datum + dlen);
    int rc;

    if (!r && p != datum + dlen)
        r = "trailing bytes";
    if (r) {
        *why = r;
        return BP_EINVAL;
    }
    avro_reader_memory_set_source(c->reader, (const char *)datum, (int64_t)dlen);
    rc = avro_value_read(c->reader, &e->value);
    if (rc == ENOMEM) {
        *why = "out of memory";
        return BP_ENOMEM;
    }
    if (rc != 0) {
        *why = "undecodable Avro datum"; /* scan() accepted it: should not happen */
        return BP_EINVAL;
    }
    return BP_OK;
}

static bp_err_t avro_err(int rc)
{
    return rc == ENOMEM ? BP_ENOMEM : BP_EFATAL;
}

/** Frame e->value: magic byte, id, datum, in one malloc'd buffer. */
static bp_err_t frame(bp_codec_t *c, struct entry *e, void **buf, size_t *len)
{
    bp_err_t err = BP_ENOMEM;
    size_t size = 0;
    uint8_t *b = NULL;
    int rc;

    *buf = NULL;
    *len = 0;
    rc = avro_value_sizeof(&e->value, &size);
    if (rc != 0) {
        err = avro_err(rc);
        goto out;
    }
    b = malloc(FRAME_LEN + size);
    if (!b)
        goto out;
    b[0] = 0;
    b[1] = (uint8_t)((uint32_t)e->id >> 24);
    b[2] = (uint8_t)((uint32_t)e->id >> 16);
    b[3] = (uint8_t)((uint32_t)e->id >> 8);
    b[4] = (uint8_t)e->id;
    avro_writer_memory_set_dest(c->writer, (const char *)b + FRAME_LEN, (int64_t)size);
    rc = avro_value_write(c->writer, &e->value);
    if (rc != 0 || avro_writer_tell(c->writer) != (int64_t)size) {
        err = rc ? avro_err(rc) : BP_EFATAL;
        goto out;
    }
    *buf = b;
    *len = FRAME_LEN + size;
    b = NULL;
    err = BP_OK;
out:
    free(b);
    return err;
}

/* ---------------------------------------------------------------- XpEvent */

/** Copy Avro string @p f into dst, refusing more than @p max bytes and embedded NULs. */
static const char *copy_string(avro_value_t *f, char *dst, size_t max, const char *too_long,
                               const char *has_nul)
{
    const char *s;
    size_t size, n;

    if (avro_value_get_string(f, &s, &size) != 0)
        return "undecodable Avro datum";
    n = size ? size - 1 : 0; /* avro-c counts the NUL */
    if (n > max)
        return too_long;
    if (memchr(s, '\0', n))
        return has_nul;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return NULL;
}

static const char *xp_extract(struct entry *e, bp_xp_event_t *out)
{
    const struct xp_layout *xp = &e->xp;
    avro_value_t *rec = &e->value;
    avro_value_t f, b;
    const char *r;
    int d = -1;

    memset(out, 0, sizeof *out);
    if (avro_value_get_by_index(rec, (size_t)xp->event_id, &f, NULL) != 0)
        return "undecodable Avro datum";
    r = copy_string(&f, out->event_id, BP_ID_MAX, "eventId longer than " STR(BP_ID_MAX) " bytes",
                    "eventId contains a NUL byte");
    if (r)
        return r;
    if (avro_value_get_by_index(rec, (size_t)xp->player_id, &f, NULL) != 0)
        return "undecodable Avro datum";
    r = copy_string(&f, out->player_id, BP_ID_MAX, "playerId longer than " STR(BP_ID_MAX) " bytes",
                    "playerId contains a NUL byte");
    if (r)
        return r;
    if (avro_value_get_by_index(rec, (size_t)xp->reason, &f, NULL) != 0)
        return "undecodable Avro datum";
    r = copy_string(&f, out->reason, BP_REASON_MAX,
                    "reason longer than " STR(BP_REASON_MAX) " bytes",
                    "reason contains a NUL byte");
    if (r)
        return r;
    if (xp->season_id >= 0) {
        if (avro_value_get_by_index(rec, (size_t)xp->season_id, &f, NULL) != 0)
            return "undecodable Avro datum";
        if (xp->season_branch >= 0) {
            if (avro_value_get_discriminant(&f, &d) != 0 ||
                avro_value_get_current_branch(&f, &b) != 0)
                return "undecodable Avro datum";
            f = b;
        }
        if (xp->season_branch < 0 || d == xp->season_branch) {
            r = copy_string(&f, out->season_id, BP_ID_MAX,
                            "seasonId longer than " STR(BP_ID_MAX) " bytes",
                            "seasonId contains a NUL byte");
            if (r)
                return r;
        }
    }
    if (avro_value_get_by_index(rec, (size_t)xp->amount, &f, NULL) != 0 ||
        avro_value_get_int(&f, &out->amount) != 0)
        return "undecodable Avro datum";
    if (avro_value_get_by_index(rec, (size_t)xp->occurred_at, &f, NULL) != 0 ||
        avro_value_get_long(&f, &out->occurred_at_ms) != 0)
        return "undecodable Avro datum";
    return NULL;
}

bp_err_t bp_codec_decode_xp(bp_codec_t *c, int32_t schema_id, const void *buf, size_t len,
                            bp_xp_event_t *out, const char **why)
{
    bp_err_t err = BP_EINVAL;
    const char *reason;
    const uint8_t *datum = NULL;
    size_t dlen = 0;
    int32_t id = -1;
    struct entry *e = NULL;

    reason = unframe(buf, len, &id, &datum, &dlen);
    if (reason)
        goto out;
    if (id != schema_id || !(e = find_entry(c, id))) {
        reason = R_UNKNOWN_ID;
        goto out;
    }
    if (!e->xp.ok) {
        reason = "schema id is not an XpEvent schema";
        goto out;
    }
    err = read_datum(c, e, datum, dlen, &reason);
    if (err != BP_OK)
        goto out;
    reason = xp_extract(e, out);
    err = reason ? BP_EINVAL : BP_OK;
out:
    if (err != BP_OK && why)
        *why = reason;
    return err;
}

/* ---------------------------------------------------------------- JSON -> Avro */

static bp_err_t set_json(bp_codec_t *c, const struct node *n, avro_value_t *v, json_t *j,
                         const char *field);

static bp_err_t why_inval(bp_codec_t *c, const char *field, const char *what)
{
    snprintf(c->why, sizeof c->why, "field %s: %s", field, what);
    return BP_EINVAL;
}

static bp_err_t why_avro(bp_codec_t *c, int rc)
{
    snprintf(c->why, sizeof c->why, "avro-c: %s", avro_strerror());
    return avro_err(rc);
}

/** Does a value of type @p n take JSON @p j (used to pick a union branch)? */
static bool json_fits(const struct node *n, const json_t *j)
{
    switch (n->type) {
    case AVRO_NULL:
        return json_is_null(j);
    case AVRO_BOOLEAN:
        return json_is_boolean(j);
    case AVRO_INT32:
    case AVRO_INT64:
        return json_is_integer(j);
    case AVRO_FLOAT:
    case AVRO_DOUBLE:
        return json_is_number(j);
    case AVRO_STRING:
    case AVRO_ENUM:
        return json_is_string(j);
    case AVRO_MAP:
    case AVRO_RECORD:
        return json_is_object(j);
    case AVRO_ARRAY:
        return json_is_array(j);
    default:
        return false;
    }
}

/** Fill record value @p v from JSON object @p obj; missing members take the defaults. */
static bp_err_t set_record(bp_codec_t *c, const struct node *n, avro_value_t *v, json_t *obj)
{
    for (size_t i = 0; i < n->n; i++) {
        avro_value_t f;
        json_t *m = json_object_get(obj, n->names[i]);
        int rc = avro_value_get_by_index(v, i, &f, NULL);
        bp_err_t err;

        if (rc != 0)
            return why_avro(c, rc);
        if (!m && n->defaults)
            m = (json_t *)n->defaults[i];
        if (!m && n->kids[i]->type == AVRO_UNION && union_branch(n->kids[i], AVRO_NULL) >= 0)
            m = json_null();
        if (!m) {
            snprintf(c->why, sizeof c->why, "missing field %s", n->names[i]);
            return BP_EINVAL;
        }
        err = set_json(c, n->kids[i], &f, m, n->names[i]);
        if (err != BP_OK)
            return err;
    }
    return BP_OK;
}

static bp_err_t set_json(bp_codec_t *c, const struct node *n, avro_value_t *v, json_t *j,
                         const char *field)
{
    int rc = 0;
    json_int_t i;
    bp_err_t err;

    switch (n->type) {
    case AVRO_NULL:
        if (!json_is_null(j))
            return why_inval(c, field, "expected null");
        rc = avro_value_set_null(v);
        break;
    case AVRO_BOOLEAN:
        if (!json_is_boolean(j))
            return why_inval(c, field, "expected a boolean");
        rc = avro_value_set_boolean(v, json_is_true(j));
        break;
    case AVRO_INT32:
        i = json_integer_value(j);
        if (!json_is_integer(j))
            return why_inval(c, field, "expected an integer");
        if (i < INT32_MIN || i > INT32_MAX)
            return why_inval(c, field, "integer out of int range");
        rc = avro_value_set_int(v, (int32_t)i);
        break;
    case AVRO_INT64:
        if (!json_is_integer(j))
            return why_inval(c, field, "expected an integer");
        rc = avro_value_set_long(v, (int64_t)json_integer_value(j));
        break;
    case AVRO_FLOAT:
        if (!json_is_number(j))
            return why_inval(c, field, "expected a number");
        rc = avro_value_set_float(v, (float)json_number_value(j));
        break;
    case AVRO_DOUBLE:
        if (!json_is_number(j))
            return why_inval(c, field, "expected a number");
        rc = avro_value_set_double(v, json_number_value(j));
        break;
    case AVRO_STRING:
        if (!json_is_string(j))
            return why_inval(c, field, "expected a string");
        /* size counts the NUL, which jansson strings always have */
        rc = avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
        break;
    case AVRO_ENUM: {
        const char *s = json_string_value(j);
        size_t k;
        if (!s)
            return why_inval(c, field, "expected an enum symbol (string)");
        for (k = 0; k < n->n && strcmp(n->names[k], s) != 0; k++)
            ;
        if (k == n->n) {
            snprintf(c->why, sizeof c->why, "field %s: unknown enum symbol \"%.40s\"", field, s);
            return BP_EINVAL;
        }
        rc = avro_value_set_enum(v, (int)k);
        break;
    }
    case AVRO_UNION: {
        avro_value_t b;
        size_t k;
        for (k = 0; k < n->n && !json_fits(n->kids[k], j); k++)
            ;
        if (k == n->n)
            return why_inval(c, field, "JSON value fits no branch of the union");
        rc = avro_value_set_branch(v, (int)k, &b);
        if (rc != 0)
            break;
        return set_json(c, n->kids[k], &b, j, field);
    }
    case AVRO_MAP: {
        const char *key;
        json_t *m;
        if (!json_is_object(j))
            return why_inval(c, field, "expected an object");
        json_object_foreach(j, key, m)
        {
            avro_value_t child;
            rc = avro_value_add(v, key, &child, NULL, NULL);
            if (rc != 0)
                break;
            err = set_json(c, n->kids[0], &child, m, field);
            if (err != BP_OK)
                return err;
        }
        break;
    }
    case AVRO_ARRAY: {
        size_t k;
        json_t *m;
        if (!json_is_array(j))
            return why_inval(c, field, "expected an array");
        json_array_foreach(j, k, m)
        {
            avro_value_t child;
            rc = avro_value_append(v, &child, NULL);
            if (rc != 0)
                break;
            err = set_json(c, n->kids[0], &child, m, field);
            if (err != BP_OK)
                return err;
        }
        break;
    }
    case AVRO_RECORD: /* nested records: their defaults are not known, members required */
        if (!json_is_object(j))
            return why_inval(c, field, "expected an object");
        return set_record(c, n, v, j);
    default:
        return why_inval(c, field, R_TYPE);
    }
    return rc ? why_avro(c, rc) : BP_OK;
}

bp_err_t bp_codec_encode_json(bp_codec_t *c, int32_t schema_id, const char *json, void **buf,
                              size_t *len, const char **why)
{
    bp_err_t err = BP_EINVAL;
    const char *reason = R_UNKNOWN_ID;
    struct entry *e = find_entry(c, schema_id);
    json_t *obj = NULL;
    json_error_t jerr;
    int rc;

    *buf = NULL;
    *len = 0;
    if (!e)
        goto out;
    reason = c->why;
    obj = json_loads(json ? json : "", JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) {
        snprintf(c->why, sizeof c->why, "bad JSON: %s", jerr.text);
        goto out;
    }
    if (!json_is_object(obj)) {
        snprintf(c->why, sizeof c->why, "expected a JSON object");
        goto out;
    }
    rc = avro_value_reset(&e->value);
    if (rc != 0) {
        err = why_avro(c, rc);
        goto out;
    }
    err = set_record(c, e->root, &e->value, obj);
    if (err != BP_OK)
        goto out;
    err = frame(c, e, buf, len);
    if (err != BP_OK)
        snprintf(c->why, sizeof c->why, "%s",
                 err == BP_ENOMEM ? "out of memory" : "avro-c write failed");
out:
    json_decref(obj);
    if (err != BP_OK && why)
        *why = reason;
    return err;
}

bp_err_t bp_codec_encode_xp(bp_codec_t *c, int32_t schema_id, const bp_xp_event_t *ev,
                            const char *const *meta_keys, const char *const *meta_values,
                            size_t n_meta, void **buf, size_t *len)
{
    bp_err_t err = BP_EINVAL;
    struct entry *e = find_entry(c, schema_id);
    const struct xp_layout *xp;
    avro_value_t f, b;
    int rc = 0;

    *buf = NULL;
    *len = 0;
    if (!e || !e->xp.ok || !ev || (n_meta && (e->xp.metadata < 0 || !meta_keys || !meta_values)))
        goto out;
    xp = &e->xp;
    rc = avro_value_reset(&e->value);
    for (size_t i = 0; i < e->root->n && rc == 0; i++) {
        int k = (int)i;
        rc = avro_value_get_by_index(&e->value, i, &f, NULL);
        if (rc != 0)
            break;
        if (k == xp->event_id) {
            rc = avro_value_set_string(&f, ev->event_id);
        } else if (k == xp->player_id) {
            rc = avro_value_set_string(&f, ev->player_id);
        } else if (k == xp->reason) {
            rc = avro_value_set_string(&f, ev->reason);
        } else if (k == xp->amount) {
            rc = avro_value_set_int(&f, ev->amount);
        } else if (k == xp->occurred_at) {
            rc = avro_value_set_long(&f, ev->occurred_at_ms);
        } else if (k == xp->season_id && xp->season_branch < 0) {
            rc = avro_value_set_string(&f, ev->season_id);
        } else if (k == xp->season_id) {
            bool none = ev->season_id[0] == '\0';
            rc = avro_value_set_branch(&f, none ? xp->season_null : xp->season_branch, &b);
            if (rc == 0)
                rc = none ? avro_value_set_null(&b) : avro_value_set_string(&b, ev->season_id);
        } else if (k == xp->metadata) {
            for (size_t m = 0; m < n_meta && rc == 0; m++) {
                avro_value_t child;
                if (!meta_keys[m] || !meta_values[m]) {
                    err = BP_EINVAL;
                    goto out;
                }
                rc = avro_value_add(&f, meta_keys[m], &child, NULL, NULL);
                if (rc == 0)
                    rc = avro_value_set_string(&child, meta_values[m]);
            }
        } else if (e->root->defaults[i]) { /* a field this code does not know */
            err = set_json(c, e->root->kids[i], &f, (json_t *)e->root->defaults[i],
                           e->root->names[i]);
            if (err != BP_OK)
                goto out;
        } else {
            err = BP_EINVAL;
            goto out;
        }
    }
    if (rc != 0) {
        err = avro_err(rc);
        goto out;
    }
    err = frame(c, e, buf, len);
out:
    return err;
}

/* ---------------------------------------------------------------- Avro -> JSON */

static bp_err_t to_json(bp_codec_t *c, const struct node *n, avro_value_t *v, json_t **out)
{
    bp_err_t err = BP_ENOMEM;
    json_t *j = NULL;
    avro_value_t child;
    const char *s;
    size_t size;
    int rc = 0;

    *out = NULL;
    switch (n->type) {
    case AVRO_NULL:
        j = json_null();
        break;
    case AVRO_BOOLEAN: {
        int b = 0;
        rc = avro_value_get_boolean(v, &b);
        j = json_boolean(b);
        break;
    }
    case AVRO_INT32: {
        int32_t i = 0;
        rc = avro_value_get_int(v, &i);
        j = json_integer(i);
        break;
    }
    case AVRO_INT64: {
        int64_t l = 0;
        rc = avro_value_get_long(v, &l);
        j = json_integer((json_int_t)l);
        break;
    }
    case AVRO_FLOAT: {
        float f = 0;
        rc = avro_value_get_float(v, &f);
        j = json_real(f);
        break;
    }
    case AVRO_DOUBLE: {
        double d = 0;
        rc = avro_value_get_double(v, &d);
        j = json_real(d);
        break;
    }
    case AVRO_STRING:
        rc = avro_value_get_string(v, &s, &size);
        if (rc != 0)
            break;
        j = json_stringn(s, size ? size - 1 : 0);
        if (!j) {
            snprintf(c->why, sizeof c->why, "string is not valid UTF-8");
            err = BP_EINVAL;
            goto out;
        }
        break;
    case AVRO_ENUM: {
        int k = 0;
        rc = avro_value_get_enum(v, &k);
        if (rc == 0 && (k < 0 || (size_t)k >= n->n)) {
            snprintf(c->why, sizeof c->why, "%s", R_ENUM);
            err = BP_EINVAL;
            goto out;
        }
        if (rc == 0)
            j = json_string(n->names[k]);
        break;
    }
    case AVRO_UNION: {
        int d = -1;
        rc = avro_value_get_discriminant(v, &d);
        if (rc == 0)
            rc = avro_value_get_current_branch(v, &child);
        if (rc != 0)
            break;
        return to_json(c, n->kids[d], &child, out);
    }
    case AVRO_MAP:
    case AVRO_ARRAY:
    case AVRO_RECORD: {
        size_t count = 0;
        j = n->type == AVRO_ARRAY ? json_array() : json_object();
        if (!j)
            goto out;
        rc = avro_value_get_size(v, &count);
        for (size_t i = 0; i < count && rc == 0; i++) {
            const char *key = NULL;
            json_t *m;
            const struct node *kn = n->type == AVRO_RECORD ? n->kids[i] : n->kids[0];
            rc = avro_value_get_by_index(v, i, &child, &key);
            if (rc != 0)
                break;
            err = to_json(c, kn, &child, &m);
            if (err != BP_OK)
                goto out;
            if (n->type == AVRO_ARRAY ? json_array_append_new(j, m) != 0
                                      : json_object_set_new(j, key, m) != 0) {
                /* jansson refuses keys that are not UTF-8 */
                snprintf(c->why, sizeof c->why, "map key is not valid UTF-8");
                err = BP_EINVAL;
                goto out;
            }
        }
        break;
    }
    default:
        snprintf(c->why, sizeof c->why, "%s", R_TYPE);
        err = BP_EINVAL;
        goto out;
    }
    if (rc != 0) {
        err = why_avro(c, rc);
        goto out;
    }
    if (!j) {
        err = BP_ENOMEM;
        goto out;
    }
    *out = j;
    j = NULL;
    err = BP_OK;
out:
    if (err == BP_ENOMEM)
        snprintf(c->why, sizeof c->why, "out of memory");
    json_decref(j);
    return err;
}

bp_err_t bp_codec_decode_json(bp_codec_t *c, const void *buf, size_t len, char **json,
                              int32_t *schema_id, const char **why)
{
    bp_err_t err = BP_EINVAL;
    const char *reason;
    const uint8_t *datum = NULL;
    size_t dlen = 0, n;
    int32_t id = -1;
    struct entry *e;
    json_t *obj = NULL;
    char *text = NULL;

    *json = NULL;
    reason = unframe(buf, len, &id, &datum, &dlen);
    if (reason)
        goto out;
    if (schema_id)
        *schema_id = id;
    e = find_entry(c, id);
    if (!e) {
        reason = R_UNKNOWN_ID;
        goto out;
    }
    err = read_datum(c, e, datum, dlen, &reason);
    if (err != BP_OK)
        goto out;
    reason = c->why;
    err = to_json(c, e->root, &e->value, &obj);
    if (err != BP_OK)
        goto out;
    err = BP_ENOMEM;
    reason = "out of memory";
    /* copy into a malloc'd buffer: jansson may have been given other allocators */
    n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    text = n ? malloc(n + 1) : NULL;
    if (!text || json_dumpb(obj, text, n, JSON_COMPACT) != n)
        goto out;
    text[n] = '\0';
    *json = text;
    text = NULL;
    err = BP_OK;
out:
    free(text);
    json_decref(obj);
    if (err != BP_OK && why)
        *why = reason;
    return err;
}
