/** @file devbroker: local Kafka for development, librdkafka's mock cluster behind real TCP. */

/*
 * No Apache Kafka broker can be installed on the development machines, so this program
 * runs librdkafka's mock cluster (rdkafka_mock.h) as a stand-alone process: it creates the
 * topics of the Kafka contract (design §3), prints/writes the bootstrap list and serves any
 * Kafka client (the service, kcat, Python) until SIGTERM/SIGINT.
 *
 * Known limits of the 2.0.2 mock (design §6): a group join takes ~3 s, session.timeout.ms
 * must be >= 3000, commits are refused during a rebalance, no transactional control records,
 * no admin API (topics are created here). Each partition keeps only its newest 5 MB or
 * 100,000 message sets (older ones are deleted and the log start offset moves up), and a
 * fetch finds its offset by walking the message sets from the oldest: a consumer lagging
 * more than 5 MB behind loses messages, and fetching slows down as a partition fills with
 * many small producer batches. Listener ports are always chosen by the kernel: the mock
 * binds 127.0.0.1:0 and has no setting for a fixed port, hence the bootstrap file.
 *
 * With --control PATH, faults (brokers down/up, request errors, latency) can be injected
 * while it runs, one command per line on a Unix socket: tools/devbroker_control.c,
 * docs/faults.md.
 */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "tools/devbroker_control.h"

enum {
    MAX_TOPICS = 64,
    DEFAULT_BROKERS = 3,
    DEFAULT_PARTITIONS = 6,
    DEFAULT_REPLICATION = 3,
    MAX_BROKERS = 16,
    MAX_PARTITIONS = 1024,
};

/* The topics of the Kafka contract, always created. */
static const char *const contract_topics[] = {
    "battlepass.xp-events", "battlepass.premium-events",
    "battlepass.level-ups", "battlepass.reward-grants",
    "battlepass.dlq",
};

struct options {
    int brokers;
    int partitions;
    int replication;
    const char *bootstrap_file;
    const char *control; /* control socket path, or NULL */
    const char *topics[MAX_TOPICS];
    int topic_cnt;
    int quiet;
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* librdkafka log lines to stderr, minus the warning that the hosting handle has no
 * bootstrap.servers: it never connects anywhere, it only hosts the cluster. */
static void log_line(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers") != NULL)
        return;
    fprintf(stderr, "devbroker: rdkafka %d %s: %s\n", level, fac, buf);
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "       %s ctl SOCKET COMMAND...   send one control command, print the reply\n"
            "\n"
            "Runs librdkafka's mock Kafka cluster as a local broker for development and tests.\n"
            "Creates the topics battlepass.xp-events, battlepass.premium-events,\n"
            "battlepass.level-ups, battlepass.reward-grants and battlepass.dlq, then prints\n"
            "'bootstrap=<host:port,...>' on stdout and runs until SIGTERM or SIGINT.\n"
            "\n"
            "options:\n"
            "  --partitions N          partitions per topic (default %d)\n"
            "  --replication-factor N  replicas per partition, 1..brokers (default %d)\n"
            "  --brokers N             number of mock brokers (default %d)\n"
            "  --topic NAME            create one more topic (repeatable)\n"
            "  --bootstrap-file PATH   also write the bootstrap list (one line) to PATH,\n"
            "                          atomically, once the topics exist\n"
            "  --control PATH          serve the fault-injection control interface on the\n"
            "                          Unix socket PATH (one command per line, see\n"
            "                          docs/faults.md; 'help' lists the commands)\n"
            "  --quiet                 no librdkafka log lines on stderr\n"
            "  --help                  this text\n"
            "\n"
            "Ports are chosen by the kernel (the 2.0.2 mock cannot listen on a fixed port);\n"
            "read them from stdout or the bootstrap file. Consumers need\n"
            "session.timeout.ms >= 3000; a group join takes about 3 s. Each partition keeps\n"
            "only its newest 5 MB (or 100,000 producer batches): use more partitions to hold\n"
            "more, and do not let a consumer lag further behind.\n",
            prog, prog, DEFAULT_PARTITIONS, DEFAULT_REPLICATION, DEFAULT_BROKERS);
}

/* Parses a decimal int in [lo, hi]; returns 0 on success, -1 (with a message) otherwise. */
static int parse_int(const char *name, const char *text, int lo, int hi, int *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "devbroker: %s must be an integer in %d..%d, got '%s'\n", name, lo, hi,
                text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Returns 0 and fills opt, 1 when --help was printed, -1 on a usage error (printed). */
static int parse_args(int argc, char **argv, struct options *opt)
{
    int i;

    opt->brokers = DEFAULT_BROKERS;
    opt->partitions = DEFAULT_PARTITIONS;
    opt->replication = DEFAULT_REPLICATION;
    opt->bootstrap_file = NULL;
    opt->control = NULL;
    opt->topic_cnt = 0;
    opt->quiet = 0;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = strcmp(arg, "--partitions") == 0 ||
                          strcmp(arg, "--replication-factor") == 0 ||
                          strcmp(arg, "--brokers") == 0 || strcmp(arg, "--topic") == 0 ||
                          strcmp(arg, "--bootstrap-file") == 0 || strcmp(arg, "--control") == 0;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout, argv[0]);
            return 1;
        }
        if (strcmp(arg, "--quiet") == 0) {
            opt->quiet = 1;
            continue;
        }
        if (!takes_value) {
            fprintf(stderr, "devbroker: unknown argument '%s' (see --help)\n", arg);
            return -1;
        }
        if (val == NULL || val[0] == '\0') {
            fprintf(stderr, "devbroker: %s needs a value (see --help)\n", arg);
            return -1;
        }
        i++;
        if (strcmp(arg, "--partitions") == 0) {
            if (parse_int(arg, val, 1, MAX_PARTITIONS, &opt->partitions) != 0)
                return -1;
        } else if (strcmp(arg, "--replication-factor") == 0) {
            if (parse_int(arg, val, 1, MAX_BROKERS, &opt->replication) != 0)
                return -1;
        } else if (strcmp(arg, "--brokers") == 0) {
            if (parse_int(arg, val, 1, MAX_BROKERS, &opt->brokers) != 0)
                return -1;
        } else if (strcmp(arg, "--topic") == 0) {
            if (opt->topic_cnt >= MAX_TOPICS) {
                fprintf(stderr, "devbroker: at most %d extra topics\n", MAX_TOPICS);
                return -1;
            }
            opt->topics[opt->topic_cnt++] = val;
        } else if (strcmp(arg, "--control") == 0) {
            opt->control = val;
        } else {
            opt->bootstrap_file = val;
        }
    }
    if (opt->replication > opt->brokers) {
        fprintf(stderr, "devbroker: --replication-factor %d exceeds --brokers %d\n",
                opt->replication, opt->brokers);
        return -1;
    }
    return 0;
}

/* Writes "line\n" to path through a temporary file and rename(), so readers never see a
 * partial file. Returns 0 on success, -1 (with a message) otherwise. */
static int write_file_atomically(const char *path, const char *line)
{
    char tmp[PATH_MAX];
    FILE *f = NULL;
    int n;
    int rc = -1;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        fprintf(stderr, "devbroker: bootstrap file path too long: %s\n", path);
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "devbroker: cannot create %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    if (fprintf(f, "%s\n", line) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fprintf(stderr, "devbroker: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "devbroker: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "devbroker: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *name, const struct options *opt)
{
    rd_kafka_resp_err_t err;

    err = rd_kafka_mock_topic_create(mc, name, opt->partitions, opt->replication);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "devbroker: cannot create topic %s: %s\n", name, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Blocks the stop signals and installs their handler; sigsuspend() later unblocks them
 * atomically, so a signal that arrives before we wait is not lost. */
static int setup_signals(sigset_t *wait_mask)
{
    struct sigaction sa;
    sigset_t block;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    if (sigprocmask(SIG_BLOCK, &block, wait_mask) != 0)
        return -1;
    sigdelset(wait_mask, SIGTERM);
    sigdelset(wait_mask, SIGINT);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    /* A reader of our stdout may go away; that must not kill the broker. */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
    struct options opt;
    char errstr[512];
    char line[4096];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *bootstraps;
    sigset_t wait_mask;
    size_t i;
    int r;
    int rc = 1;

    if (argc >= 2 && strcmp(argv[1], "ctl") == 0) {
        if (argc < 4) {
            fprintf(stderr, "usage: %s ctl SOCKET COMMAND...\n", argv[0]);
            return 2;
        }
        return devbroker_control_send(argv[2], argc - 3, argv + 3);
    }
    r = parse_args(argc, argv, &opt);
    if (r != 0)
        return r > 0 ? 0 : 2;

    /* Signals are blocked before librdkafka starts its threads, which inherit the mask, so
     * SIGTERM is always delivered to this thread. */
    if (setup_signals(&wait_mask) != 0) {
        fprintf(stderr, "devbroker: cannot set up signal handling: %s\n", strerror(errno));
        return 1;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_line);
    if (opt.quiet &&
        rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "devbroker: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "devbroker: cannot create librdkafka handle: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    conf = NULL; /* owned by rk now */

    mc = rd_kafka_mock_cluster_new(rk, opt.brokers);
    if (mc == NULL) {
        fprintf(stderr, "devbroker: cannot create the mock cluster (see log above)\n");
        goto out;
    }

    for (i = 0; i < sizeof(contract_topics) / sizeof(contract_topics[0]); i++) {
        if (create_topic(mc, contract_topics[i], &opt) != 0)
            goto out;
    }
    for (i = 0; i < (size_t)opt.topic_cnt; i++) {
        if (create_topic(mc, opt.topics[i], &opt) != 0)
            goto out;
    }

    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (bootstraps == NULL || bootstraps[0] == '\0' ||
        (size_t)snprintf(line, sizeof(line), "%s", bootstraps) >= sizeof(line)) {
        fprintf(stderr, "devbroker: no usable bootstrap list from the mock cluster\n");
        goto out;
    }
    if (opt.bootstrap_file != NULL && write_file_atomically(opt.bootstrap_file, line) != 0)
        goto out;
    printf("bootstrap=%s\n", line);
    fflush(stdout);

    if (opt.control != NULL) {
        if (devbroker_control_serve(mc, opt.brokers, opt.control, &wait_mask, &stop_signal) != 0)
            goto out;
    } else {
        while (!stop_signal)
            sigsuspend(&wait_mask);
    }

    fprintf(stderr, "devbroker: signal %d, shutting down\n", (int)stop_signal);
    /* The ports die with us: a stale bootstrap file would only mislead. */
    if (opt.bootstrap_file != NULL)
        unlink(opt.bootstrap_file);
    rc = 0;
out:
    if (mc != NULL)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return rc;
}
