/** @file Configuration at start: every bad setting stops `battlepassd` (exit 78) with one line
 *  naming the variable, secrets never echoed; unknown BP_ variables are warned about, the
 *  developer scripts' own variables are not. Runs $BP_BATTLEPASSD with a clean environment;
 *  needs no service. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define EX_CONFIG 78 /* sysexits.h EX_CONFIG */
#define OUT_MAX 16384

static const char *daemon_path;

typedef struct {
    int status; /* exit status, -1: did not exit normally */
    char out[OUT_MAX];
    char err[OUT_MAX];
} run_t;

static void read_file(int fd, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t r;
    lseek(fd, 0, SEEK_SET);
    while (n + 1 < len && (r = read(fd, buf + n, len - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
}

/* Run `battlepassd <cmd>` with PATH and @p vars (NULL-terminated "NAME=value") only. */
static void run(const char *cmd, const char *const *vars, run_t *r)
{
    char out_tmpl[] = "/tmp/bp-test-config-out-XXXXXX",
         err_tmpl[] = "/tmp/bp-test-config-err-XXXXXX";
    int out = mkstemp(out_tmpl), err = mkstemp(err_tmpl);
    assert_true(out >= 0 && err >= 0);
    unlink(out_tmpl);
    unlink(err_tmpl);
    const char *envp[32];
    size_t n = 0;
    envp[n++] = "PATH=/usr/bin:/bin";
    for (; vars && *vars && n < 31; vars++)
        envp[n++] = *vars;
    envp[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, 1);
        dup2(err, 2);
        execle(daemon_path, daemon_path, cmd, (char *)NULL, (char *const *)envp);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    read_file(out, r->out, sizeof(r->out));
    read_file(err, r->err, sizeof(r->err));
    close(out);
    close(err);
}

static int setup(void **state)
{
    (void)state;
    daemon_path = getenv("BP_BATTLEPASSD");
    if (!daemon_path || access(daemon_path, X_OK) != 0) {
        if (getenv("BP_REQUIRE_SERVICES"))
            fail_msg("BP_BATTLEPASSD is not an executable");
        daemon_path = NULL;
    }
    return 0;
}

#define SKIP_WITHOUT_DAEMON()                                                                      \
    do {                                                                                           \
        if (!daemon_path)                                                                          \
            skip();                                                                                \
    } while (0)

/* One bad setting: the variable it sets and what the error line must name. */
typedef struct {
    const char *command;
    const char *var;      /* NAME=value */
    const char *names;    /* the error line holds this */
    const char *secret;   /* must not appear anywhere (NULL: none) */
    const char *extra[2]; /* other variables needed to reach the check */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"config", "BP_KAFKA_SESSION_TIMEOUT_MS=10", "BP_KAFKA_SESSION_TIMEOUT_MS=10", NULL, {NULL}},
    {"config", "BP_BATCH_MAX_EVENTS=0", "BP_BATCH_MAX_EVENTS=0", NULL, {NULL}},
    {"config", "BP_BATCH_MAX_EVENTS=100001", "BP_BATCH_MAX_EVENTS", NULL, {NULL}},
    {"config", "BP_BATCH_MAX_EVENTS=12abc", "not an integer", NULL, {NULL}},
    {"config", "BP_BATCH_MAX_WAIT_MS=0", "BP_BATCH_MAX_WAIT_MS", NULL, {NULL}},
    {"config", "BP_CACHE_TTL_S=-1", "BP_CACHE_TTL_S", NULL, {NULL}},
    {"config", "BP_HTTP_THREADS=65", "BP_HTTP_THREADS", NULL, {NULL}},
    {"config", "BP_HTTP_LISTEN=nope", "BP_HTTP_LISTEN", NULL, {NULL}},
    {"config", "BP_HTTP_LISTEN=127.0.0.1:99999", "BP_HTTP_LISTEN", NULL, {NULL}},
    {"config", "BP_KAFKA_BOOTSTRAP=", "BP_KAFKA_BOOTSTRAP", NULL, {NULL}},
    {"config", "BP_PG_DSN=", "BP_PG_DSN", NULL, {NULL}},
    {"config", "BP_REDIS_URL=http://:hunter2hunter2@cache:6379", "BP_REDIS_URL", "hunter2", {NULL}},
    {"config", "BP_LOG_LEVEL=loud", "BP_LOG_LEVEL", NULL, {NULL}},
    {"config", "BP_JWT_ALG=none", "BP_JWT_ALG", NULL, {NULL}},
    {"config", "BP_JWT_ALG=RS256", "BP_JWT_RS256_PUBLIC_KEY_FILE", NULL, {NULL}},
    {"config",
     "BP_JWT_RS256_PUBLIC_KEY_FILE=/nonexistent/key.pem",
     "BP_JWT_RS256_PUBLIC_KEY_FILE",
     NULL,
     {"BP_JWT_ALG=RS256", NULL}},
    {"serve", "BP_JWT_HS256_SECRET=tooshort-s3cr3t", "BP_JWT_HS256_SECRET", "s3cr3t", {NULL}},
};

static void test_bad_settings_stop_the_program(void **state)
{
    (void)state;
    SKIP_WITHOUT_DAEMON();
    run_t *r = malloc(sizeof(*r));
    assert_non_null(r);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        const char *vars[4] = {c->var, c->extra[0], c->extra[1], NULL};
        run(c->command, vars, r);
        if (r->status != EX_CONFIG || !strstr(r->err, "configuration error") ||
            !strstr(r->err, c->names) || strchr(r->err, '\n') != strrchr(r->err, '\n'))
            fail_msg("%s %s: exit %d, stderr \"%s\" (want exit %d and one line naming %s)",
                     c->command, c->var, r->status, r->err, EX_CONFIG, c->names);
        if (c->secret && (strstr(r->err, c->secret) || strstr(r->out, c->secret)))
            fail_msg("%s %s: the secret was echoed: \"%s\"", c->command, c->var, r->err);
    }
    free(r);
}

static void test_good_settings_start(void **state)
{
    (void)state;
    SKIP_WITHOUT_DAEMON();
    run_t *r = malloc(sizeof(*r));
    assert_non_null(r);
    const char *vars[] = {"BP_BATCH_MAX_EVENTS=100000", "BP_HTTP_LISTEN=127.0.0.1:1",
                          "BP_REDIS_URL=redis://:hunter2hunter2@cache:6379/2", NULL};
    run("config", vars, r);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "BP_BATCH_MAX_EVENTS=100000"));
    assert_null(strstr(r->out, "hunter2")); /* printed configuration hides secrets too */
    free(r);
}

static void test_unknown_variables(void **state)
{
    (void)state;
    SKIP_WITHOUT_DAEMON();
    run_t *r = malloc(sizeof(*r));
    assert_non_null(r);
    /* A misspelt setting is warned about, by name; what the developer scripts export for
     * their own use (scripts/services, .run/env) is not. */
    const char *vars[] = {"BP_BACTH_MAX_EVENTS=5",  "BP_PG_SETTINGS=shared_buffers=1GB",
                          "BP_BUILD_DIR=/tmp",      "BP_DEVBROKER_PARTITIONS=48",
                          "BP_HTTP_URL=http://x:1", "BP_DEVBROKER_CONTROL=/tmp/sock",
                          "BP_RUN_DIR=/tmp",        NULL};
    run("config", vars, r);
    assert_int_equal(r->status, 0);
    const char *warn = strstr(r->out, "unknown configuration variable ignored");
    if (!warn || !strstr(warn, "BP_BACTH_MAX_EVENTS"))
        fail_msg("no warning naming BP_BACTH_MAX_EVENTS: \"%s\"", r->out);
    static const char *const quiet[] = {"\"BP_PG_SETTINGS\"",          "\"BP_BUILD_DIR\"",
                                        "\"BP_DEVBROKER_PARTITIONS\"", "\"BP_HTTP_URL\"",
                                        "\"BP_DEVBROKER_CONTROL\"",    "\"BP_RUN_DIR\""};
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        if (strstr(r->out, quiet[i]))
            fail_msg("warned about %s: \"%s\"", quiet[i], r->out);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_settings_stop_the_program),
        cmocka_unit_test(test_good_settings_start),
        cmocka_unit_test(test_unknown_variables),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
