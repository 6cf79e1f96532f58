/** @file devbroker control interface: parses fault-injection commands and applies them to
 *  librdkafka's mock cluster; serves them over a Unix stream socket (docs/faults.md). */
#define _GNU_SOURCE /* ppoll, accept4 */
#include "tools/devbroker_control.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

enum {
    MAX_WORDS = 72,   /* a command and up to 64 error codes */
    MAX_CLIENTS = 16, /* simultaneous control connections */
};

/* Kafka protocol request types by name (ApiKey numbers of the Kafka protocol). */
static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"InitProducerId", 22},
    {"AddPartitionsToTxn", 24},
    {"EndTxn", 26},
};

/* A command: its words (first one or two), how many arguments follow, and its action. */
typedef int (*command_fn)(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                          char *reply, size_t reply_len);

struct command {
    const char *verb;
    const char *sub; /* NULL: one-word verb */
    int min_args;
    int max_args;
    const char *usage;
    command_fn fn;
};

/* Writes "error <message>" to reply. Returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(char *reply, size_t len, const char *fmt, ...)
{
    char msg[DEVBROKER_CONTROL_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(reply, len, "error %s", msg);
    return -1;
}

static int ok(char *reply, size_t len, const char *what)
{
    snprintf(reply, len, "ok %s", what);
    return 0;
}

static int parse_long(const char *text, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_broker(const char *text, int brokers, int32_t *out)
{
    long v;
    if (parse_long(text, 1, brokers, &v) != 0)
        return -1;
    *out = (int32_t)v;
    return 0;
}

/* An ApiKey by name (case-insensitive) or number. */
static int parse_api(const char *text, int16_t *out)
{
    long v;
    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(text, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    if (parse_long(text, 0, 1000, &v) != 0)
        return -1;
    *out = (int16_t)v;
    return 0;
}

/* A Kafka error by librdkafka's name without the RD_KAFKA_RESP_ERR_ prefix (e.g.
 * NOT_LEADER_FOR_PARTITION, _TRANSPORT; case-insensitive) or by number. */
static int parse_error(const char *text, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs = NULL;
    size_t n = 0;
    long v;

    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name != NULL && strcasecmp(text, descs[i].name) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    if (parse_long(text, -200, 200, &v) != 0)
        return -1;
    *out = (rd_kafka_resp_err_t)v;
    return 0;
}

static int result(rd_kafka_resp_err_t err, char *reply, size_t len, const char *what)
{
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return fail(reply, len, "%s", rd_kafka_err2str(err));
    return ok(reply, len, what);
}

/* ---- the commands ----------------------------------------------------------------- */

static int cmd_ping(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv, char *reply,
                    size_t len)
{
    (void)mc, (void)argc, (void)argv;
    char what[64];
    snprintf(what, sizeof(what), "pong brokers=%d", brokers);
    return ok(reply, len, what);
}

static int broker_updown(rd_kafka_mock_cluster_t *mc, int brokers, char **argv, char *reply,
                         size_t len, int up)
{
    int32_t id;
    if (parse_broker(argv[0], brokers, &id) != 0)
        return fail(reply, len, "no broker '%s' (brokers are 1..N)", argv[0]);
    rd_kafka_resp_err_t err =
        up ? rd_kafka_mock_broker_set_up(mc, id) : rd_kafka_mock_broker_set_down(mc, id);
    return result(err, reply, len, up ? "broker up" : "broker down");
}

static int cmd_broker_down(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                           char *reply, size_t len)
{
    (void)argc;
    return broker_updown(mc, brokers, argv, reply, len, 0);
}

static int cmd_broker_up(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                         char *reply, size_t len)
{
    (void)argc;
    return broker_updown(mc, brokers, argv, reply, len, 1);
}

static int cmd_broker_rtt(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                          char *reply, size_t len)
{
    (void)argc;
    int32_t id;
    long ms;
    if (parse_broker(argv[0], brokers, &id) != 0)
        return fail(reply, len, "no broker '%s' (brokers are 1..N)", argv[0]);
    if (parse_long(argv[1], 0, 600000, &ms) != 0)
        return fail(reply, len, "rtt must be 0..600000 ms, got '%s'", argv[1]);
    return result(rd_kafka_mock_broker_set_rtt(mc, id, (int)ms), reply, len, "broker rtt set");
}

static int cmd_broker_error(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                            char *reply, size_t len)
{
    int32_t id;
    int16_t api;
    rd_kafka_resp_err_t err;
    long rtt = 0;
    if (parse_broker(argv[0], brokers, &id) != 0)
        return fail(reply, len, "no broker '%s' (brokers are 1..N)", argv[0]);
    if (parse_api(argv[1], &api) != 0)
        return fail(reply, len, "unknown request type '%s'", argv[1]);
    if (parse_error(argv[2], &err) != 0)
        return fail(reply, len, "unknown error '%s'", argv[2]);
    if (argc > 3 && parse_long(argv[3], 0, 600000, &rtt) != 0)
        return fail(reply, len, "rtt must be 0..600000 ms, got '%s'", argv[3]);
    return result(rd_kafka_mock_broker_push_request_error_rtts(mc, id, api, 1, err, (int)rtt),
                  reply, len, "broker error pushed");
}

static int cmd_errors(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv, char *reply,
                      size_t len)
{
    (void)brokers;
    int16_t api;
    rd_kafka_resp_err_t errs[MAX_WORDS];
    if (parse_api(argv[0], &api) != 0)
        return fail(reply, len, "unknown request type '%s'", argv[0]);
    for (int i = 1; i < argc; i++) {
        if (parse_error(argv[i], &errs[i - 1]) != 0)
            return fail(reply, len, "unknown error '%s'", argv[i]);
    }
    rd_kafka_mock_push_request_errors_array(mc, api, (size_t)(argc - 1), errs);
    char what[64];
    snprintf(what, sizeof(what), "%d errors pushed", argc - 1);
    return ok(reply, len, what);
}

static int cmd_clear(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv, char *reply,
                     size_t len)
{
    (void)brokers, (void)argc;
    int16_t api;
    if (parse_api(argv[0], &api) != 0)
        return fail(reply, len, "unknown request type '%s'", argv[0]);
    rd_kafka_mock_clear_request_errors(mc, api);
    return ok(reply, len, "errors cleared");
}

static int cmd_leader(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv, char *reply,
                      size_t len)
{
    (void)argc;
    long part;
    int32_t id;
    if (parse_long(argv[1], 0, 1 << 20, &part) != 0)
        return fail(reply, len, "bad partition '%s'", argv[1]);
    if (parse_broker(argv[2], brokers, &id) != 0)
        return fail(reply, len, "no broker '%s' (brokers are 1..N)", argv[2]);
    return result(rd_kafka_mock_partition_set_leader(mc, argv[0], (int32_t)part, id), reply, len,
                  "leader set");
}

static int cmd_coordinator(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                           char *reply, size_t len)
{
    (void)argc;
    int32_t id;
    if (parse_broker(argv[1], brokers, &id) != 0)
        return fail(reply, len, "no broker '%s' (brokers are 1..N)", argv[1]);
    return result(rd_kafka_mock_coordinator_set(mc, "group", argv[0], id), reply, len,
                  "coordinator set");
}

static int cmd_topic_error(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv,
                           char *reply, size_t len)
{
    (void)brokers, (void)argc;
    rd_kafka_resp_err_t err;
    if (parse_error(argv[1], &err) != 0)
        return fail(reply, len, "unknown error '%s'", argv[1]);
    rd_kafka_mock_topic_set_error(mc, argv[0], err);
    return ok(reply, len, "topic error set");
}

static int cmd_help(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv, char *reply,
                    size_t len);

static const struct command commands[] = {
    {"ping", NULL, 0, 0, "ping", cmd_ping},
    {"help", NULL, 0, 0, "help", cmd_help},
    {"broker", "down", 1, 1, "broker down ID", cmd_broker_down},
    {"broker", "up", 1, 1, "broker up ID", cmd_broker_up},
    {"broker", "rtt", 2, 2, "broker rtt ID MS", cmd_broker_rtt},
    {"broker", "error", 3, 4, "broker error ID API ERR [RTT_MS]", cmd_broker_error},
    {"errors", NULL, 2, MAX_WORDS - 2, "errors API ERR [ERR...]", cmd_errors},
    {"clear", NULL, 1, 1, "clear API", cmd_clear},
    {"leader", NULL, 3, 3, "leader TOPIC PARTITION ID", cmd_leader},
    {"coordinator", NULL, 2, 2, "coordinator GROUP ID", cmd_coordinator},
    {"topic-error", NULL, 2, 2, "topic-error TOPIC ERR", cmd_topic_error},
};
enum { N_COMMANDS = sizeof(commands) / sizeof(commands[0]) };

static int cmd_help(rd_kafka_mock_cluster_t *mc, int brokers, int argc, char **argv, char *reply,
                    size_t len)
{
    (void)mc, (void)brokers, (void)argc, (void)argv;
    size_t used = (size_t)snprintf(reply, len, "ok");
    for (size_t i = 0; i < N_COMMANDS && used < len; i++)
        used +=
            (size_t)snprintf(reply + used, len - used, "%s%s", i ? " | " : " ", commands[i].usage);
    return 0;
}

int devbroker_control_exec(rd_kafka_mock_cluster_t *mc, int brokers, const char *line, char *reply,
                           size_t reply_len)
{
    char buf[DEVBROKER_CONTROL_LINE_MAX];
    char *words[MAX_WORDS];
    int n = 0;
    char *save = NULL;

    if (strlen(line) >= sizeof(buf))
        return fail(reply, reply_len, "%s", "line too long");
    strcpy(buf, line);
    for (char *w = strtok_r(buf, " \t\r\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == MAX_WORDS)
            return fail(reply, reply_len, "%s", "too many words");
        words[n++] = w;
    }
    if (n == 0)
        return fail(reply, reply_len, "%s", "empty command (try 'help')");

    for (size_t i = 0; i < N_COMMANDS; i++) {
        const struct command *c = &commands[i];
        int skip = c->sub != NULL ? 2 : 1;
        if (strcmp(words[0], c->verb) != 0)
            continue;
        if (c->sub != NULL && (n < 2 || strcmp(words[1], c->sub) != 0))
            continue;
        if (n - skip < c->min_args || n - skip > c->max_args)
            return fail(reply, reply_len, "usage: %s", c->usage);
        return c->fn(mc, brokers, n - skip, words + skip, reply, reply_len);
    }
    return fail(reply, reply_len, "unknown command '%s' (try 'help')", words[0]);
}

/* ---- the socket ------------------------------------------------------------------- */

struct client {
    int fd;
    size_t len;
    char buf[DEVBROKER_CONTROL_LINE_MAX];
};

static int listen_unix(const char *path)
{
    struct sockaddr_un addr;
    int fd;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "devbroker: control socket path too long (max %zu): %s\n",
                sizeof(addr.sun_path) - 1, path);
        return -1;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "devbroker: socket: %s\n", strerror(errno));
        return -1;
    }
    unlink(path); /* a stale socket of a previous run */
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 8) != 0) {
        fprintf(stderr, "devbroker: cannot listen on %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Answers every complete line in c's buffer. Returns -1 when the client must be dropped. */
static int client_lines(rd_kafka_mock_cluster_t *mc, int brokers, struct client *c)
{
    char reply[DEVBROKER_CONTROL_LINE_MAX];
    char *nl;

    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
        *nl = '\0';
        devbroker_control_exec(mc, brokers, c->buf, reply, sizeof(reply) - 1);
        fprintf(stderr, "devbroker: control: %s -> %s\n", c->buf, reply);
        strcat(reply, "\n");
        if (send(c->fd, reply, strlen(reply), MSG_NOSIGNAL) < 0)
            return -1;
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
    return c->len == sizeof(c->buf) ? -1 : 0; /* a line longer than the limit */
}

int devbroker_control_serve(rd_kafka_mock_cluster_t *mc, int brokers, const char *path,
                            const sigset_t *wait_mask, volatile sig_atomic_t *stop)
{
    struct client clients[MAX_CLIENTS];
    struct pollfd pfd[1 + MAX_CLIENTS];
    int lfd = listen_unix(path);
    int n_clients = 0;

    if (lfd < 0)
        return -1;
    while (!*stop) {
        pfd[0] = (struct pollfd){.fd = lfd, .events = n_clients < MAX_CLIENTS ? POLLIN : 0};
        for (int i = 0; i < n_clients; i++)
            pfd[1 + i] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
        if (ppoll(pfd, (nfds_t)(1 + n_clients), NULL, wait_mask) < 0)
            continue; /* EINTR: a signal; the loop condition tells */
        for (int i = n_clients - 1; i >= 0; i--) {
            struct client *c = &clients[i];
            if (pfd[1 + i].revents == 0)
                continue;
            ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
            if (r > 0) {
                c->len += (size_t)r;
                if (client_lines(mc, brokers, c) == 0)
                    continue;
            }
            /* closed, failed or sent an over-long line: drop it (the last one moves here,
             * already handled since we walk backwards) */
            close(c->fd);
            clients[i] = clients[--n_clients];
        }
        if (pfd[0].revents & POLLIN) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                clients[n_clients].fd = fd;
                clients[n_clients].len = 0;
                n_clients++;
            }
        }
    }
    for (int i = 0; i < n_clients; i++)
        close(clients[i].fd);
    close(lfd);
    unlink(path);
    return 0;
}

int devbroker_control_send(const char *path, int argc, char **argv)
{
    struct sockaddr_un addr;
    char line[DEVBROKER_CONTROL_LINE_MAX];
    char reply[DEVBROKER_CONTROL_LINE_MAX];
    size_t used = 0, got = 0;
    int fd = -1, rc = 2;

    for (int i = 0; i < argc; i++) {
        int w = snprintf(line + used, sizeof(line) - used, "%s%s", i ? " " : "", argv[i]);
        if (w < 0 || (size_t)w >= sizeof(line) - used - 1) {
            fprintf(stderr, "devbroker: command too long\n");
            return 2;
        }
        used += (size_t)w;
    }
    line[used++] = '\n';
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "devbroker: control socket path too long: %s\n", path);
        return 2;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        send(fd, line, used, MSG_NOSIGNAL) != (ssize_t)used) {
        fprintf(stderr, "devbroker: cannot reach the control socket %s: %s\n", path,
                strerror(errno));
        goto out;
    }
    while (got < sizeof(reply) - 1 && memchr(reply, '\n', got) == NULL) {
        ssize_t r = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    reply[got] = '\0';
    if (got == 0) {
        fprintf(stderr, "devbroker: no reply from %s\n", path);
        goto out;
    }
    fputs(reply, stdout);
    rc = strncmp(reply, "ok", 2) == 0 ? 0 : 1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}
