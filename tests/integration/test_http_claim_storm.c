/** @file A claim storm against a real battlepassd: a thousand connections opened at once,
 *  kept open (keep-alive) until every one is answered, each sending a claim of the same
 *  reward before any answer is read → exactly one 200,
 *  every other answer 409 already-claimed, and one claim row, one audit row and one
 *  RewardGrant event. Prints the counts and timings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/level.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23198
/** Simultaneous connections, each with one claim. */
#define CLIENTS 1000
/** Fds the test needs beyond its sockets (stdio, libpq, librdkafka). */
#define FD_RESERVE 128
/** Longest wait for every answer: under the server's 30 s idle timeout, so a server that
 *  cannot hold every connection at once (the answered ones stay open, keep-alive) fails
 *  instead of serving the rest after the first ones time out. */
#define STORM_TIMEOUT_MS 20000
#define CLAIM_LEVEL 10
/** The daemon's soft RLIMIT_NOFILE at start: a common default. */
#define DAEMON_SOFT_NOFILE 1024
#define RESP_MAX 2048

static it_env_t env;
static bp_season_t season;
static pid_t daemon_pid = -1;
static char player[64];

/** One client connection of the storm. */
typedef struct {
    int fd;
    char req[1024];
    size_t req_len, sent;
    char resp[RESP_MAX];
    size_t got;
    bool done;
    int status;
} client_t;

static void skip_without_services(void)
{
    if (daemon_pid < 0)
        skip();
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Make room for CLIENTS sockets in this process (the soft limit up to the hard one).
 *  @return true when there is room. */
static bool fd_room(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    rlim_t want = CLIENTS + FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return false;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (!it_env_load(&env, "http_claim_storm", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path))
        return -1;
    snprintf(player, sizeof(player), "storm%d-%04x", (int)getpid(),
             (unsigned)(it_now_ms() & 0xffff));
    /* The daemon starts with the soft descriptor limit many systems give (1024, fewer than
     * a thousand connections and the server's own descriptors): the server must make room
     * for its clients itself. This process takes its limit back afterwards. */
    struct rlimit rl, low;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    low = rl;
    if (low.rlim_cur == RLIM_INFINITY || low.rlim_cur > DAEMON_SOFT_NOFILE)
        low.rlim_cur = DAEMON_SOFT_NOFILE;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        return -1;
    char group[64];
    snprintf(group, sizeof(group), "it-claim-storm-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "http-claim-storm-daemon.log");
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    return daemon_pid < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = it_daemon_down(&daemon_pid) ? 0 : -1;
    bp_season_fini(&season);
    return rc;
}

/** Open @p c's socket, non-blocking, and start connecting. @return false on failure. */
static bool client_open(client_t *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(HTTP_PORT)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return false;
    return connect(c->fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS;
}

/** @return true when @p c holds a whole answer: the header block and Content-Length
 *  bytes of body (keep-alive: the server does not close the connection). */
static bool client_complete(client_t *c)
{
    c->resp[c->got] = '\0';
    const char *end = strstr(c->resp, "\r\n\r\n");
    if (!end)
        return false;
    static const char name[] = "\r\ncontent-length:";
    size_t len = 0;
    for (const char *h = c->resp; h < end; h++)
        if (strncasecmp(h, name, sizeof(name) - 1) == 0)
            len = strtoul(h + sizeof(name) - 1, NULL, 10);
    return c->got >= (size_t)(end + 4 - c->resp) + len;
}

/** Finish @p c: parse the status line. The socket stays open (closed by the test), so
 *  every connection is held at the server until the storm is over. */
static void client_finish(client_t *c)
{
    c->resp[c->got] = '\0';
    if (sscanf(c->resp, "HTTP/1.%*d %d", &c->status) != 1)
        c->status = -1;
    c->done = true;
}

/** Drive every client with poll until all are answered or @p deadline (monotonic ms).
 *  Writes go out as sockets connect; reads follow. @return the clients answered. */
static size_t storm_run(client_t *cl, size_t n, int64_t deadline)
{
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    size_t *idx = calloc(n, sizeof(*idx));
    size_t answered = 0;
    assert_non_null(pfd);
    assert_non_null(idx);
    while (answered < n && mono_ms() < deadline) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (cl[i].done)
                continue;
            pfd[k] = (struct pollfd){cl[i].fd, cl[i].sent < cl[i].req_len ? POLLOUT : POLLIN, 0};
            idx[k++] = i;
        }
        int r = poll(pfd, k, 200);
        if (r < 0 && errno != EINTR)
            break;
        for (size_t j = 0; r > 0 && j < k; j++) {
            client_t *c = &cl[idx[j]];
            if (!pfd[j].revents)
                continue;
            if (c->sent < c->req_len) {
                ssize_t w = write(c->fd, c->req + c->sent, c->req_len - c->sent);
                if (w > 0)
                    c->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    client_finish(c); /* refused or reset: counted as no answer */
                    answered++;
                }
                continue;
            }
            ssize_t got = read(c->fd, c->resp + c->got, RESP_MAX - 1 - c->got);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got > 0)
                c->got += (size_t)got;
            if (got > 0 && !client_complete(c) && c->got < RESP_MAX - 1)
                continue;
            client_finish(c); /* a whole answer, the end of the connection or a full buffer */
            answered++;
        }
    }
    free(pfd);
    free(idx);
    return answered;
}

/** Count RewardGrant events of the player on the topic, once the outbox is relayed. */
static size_t reward_grant_events(void)
{
    json_t *events = it_reward_grants(&env, player, 30000), *o;
    size_t i;
    json_array_foreach(events, i, o)
    {
        assert_int_equal(json_integer_value(json_object_get(o, "level")), CLAIM_LEVEL);
        assert_string_equal(json_string_value(json_object_get(o, "source")), "claim");
    }
    size_t mine = json_array_size(events);
    json_decref(events);
    return mine;
}

static void test_claim_storm(void **state)
{
    (void)state;
    skip_without_services();
    if (!fd_room())
        fail_msg("this process cannot open %d sockets (RLIMIT_NOFILE)", CLIENTS);
    PGconn *db = it_pg_connect(&env);
    assert_non_null(db);
    it_progress_set(db, &season, player, season.xp_total[CLAIM_LEVEL], 0);

    char *tokens[2] = {it_jwt(env.secret, player, "player", 600),
                       it_jwt(env.secret, "economy-service", "service", 600)};
    char body[64];
    snprintf(body, sizeof(body), "{\"level\":%d,\"tier\":\"free\"}", CLAIM_LEVEL);
    client_t *cl = calloc(CLIENTS, sizeof(*cl));
    assert_non_null(cl);

    /* Every connection first, then every request, then the answers. */
    int64_t t0 = mono_ms();
    size_t opened = 0;
    for (size_t i = 0; i < CLIENTS; i++) {
        cl[i].fd = -1;
        if (!client_open(&cl[i])) {
            fprintf(stderr, "client %zu: cannot open a socket: %s\n", i, strerror(errno));
            break;
        }
        /* Half as the player, half as a service: both may claim. */
        int n = snprintf(cl[i].req, sizeof(cl[i].req),
                         "POST /rewards/%s/claim HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         player, tokens[i % 2], strlen(body), body);
        assert_true(n > 0 && (size_t)n < sizeof(cl[i].req));
        cl[i].req_len = (size_t)n;
        opened++;
    }
    assert_int_equal(opened, CLIENTS);
    int64_t t_open = mono_ms();
    size_t answered = storm_run(cl, CLIENTS, t0 + STORM_TIMEOUT_MS);
    int64_t t_end = mono_ms();

    int ok = 0, conflict = 0, other = 0, none = 0, not_problem = 0;
    for (size_t i = 0; i < CLIENTS; i++) {
        close(cl[i].fd);
        if (!cl[i].done) {
            none++;
            continue;
        }
        switch (cl[i].status) {
        case 200:
            ok++;
            break;
        case 409:
            conflict++;
            if (!strstr(cl[i].resp, "application/problem+json") ||
                !strstr(cl[i].resp, "urn:battlepass:problem:already-claimed"))
                not_problem++;
            break;
        case -1:
            none++;
            break;
        default:
            if (other++ < 5)
                fprintf(stderr, "client %zu: %.300s\n", i, cl[i].resp);
        }
    }
    printf("claim storm: %d connections opened in %lld ms; %zu answered in %lld ms: %d x 200, "
           "%d x 409, %d other statuses, %d without an answer\n",
           CLIENTS, (long long)(t_open - t0), answered, (long long)(t_end - t0), ok, conflict,
           other, none);
    free(cl);
    free(tokens[0]);
    free(tokens[1]);
    assert_int_equal(none, 0);
    assert_int_equal(other, 0);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, CLIENTS - 1);
    assert_int_equal(not_problem, 0);

    it_claim_rows_t rows = it_claim_rows(db, player, false, NULL);
    assert_int_equal(rows.claims, 1);
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM reward_claims WHERE player_id = '%s'"
                               " AND season_id = '%s'",
                               player, season.id),
                     1);
    assert_int_equal(rows.audit, 1);
    PQfinish(db);
    assert_int_equal(reward_grant_events(), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_storm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
