/** @file devbroker control interface: fault injection into the mock cluster, one text line
 *  per command over a Unix stream socket (protocol in docs/faults.md). */
#ifndef BP_DEVBROKER_CONTROL_H
#define BP_DEVBROKER_CONTROL_H

#include <signal.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/** Longest command or reply line, newline included. */
#define DEVBROKER_CONTROL_LINE_MAX 1024

/**
 * Run one command line (no trailing newline needed) against @p mc, a cluster of brokers
 * 1..@p brokers, and write the one-line reply ("ok ..." or "error ...", no newline) to
 * @p reply. Never fails as a function: a bad command is an "error" reply.
 * @return 0 when the reply is "ok", -1 otherwise.
 */
int devbroker_control_exec(rd_kafka_mock_cluster_t *mc, int brokers, const char *line, char *reply,
                           size_t reply_len);

/**
 * Serve the control socket at @p path until *@p stop becomes non-zero: accept clients, read
 * their lines, answer each with devbroker_control_exec. Waits with ppoll() under
 * @p wait_mask, so the signals it unblocks interrupt the wait.
 * @return 0 on a clean stop, -1 when the socket cannot be created (message on stderr).
 *         The socket file is removed on return.
 */
int devbroker_control_serve(rd_kafka_mock_cluster_t *mc, int brokers, const char *path,
                            const sigset_t *wait_mask, volatile sig_atomic_t *stop);

/**
 * Client side: send the words @p argv[0..argc) joined by spaces as one command to the
 * socket at @p path and print the reply on stdout.
 * @return 0 when the reply is "ok", 1 when it is "error", 2 when the socket cannot be
 *         reached (message on stderr).
 */
int devbroker_control_send(const char *path, int argc, char **argv);

#endif
