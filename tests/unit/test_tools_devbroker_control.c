/** @file Unit tests of the devbroker control commands, run against an in-process mock
 *  cluster: each command line and the reply it must get. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tools/devbroker_control.h"

typedef struct {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
} cluster_t;

static int setup(void **state)
{
    static cluster_t c;
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)) != RD_KAFKA_CONF_OK)
        return -1;
    c.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (c.rk == NULL)
        return -1;
    c.mc = rd_kafka_mock_cluster_new(c.rk, 3);
    if (c.mc == NULL || rd_kafka_mock_topic_create(c.mc, "t", 2, 3) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    *state = &c;
    return 0;
}

static int teardown(void **state)
{
    cluster_t *c = *state;
    rd_kafka_mock_cluster_destroy(c->mc);
    rd_kafka_destroy(c->rk);
    return 0;
}

static void test_commands(void **state)
{
    cluster_t *c = *state;
    static const struct {
        const char *line;
        const char *reply; /* expected prefix */
    } cases[] = {
        {"ping", "ok pong brokers=3"},
        {"help", "ok ping | help | broker down ID"},
        {"broker down 2", "ok broker down"},
        {"broker up 2", "ok broker up"},
        {"  broker   down 3  ", "ok broker down"},
        {"broker up 3", "ok broker up"},
        {"broker down 0", "error no broker '0'"},
        {"broker down 4", "error no broker '4'"},
        {"broker down x", "error no broker 'x'"},
        {"broker up", "error usage: broker up ID"},
        {"broker up 1 2", "error usage: broker up ID"},
        {"broker sideways 1", "error unknown command 'broker'"},
        {"broker rtt 1 250", "ok broker rtt set"},
        {"broker rtt 1 0", "ok broker rtt set"},
        {"broker rtt 1 -5", "error rtt must be 0..600000 ms"},
        {"broker error 1 Fetch NOT_LEADER_FOR_PARTITION", "ok broker error pushed"},
        {"broker error 2 fetch _transport 100", "ok broker error pushed"},
        {"broker error 2 Fetch NO_SUCH_ERROR", "error unknown error 'NO_SUCH_ERROR'"},
        {"broker error 2 NoSuchApi _TRANSPORT", "error unknown request type 'NoSuchApi'"},
        {"errors Produce NOT_LEADER_FOR_PARTITION REQUEST_TIMED_OUT 6", "ok 3 errors pushed"},
        {"errors 0 _TRANSPORT", "ok 1 errors pushed"},
        {"errors Produce", "error usage: errors API ERR [ERR...]"},
        {"errors Produce 99999", "error unknown error '99999'"},
        {"clear Produce", "ok errors cleared"},
        {"clear Fetch", "ok errors cleared"},
        {"leader t 1 2", "ok leader set"},
        {"leader t 1 9", "error no broker '9'"},
        {"leader t x 2", "error bad partition 'x'"},
        {"coordinator g1 2", "ok coordinator set"},
        {"topic-error t UNKNOWN_TOPIC_OR_PART", "ok topic error set"},
        {"topic-error t NO_ERROR", "ok topic error set"},
        {"", "error empty command"},
        {"   ", "error empty command"},
        {"reboot", "error unknown command 'reboot'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char reply[DEVBROKER_CONTROL_LINE_MAX];
        int rc = devbroker_control_exec(c->mc, 3, cases[i].line, reply, sizeof(reply));
        if (strncmp(reply, cases[i].reply, strlen(cases[i].reply)) != 0)
            fail_msg("'%s': got '%s', want '%s...'", cases[i].line, reply, cases[i].reply);
        assert_int_equal(rc, strncmp(cases[i].reply, "ok", 2) == 0 ? 0 : -1);
    }
}

static void test_long_line(void **state)
{
    cluster_t *c = *state;
    char line[DEVBROKER_CONTROL_LINE_MAX + 10], reply[64];
    memset(line, 'a', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    assert_int_equal(devbroker_control_exec(c->mc, 3, line, reply, sizeof(reply)), -1);
    assert_string_equal(reply, "error line too long");
    /* a reply buffer too small for the reply is cut, never overrun */
    char tiny[8];
    assert_int_equal(devbroker_control_exec(c->mc, 3, "help", tiny, sizeof(tiny)), 0);
    assert_string_equal(tiny, "ok ping");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_long_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
