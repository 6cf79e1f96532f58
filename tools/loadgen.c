/** @file loadgen: produces Avro XpEvents to Kafka at a given rate or flat out, for benchmarks. */

/*
 * Every message is a Confluent-framed XpEvent (bp_codec_encode_xp, the service's own codec)
 * keyed by its playerId, as the service expects. What is produced is deterministic given
 * --prefix and --seed, and needs no per-event storage:
 *
 *   - originals are numbered k = 0, 1, 2, ...; event k has eventId "<prefix>-e<k>" (with
 *     --random-ids "<prefix>-e<mix64(k)>": a bijection of k, so still unique, but in no
 *     order, as UUIDs would be: the ledger's primary key then takes a random page per event), a
 *     player "<prefix>-p<i>" with i drawn from a hash of (seed, k) (uniform over --players,
 *     or Zipf with --zipf S) and an amount of 1 + hash % --amount-max;
 *   - each message is, with probability --dup-pct, an exact repeat of a random earlier
 *     original (same eventId, player, amount, reason, occurredAt: the same bytes), else the
 *     next original. The message sequence comes from one PRNG stream seeded by --seed.
 *
 * occurredAt is the wall-clock time (ms) at which the original was produced, so a consumer
 * can measure freshness as now - occurredAt. A duplicate must carry its original's
 * occurredAt, which only depends on when the original went out: since originals go out in
 * order of k and the clock only moves forward, occurredAt(k) is a step function of k, kept
 * as a log of (first k, ms) with one entry per millisecond in which originals were produced
 * (at most the run's length in ms, 16 bytes each; ~58 MB for an hour flat out) and looked up
 * by binary search for duplicates only. (If the wall clock steps back, entries may go down;
 * lookups stay exact, since they only depend on k.) --occurred-at MS fixes it instead.
 *
 * Cost: the main thread is the limit (generation + avro-c encoding ~0.4 us per message,
 * librdkafka's produce() about as much again). The codec returns a malloc'd buffer per
 * message; it is copied into librdkafka's message (RD_KAFKA_MSG_F_COPY: message and payload
 * in one block) and freed at once by this thread, which measured faster than handing it over
 * with RD_KAFKA_MSG_F_FREE: a buffer freed by a broker thread contends for the malloc arena
 * of this one. The Kafka timestamp is passed explicitly (saves a gettimeofday() per message).
 * --dry-run generates and encodes without Kafka, to measure this tool's own ceiling.
 *
 * The oracle printed at the end (unique events, duplicates, sum of amounts, distinct
 * players) is what a service applying every event exactly once must end up with (for the
 * raw sum: in a season without boosts or daily cap).
 */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "core/event.h"
#include "producers/codec.h"

enum {
    MAX_PROPS = 32,
    /* messages produced between two looks at the clock, the signal flag and rd_kafka_poll */
    CHUNK = 256,
    /* longest --prefix: "<prefix>-e<20 digits>" must fit BP_ID_MAX */
    PREFIX_MAX = BP_ID_MAX - 2 - 20,
    FLUSH_TIMEOUT_MS = 120000,
};

#define DEFAULT_EVENTS 100000

/* ---------------------------------------------------------------- options */

struct options {
    const char *bootstrap;
    const char *topic;
    const char *subject;
    const char *prefix;
    const char *reason;
    const char *schemas;
    const char *compression;
    const char *acks;
    uint64_t events;
    uint64_t seconds;
    uint64_t rate;
    uint64_t players;
    uint64_t dup_pct;
    uint64_t seed;
    uint64_t amount_max;
    uint64_t linger_ms;
    uint64_t occurred_at;
    double zipf;
    bool quiet;
    bool json;
    bool stamp;
    bool idempotent;
    bool dry_run;
    bool random_ids;
    bool help;
    const char *props[MAX_PROPS]; /* -X name=value, in order */
    int n_props;
};

typedef enum { O_STR, O_U64, O_DBL, O_FLAG, O_PROP } kind_t;

typedef struct {
    const char *name;
    kind_t kind;
    size_t offset;
    double lo, hi; /* O_U64, O_DBL bounds */
    const char *arg;
    const char *help;
} opt_t;

#define STR(m, arg, help) O_STR, offsetof(struct options, m), 0, 0, arg, help
#define U64(m, lo, hi, help) O_U64, offsetof(struct options, m), lo, hi, "N", help
#define DBL(m, lo, hi, help) O_DBL, offsetof(struct options, m), lo, hi, "X", help
#define FLAG(m, help) O_FLAG, offsetof(struct options, m), 0, 0, NULL, help

static const opt_t opts[] = {
    {"--bootstrap", STR(bootstrap, "HOST:PORT,...",
                        "Kafka bootstrap servers "
                        "(default $BP_KAFKA_BOOTSTRAP)")},
    {"--topic", STR(topic, "NAME", "topic (default battlepass.xp-events)")},
    {"--subject", STR(subject, "NAME", "schema subject in subjects.json (default <topic>-value)")},
    {"--events", U64(events, 1, 1e15,
                     "messages to produce, duplicates included "
                     "(default 100000 unless --seconds)")},
    {"--seconds", U64(seconds, 1, 1e7, "produce for this long (with --events: whichever first)")},
    {"--rate", U64(rate, 0, 1e9, "messages per second; 0 = as fast as possible (default 0)")},
    {"--players", U64(players, 1, 1e9, "distinct players (default 1000000)")},
    {"--zipf", DBL(zipf, 0, 10,
                   "players drawn Zipf-distributed with this exponent "
                   "(default 0: uniform)")},
    {"--dup-pct", U64(dup_pct, 0, 99,
                      "percent of messages that repeat an earlier event "
                      "exactly (default 5)")},
    {"--prefix", STR(prefix, "STR", "prefix of event and player ids (default lg<pid>-<time>)")},
    {"--random-ids", FLAG(random_ids, "eventIds in random order (like UUIDs), not ascending")},
    {"--seed", U64(seed, 0, 1.8e19, "seed of players, amounts and duplicates (default 1)")},
    {"--amount-max", U64(amount_max, 1, BP_XP_AMOUNT_MAX, "amounts are 1..N (default 100)")},
    {"--reason", STR(reason, "STR", "reason of every event (default match_complete)")},
    {"--occurred-at", U64(occurred_at, 1, 1e15,
                          "fixed occurredAt (ms since the epoch) "
                          "instead of the produce time")},
    {"--stamp", FLAG(stamp, "occurredAt = produce time (the default, for scripts to say so)")},
    {"--schemas", STR(schemas, "DIR",
                      "folder of subjects.json (default $BP_SCHEMAS_DIR/avro, "
                      "else <source>/schemas/avro)")},
    {"--compression", STR(compression, "CODEC", "none, lz4, snappy, zstd, gzip (default none)")},
    {"--linger-ms", U64(linger_ms, 0, 900000, "producer linger.ms (default 10)")},
    {"--acks", STR(acks, "N", "producer acks: 0, 1 or all (default all)")},
    {"--idempotent", FLAG(idempotent, "idempotent producer (enable.idempotence=true)")},
    {"-X", O_PROP, 0, 0, 0, "NAME=VALUE", "any librdkafka producer property (repeatable)"},
    {"--dry-run", FLAG(dry_run, "generate and encode only, no Kafka (this tool's ceiling)")},
    {"--quiet", FLAG(quiet, "no progress line")},
    {"--json", FLAG(json, "print the final statistics as one JSON line on stdout")},
    {"--help", FLAG(help, "this text")},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "\n"
            "Produces Avro XpEvents (Confluent framing, key = playerId) to Kafka at a given\n"
            "rate or as fast as possible, with a share of exact duplicates. Shows progress\n"
            "on stderr once a second; at the end prints totals and the oracle (unique events,\n"
            "duplicates, sum of amounts, distinct players). Exit status 0 when every message\n"
            "was delivered, 1 when some were not, 2 on a usage error.\n"
            "\n"
            "options:\n",
            prog);
    for (size_t i = 0; i < N_OPTS; i++) {
        char head[64];
        snprintf(head, sizeof(head), "%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(out, "  %-26s %s\n", head, opts[i].help);
    }
}

static int parse_value(const opt_t *o, const char *val, struct options *opt)
{
    void *at = (char *)opt + o->offset;
    char *end = NULL;

    errno = 0;
    if (o->kind == O_STR) {
        if (val[0] == '\0') {
            fprintf(stderr, "loadgen: %s must not be empty\n", o->name);
            return -1;
        }
        *(const char **)at = val;
    } else if (o->kind == O_U64) {
        unsigned long long v = strtoull(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0' || val[0] == '-' || (double)v < o->lo ||
            (double)v > o->hi) {
            fprintf(stderr, "loadgen: %s must be an integer in %.0f..%.0f, got '%s'\n", o->name,
                    o->lo, o->hi, val);
            return -1;
        }
        *(uint64_t *)at = v;
    } else if (o->kind == O_DBL) {
        double v = strtod(val, &end);
        if (errno != 0 || end == val || *end != '\0' || !(v >= o->lo && v <= o->hi)) {
            fprintf(stderr, "loadgen: %s must be a number in %g..%g, got '%s'\n", o->name, o->lo,
                    o->hi, val);
            return -1;
        }
        *(double *)at = v;
    } else { /* O_PROP */
        if (strchr(val, '=') == NULL || val[0] == '=') {
            fprintf(stderr, "loadgen: -X needs NAME=VALUE, got '%s'\n", val);
            return -1;
        }
        if (opt->n_props >= MAX_PROPS) {
            fprintf(stderr, "loadgen: at most %d -X properties\n", MAX_PROPS);
            return -1;
        }
        opt->props[opt->n_props++] = val;
    }
    return 0;
}

static bool prefix_valid(const char *p)
{
    size_t n = strlen(p);
    return n >= 1 && n <= PREFIX_MAX && bp_id_valid(p, n);
}

/* Returns 0 and fills opt, 1 when --help was printed, -1 on a usage error (printed). */
static int parse_args(int argc, char **argv, struct options *opt)
{
    static char prefix[32];
    bool seen_events = false;

    *opt = (struct options){
        .bootstrap = getenv("BP_KAFKA_BOOTSTRAP"),
        .topic = "battlepass.xp-events",
        .reason = "match_complete",
        .compression = "none",
        .acks = "all",
        .players = 1000000,
        .dup_pct = 5,
        .seed = 1,
        .amount_max = 100,
        .linger_ms = 10,
    };
    for (int i = 1; i < argc; i++) {
        const opt_t *o = NULL;
        for (size_t j = 0; j < N_OPTS && !o; j++)
            if (strcmp(argv[i], opts[j].name) == 0)
                o = &opts[j];
        if (!o && strcmp(argv[i], "-h") == 0)
            o = &opts[N_OPTS - 1];
        if (!o) {
            fprintf(stderr, "loadgen: unknown argument '%s' (see --help)\n", argv[i]);
            return -1;
        }
        if (o->kind == O_FLAG) {
            *(bool *)((char *)opt + o->offset) = true;
            if (opt->help) {
                usage(stdout, argv[0]);
                return 1;
            }
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "loadgen: %s needs a value (see --help)\n", o->name);
            return -1;
        }
        if (parse_value(o, argv[++i], opt) != 0)
            return -1;
        if (strcmp(o->name, "--events") == 0)
            seen_events = true;
    }
    if (!seen_events && opt->seconds == 0)
        opt->events = DEFAULT_EVENTS;
    if (opt->stamp && opt->occurred_at) {
        fprintf(stderr, "loadgen: --stamp and --occurred-at exclude each other\n");
        return -1;
    }
    if (!opt->dry_run && (!opt->bootstrap || !opt->bootstrap[0])) {
        fprintf(stderr, "loadgen: --bootstrap not given and BP_KAFKA_BOOTSTRAP not set\n");
        return -1;
    }
    if (!opt->prefix) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(prefix, sizeof(prefix), "lg%ld-%llx", (long)getpid(),
                 (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000);
        opt->prefix = prefix;
    }
    if (!prefix_valid(opt->prefix)) {
        fprintf(stderr, "loadgen: --prefix must be 1..%d bytes of [A-Za-z0-9._:@-], got '%s'\n",
                PREFIX_MAX, opt->prefix);
        return -1;
    }
    size_t rn = strlen(opt->reason);
    for (size_t i = 0; i < rn; i++)
        if (opt->reason[i] < 0x20 || opt->reason[i] > 0x7e)
            rn = SIZE_MAX;
    if (rn == SIZE_MAX || rn > BP_REASON_MAX) {
        fprintf(stderr, "loadgen: --reason must be 1..%d bytes of printable ASCII\n",
                BP_REASON_MAX);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- generation */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* splitmix64: one PRNG stream. */
static uint64_t next64(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return mix64(*s);
}

static double unit01(uint64_t *s)
{
    return (double)(next64(s) >> 11) * 0x1.0p-53;
}

/* Zipf over 1..n with exponent s by rejection-inversion (Hörmann and Derflinger 1996, as in
 * Apache Commons RNG): O(1) per sample and no table, so a million players cost nothing. */
typedef struct {
    double s, n, h_x1, h_n, sval;
} zipf_t;

static double helper1(double x) /* log1p(x) / x */
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

static double helper2(double x) /* expm1(x) / x */
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x));
}

static double zh(const zipf_t *z, double x)
{
    return exp(-z->s * log(x));
}

static double zh_int(const zipf_t *z, double x)
{
    double lx = log(x);
    return helper2((1 - z->s) * lx) * lx;
}

static double zh_inv(const zipf_t *z, double x)
{
    double t = x * (1 - z->s);
    if (t < -1)
        t = -1;
    return exp(helper1(t) * x);
}

static void zipf_init(zipf_t *z, double s, uint64_t n)
{
    z->s = s;
    z->n = (double)n;
    z->h_x1 = zh_int(z, 1.5) - 1;
    z->h_n = zh_int(z, z->n + 0.5);
    z->sval = 2 - zh_inv(z, zh_int(z, 2.5) - zh(z, 2));
}

static uint64_t zipf_sample(const zipf_t *z, uint64_t *rng)
{
    for (;;) {
        double u = z->h_n + unit01(rng) * (z->h_x1 - z->h_n);
        double x = zh_inv(z, u);
        double k = floor(x + 0.5);
        if (k < 1)
            k = 1;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->sval || u >= zh_int(z, k + 0.5) - zh(z, k))
            return (uint64_t)k - 1;
    }
}

/* Writes the decimal digits of v at dst, NUL-terminated. */
static void put_u64(char *dst, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *dst++ = tmp[--n];
    *dst = '\0';
}

/* occurredAt of the originals: (first k, ms) whenever the ms changes. */
typedef struct {
    uint64_t *k;
    int64_t *ms;
    size_t n, cap;
} stamp_log_t;

static bool stamp_log_add(stamp_log_t *l, uint64_t k, int64_t ms)
{
    if (l->n && l->ms[l->n - 1] == ms)
        return true;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint64_t *nk = realloc(l->k, cap * sizeof(*nk));
        if (!nk)
            return false;
        l->k = nk;
        int64_t *nm = realloc(l->ms, cap * sizeof(*nm));
        if (!nm)
            return false;
        l->ms = nm;
        l->cap = cap;
    }
    l->k[l->n] = k;
    l->ms[l->n] = ms;
    l->n++;
    return true;
}

/* occurredAt of original k, which must have been logged. */
static int64_t stamp_log_find(const stamp_log_t *l, uint64_t k)
{
    size_t lo = 0, hi = l->n; /* last entry with k[i] <= k lies in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->k[mid] <= k)
            lo = mid;
        else
            hi = mid;
    }
    return l->ms[lo];
}

typedef struct {
    const struct options *opt;
    zipf_t zipf;
    bp_xp_event_t ev; /* ids pre-filled with the prefix */
    size_t eid_at, pid_at;
    stamp_log_t stamps;
    uint64_t msg_rng;
    uint64_t unique, dups, amount_sum, players_touched;
    uint8_t *touched; /* bitmap of players seen */
    int64_t first_ms, last_ms;
} gen_t;

static bool gen_init(gen_t *g, const struct options *opt)
{
    memset(g, 0, sizeof(*g));
    g->opt = opt;
    if (opt->zipf > 0)
        zipf_init(&g->zipf, opt->zipf, opt->players);
    g->eid_at = (size_t)snprintf(g->ev.event_id, sizeof(g->ev.event_id), "%s-e", opt->prefix);
    g->pid_at = (size_t)snprintf(g->ev.player_id, sizeof(g->ev.player_id), "%s-p", opt->prefix);
    snprintf(g->ev.reason, sizeof(g->ev.reason), "%s", opt->reason);
    g->msg_rng = mix64(opt->seed ^ 0x5bd1e9955bd1e995ULL);
    g->touched = calloc((size_t)(opt->players + 7) / 8, 1);
    return g->touched != NULL;
}

static void gen_fini(gen_t *g)
{
    free(g->touched);
    free(g->stamps.k);
    free(g->stamps.ms);
}

/* Fill g->ev with original k (its occurredAt is set by the caller). @return the player. */
static uint64_t gen_fill(gen_t *g, uint64_t k)
{
    const struct options *o = g->opt;
    uint64_t h = mix64(o->seed * 0x9e3779b97f4a7c15ULL + k + 1);
    uint64_t player;

    if (o->zipf > 0) {
        uint64_t rng = h;
        player = zipf_sample(&g->zipf, &rng);
    } else {
        player = h % o->players;
    }
    put_u64(g->ev.event_id + g->eid_at, o->random_ids ? mix64(k) : k);
    put_u64(g->ev.player_id + g->pid_at, player);
    g->ev.amount = (int32_t)(1 + mix64(h) % o->amount_max);
    return player;
}

/* Next message into g->ev. @return false when out of memory (stamp log). */
static bool gen_next(gen_t *g, int64_t now_ms)
{
    const struct options *o = g->opt;
    uint64_t r = next64(&g->msg_rng);

    if (g->unique > 0 && r % 100 < o->dup_pct) {
        uint64_t k = next64(&g->msg_rng) % g->unique;
        gen_fill(g, k);
        g->ev.occurred_at_ms =
            o->occurred_at ? (int64_t)o->occurred_at : stamp_log_find(&g->stamps, k);
        g->dups++;
        return true;
    }
    uint64_t k = g->unique;
    uint64_t player = gen_fill(g, k);
    int64_t ms = o->occurred_at ? (int64_t)o->occurred_at : now_ms;
    if (!o->occurred_at && !stamp_log_add(&g->stamps, k, ms))
        return false;
    g->ev.occurred_at_ms = ms;
    if (!(g->touched[player / 8] & (1u << (player % 8)))) {
        g->touched[player / 8] |= (uint8_t)(1u << (player % 8));
        g->players_touched++;
    }
    if (k == 0)
        g->first_ms = ms;
    g->last_ms = ms;
    g->amount_sum += (uint64_t)g->ev.amount;
    g->unique++;
    return true;
}

/* ---------------------------------------------------------------- Kafka */

static volatile sig_atomic_t stop_signal; /* signals received */

static void on_signal(int sig)
{
    (void)sig;
    if (stop_signal < 100)
        stop_signal++;
}

typedef struct {
    uint64_t delivered;
    uint64_t errors;
    char first_error[256];
} dr_stats_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dr_stats_t *st = opaque;
    (void)rk;
    if (m->err) {
        if (st->errors++ == 0)
            snprintf(st->first_error, sizeof(st->first_error), "%s", rd_kafka_err2str(m->err));
    } else {
        st->delivered++;
    }
}

static int set_prop(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "loadgen: producer property %s=%s: %s\n", name, value, errstr);
        return -1;
    }
    return 0;
}

static rd_kafka_t *producer_new(const struct options *o, dr_stats_t *st)
{
    char errstr[512], linger[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;

    snprintf(linger, sizeof(linger), "%" PRIu64, o->linger_ms);
    /* Throughput: large batches (message.max.bytes bounds a request anyway), a deep local
     * queue so produce() rarely blocks, delivery reports for errors only (the delivered
     * count is produced - errors - queue length). Measured on the devbroker: docs/benchmarks.md. */
    const char *props[][2] = {
        {"bootstrap.servers", o->bootstrap},
        {"linger.ms", linger},
        {"batch.size", "1000000"},
        {"batch.num.messages", "100000"},
        {"queue.buffering.max.messages", "2000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"compression.codec", o->compression},
        {"acks", o->acks},
        {"enable.idempotence", o->idempotent ? "true" : "false"},
        {"delivery.report.only.error", "true"},
    };
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
        if (set_prop(conf, props[i][0], props[i][1]) != 0)
            goto fail;
    for (int i = 0; i < o->n_props; i++) {
        char name[256];
        const char *eq = strchr(o->props[i], '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq - o->props[i]), o->props[i]);
        if (set_prop(conf, name, eq + 1) != 0)
            goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, st);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "loadgen: cannot create the producer: %s\n", errstr);
        goto fail;
    }
    return rk;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---------------------------------------------------------------- main */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}

static bool file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* --schemas, else $BP_SCHEMAS_DIR/avro (the daemon's variable names the folder holding
 * avro/ and sql/), else <binary>/../schemas/avro (a build folder inside the source tree),
 * else the source tree this was built from. */
static void find_schemas(const struct options *o, char *dir, size_t len)
{
    char exe[PATH_MAX], probe[PATH_MAX + 64];
    const char *env = getenv("BP_SCHEMAS_DIR");
    ssize_t n;

    if (o->schemas) {
        snprintf(dir, len, "%s", o->schemas);
        return;
    }
    if (env && env[0]) {
        snprintf(dir, len, "%s/avro", env);
        return;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(probe, sizeof(probe), "%s/../schemas/avro/subjects.json", exe);
            int w = snprintf(dir, len, "%s/../schemas/avro", exe);
            if (w > 0 && (size_t)w < len && file_exists(probe))
                return;
        }
    }
    snprintf(dir, len, "%s/schemas/avro", BP_SOURCE_DIR);
}

typedef struct {
    uint64_t produced;
    uint64_t produce_errors; /* refused by produce() itself (not queue full) */
    uint64_t encode_errors;
    double produce_s; /* until the last message was handed to librdkafka */
    double total_s;   /* until every delivery report was in */
    uint64_t undelivered;
} run_t;

static void progress(const run_t *r, uint64_t last, double dt, double t, uint64_t delivered,
                     uint64_t errors, int queue)
{
    fprintf(stderr,
            "loadgen: %7.1fs  %9.0f msg/s  total %" PRIu64 "  delivered %" PRIu64
            "  errors %" PRIu64 "  queue %d\n",
            t, dt > 0 ? (double)(r->produced - last) / dt : 0.0, r->produced, delivered, errors,
            queue);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int main(int argc, char **argv)
{
    struct options opt;
    char schemas[PATH_MAX], why[512];
    bp_codec_t *codec = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    dr_stats_t dr = {0};
    gen_t gen;
    run_t run = {0};
    bool gen_ok = false, oom = false;
    int32_t schema_id;
    int rc = 1;

    int pr = parse_args(argc, argv, &opt);
    if (pr != 0)
        return pr > 0 ? 0 : 2;

    find_schemas(&opt, schemas, sizeof(schemas));
    if (bp_codec_new(schemas, &codec, why, sizeof(why)) != BP_OK) {
        fprintf(stderr, "loadgen: --schemas %s: %s\n", schemas, why);
        goto out;
    }
    char subject[256];
    snprintf(subject, sizeof(subject), "%s-value", opt.topic);
    if (opt.subject)
        snprintf(subject, sizeof(subject), "%s", opt.subject);
    schema_id = bp_codec_subject_id(codec, subject);
    if (schema_id < 0) {
        fprintf(stderr, "loadgen: %s: no subject %s in %s/subjects.json\n",
                opt.subject ? "--subject" : "--topic", subject, schemas);
        goto out;
    }
    if (!gen_init(&gen, &opt)) {
        fprintf(stderr, "loadgen: out of memory (--players %" PRIu64 ")\n", opt.players);
        goto out;
    }
    gen_ok = true;
    if (!opt.dry_run) {
        rk = producer_new(&opt, &dr);
        if (!rk)
            goto out;
        rkt = rd_kafka_topic_new(rk, opt.topic, NULL);
        if (!rkt) {
            fprintf(stderr, "loadgen: --topic %s: %s\n", opt.topic,
                    rd_kafka_err2str(rd_kafka_last_error()));
            goto out;
        }
    }
    install_signals();
    if (!opt.quiet) {
        char rate[32] = "as fast as possible";
        if (opt.rate)
            snprintf(rate, sizeof(rate), "%" PRIu64 " msg/s", opt.rate);
        fprintf(stderr,
                "loadgen: %s%s, topic %s, prefix %s, seed %" PRIu64 ", %" PRIu64
                " players%s, %" PRIu64 "%% duplicates, rate %s\n",
                opt.dry_run ? "dry run" : "bootstrap ", opt.dry_run ? "" : opt.bootstrap, opt.topic,
                opt.prefix, opt.seed, opt.players, opt.zipf > 0 ? " (zipf)" : "", opt.dup_pct,
                rate);
    }

    const int64_t start = mono_ns();
    const int64_t end_ns = opt.seconds ? start + (int64_t)opt.seconds * 1000000000 : INT64_MAX;
    const uint64_t limit = opt.events ? opt.events : UINT64_MAX;
    int64_t next_report = start + 1000000000, last_report = start;
    uint64_t last_count = 0;

    while (run.produced < limit && !stop_signal) {
        int64_t now = mono_ns();
        if (now >= end_ns)
            break;
        if (!opt.quiet && now >= next_report) {
            uint64_t errs = dr.errors + run.produce_errors + run.encode_errors;
            int q = rk ? rd_kafka_outq_len(rk) : 0;
            progress(&run, last_count, (double)(now - last_report) / 1e9,
                     (double)(now - start) / 1e9, run.produced - errs - (uint64_t)q, errs, q);
            last_count = run.produced;
            last_report = now;
            next_report += 1000000000;
            if (next_report <= now)
                next_report = now + 1000000000;
        }
        uint64_t chunk = CHUNK;
        if (limit - run.produced < chunk)
            chunk = limit - run.produced;
        if (opt.rate) {
            /* Messages due by now. Ahead of time, sleep 1 ms: bursts of rate/1000 messages
             * cost far less CPU than waking up for every message (at 100k msg/s: 0.29 core
             * with a sleep of 1/rate, 0.15 with 1 ms). */
            uint64_t due = (uint64_t)((double)opt.rate * (double)(now - start) / 1e9) + 1;
            if (due <= run.produced) {
                sleep_ns(1000000);
                if (rk)
                    rd_kafka_poll(rk, 0);
                continue;
            }
            if (due - run.produced < chunk)
                chunk = due - run.produced;
        }
        const int64_t stamp = wall_ms();
        for (uint64_t i = 0; i < chunk; i++) {
            void *buf = NULL;
            size_t len = 0;
            if (!gen_next(&gen, stamp)) {
                fprintf(stderr, "loadgen: out of memory (occurredAt log)\n");
                oom = true;
                goto drain;
            }
            if (bp_codec_encode_xp(codec, schema_id, &gen.ev, NULL, NULL, 0, &buf, &len) != BP_OK) {
                if (run.encode_errors++ == 0)
                    fprintf(stderr, "loadgen: cannot encode event %s\n", gen.ev.event_id);
                run.produced++;
                continue;
            }
            run.produced++;
            if (!rk) {
                free(buf);
                continue;
            }
            for (;;) {
                /* F_COPY: librdkafka allocates the message and its payload in one block;
                 * our buffer is freed here, by the thread that allocated it. The explicit
                 * timestamp saves librdkafka a gettimeofday() per message. */
                rd_kafka_resp_err_t err = rd_kafka_producev(
                    rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_VALUE(buf, len),
                    RD_KAFKA_V_KEY(gen.ev.player_id, strlen(gen.ev.player_id)),
                    RD_KAFKA_V_TIMESTAMP(stamp), RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    free(buf);
                    break;
                }
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stop_signal) {
                    rd_kafka_poll(rk, 1);
                    continue;
                }
                if (run.produce_errors++ == 0)
                    fprintf(stderr, "loadgen: produce: %s\n", rd_kafka_err2str(err));
                free(buf);
                break;
            }
        }
        if (rk)
            rd_kafka_poll(rk, 0);
    }
drain:
    run.produce_s = (double)(mono_ns() - start) / 1e9;
    if (rk) {
        /* Wait for every delivery report; a second signal gives up and purges. */
        int64_t deadline = mono_ns() + (int64_t)FLUSH_TIMEOUT_MS * 1000000;
        const sig_atomic_t seen = stop_signal;
        while (rd_kafka_outq_len(rk) > 0 && mono_ns() < deadline && stop_signal == seen) {
            rd_kafka_flush(rk, 200);
            int64_t now = mono_ns();
            if (!opt.quiet && now >= next_report) {
                uint64_t errs = dr.errors + run.produce_errors + run.encode_errors;
                int q = rd_kafka_outq_len(rk);
                progress(&run, last_count, (double)(now - last_report) / 1e9,
                         (double)(now - start) / 1e9, run.produced - errs - (uint64_t)q, errs, q);
                last_count = run.produced;
                last_report = now;
                next_report = now + 1000000000;
            }
        }
        run.undelivered = (uint64_t)rd_kafka_outq_len(rk);
        if (run.undelivered) {
            rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_poll(rk, 0);
        }
    }
    run.total_s = (double)(mono_ns() - start) / 1e9;

    uint64_t failed = dr.errors + run.produce_errors + run.encode_errors;
    uint64_t delivered = opt.dry_run ? 0 : run.produced - failed - run.undelivered;
    double prate = run.produce_s > 0 ? (double)run.produced / run.produce_s : 0;
    double drate = run.total_s > 0 ? (double)delivered / run.total_s : 0;
    if (opt.dry_run && !opt.quiet) {
        fprintf(stderr,
                "loadgen: dry run: generated and encoded %" PRIu64 " in %.2fs (%.0f msg/s)\n",
                run.produced, run.produce_s, prate);
    } else if (!opt.quiet || failed || run.undelivered) {
        fprintf(stderr,
                "loadgen: produced %" PRIu64 " in %.2fs (%.0f msg/s); delivered %" PRIu64
                " in %.2fs (%.0f msg/s); failed %" PRIu64 ", undelivered %" PRIu64 "\n",
                run.produced, run.produce_s, prate, delivered, run.total_s, drate, failed,
                run.undelivered);
        if (dr.errors)
            fprintf(stderr, "loadgen: first delivery error: %s\n", dr.first_error);
    }
    if (!opt.quiet || failed || run.undelivered)
        fprintf(stderr,
                "loadgen: oracle: unique events %" PRIu64 ", duplicates %" PRIu64
                ", sum of amounts %" PRIu64 ", distinct players %" PRIu64 " (prefix %s)\n",
                gen.unique, gen.dups, gen.amount_sum, gen.players_touched, opt.prefix);
    if (opt.json) {
        printf("{\"topic\":\"%s\",\"prefix\":\"%s\",\"seed\":%" PRIu64 ",\"players\":%" PRIu64
               ",\"dryRun\":%s,\"produced\":%" PRIu64 ",\"delivered\":%" PRIu64
               ",\"failed\":%" PRIu64 ",\"undelivered\":%" PRIu64 ",\"uniqueEvents\":%" PRIu64
               ",\"duplicates\":%" PRIu64 ",\"amountSum\":%" PRIu64 ",\"distinctPlayers\":%" PRIu64
               ",\"firstOccurredAt\":%" PRId64 ",\"lastOccurredAt\":%" PRId64
               ",\"produceSeconds\":%.3f,\"totalSeconds\":%.3f"
               ",\"producedPerSec\":%.0f,\"deliveredPerSec\":%.0f}\n",
               opt.topic, opt.prefix, opt.seed, opt.players, opt.dry_run ? "true" : "false",
               run.produced, delivered, failed, run.undelivered, gen.unique, gen.dups,
               gen.amount_sum, gen.players_touched, gen.first_ms, gen.last_ms, run.produce_s,
               run.total_s, prate, drate);
        fflush(stdout);
    }
    rc = failed || run.undelivered || oom ? 1 : 0;
out:
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk)
        rd_kafka_destroy(rk);
    if (gen_ok)
        gen_fini(&gen);
    bp_codec_destroy(codec);
    return rc;
}
