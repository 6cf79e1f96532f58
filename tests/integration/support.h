/** @file Helpers shared by the integration tests: environment, a private database, the
 *  daemon as a child process, Kafka produce/consume, HTTP GET, JWT minting, and the claim
 *  helpers (SQL on the test database, progress rows, claim rows, RewardGrant events). */
#ifndef BP_IT_SUPPORT_H
#define BP_IT_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "core/event.h"
#include "core/season.h"
#include "store/pg.h"

/** Services of scripts/services, read from the environment (.run/test/env). */
typedef struct {
    const char *bootstrap;
    const char *pg_dsn; /**< server DSN (database battlepass) */
    const char *redis_url;
    const char *secret;
    const char *daemon; /**< path of battlepassd */
    const char *source_dir;
    char db_dsn[512]; /**< DSN of this test's own database */
    char db_name[64];
    uint16_t http_port;
} it_env_t;

/**
 * Read the environment. @return true when the services are there; false (and a message on
 * stderr) when not: the caller skips, or fails when BP_REQUIRE_SERVICES=1.
 */
bool it_env_load(it_env_t *env, const char *test_name, uint16_t http_port);

/** Create (drop first) this test's database, run `battlepassd migrate` on it and, unless
 *  @p season_file is NULL, import it with --starts-now. @return true on success. */
bool it_db_prepare(it_env_t *env, const char *season_file);

/** Import one more season file into the test database (`battlepassd season import`).
 *  @return true on success. */
bool it_season_import(const it_env_t *env, const char *path, bool starts_now);

/**
 * Write a season file derived from the sample season to @p path: its id replaced by
 * @p id, its window by [now + @p start_offset_ms, + @p duration_ms) unless both are 0, and
 * the members of @p extra_json (a JSON object text, e.g. "{\"autoClaim\":true}") set on
 * top. @return true on success.
 */
bool it_season_write(const it_env_t *env, const char *path, const char *id, int64_t start_offset_ms,
                     int64_t duration_ms, const char *extra_json);

/** Run one SQL query on the test database; @return its first value as an integer
 *  (-1 on error). */
long long it_sql_int(const it_env_t *env, const char *sql);

/** Start `battlepassd serve` with the test database, its HTTP port and @p group.
 *  Extra "KEY=value" settings may be given in @p extra (NULL-terminated, may be NULL).
 *  stdout/stderr go to @p log_path. @return the pid, or -1. */
pid_t it_daemon_start(const it_env_t *env, const char *group, const char *const *extra,
                      const char *log_path);
/** it_daemon_start, then wait (15 s) until it answers on env->http_port; on failure the
 *  daemon is killed and a message names @p log_path. @return the pid, or -1. */
pid_t it_daemon_up(const it_env_t *env, const char *group, const char *const *extra,
                   const char *log_path);
/** Stop *@p pid (if > 0) with SIGTERM and set it to -1. @return true when it exited 0 or
 *  there was nothing to stop; else false, with the status printed. */
bool it_daemon_down(pid_t *pid);

/** Send @p sig and wait up to @p timeout_ms for the exit. @return exit status (0..255),
 *  128+signal when killed by a signal, -1 on timeout. */
int it_daemon_stop(pid_t pid, int sig, int timeout_ms);
/** Wait until GET /health answers 200, at most @p timeout_ms. */
bool it_http_wait(uint16_t port, int timeout_ms);

/** A Kafka producer for test input. */
typedef struct it_producer it_producer_t;
it_producer_t *it_producer_new(const it_env_t *env);
/** Produce one XpEvent encoded with the project's codec (schemas/avro). */
void it_produce_xp(it_producer_t *p, const bp_xp_event_t *ev);
/** Produce raw bytes with a key. */
void it_produce_raw(it_producer_t *p, const char *topic, const char *key, const void *buf,
                    size_t len);
void it_producer_destroy(it_producer_t *p); /**< flushes first */

/** A message read back from a topic. */
typedef struct {
    char *key;
    void *value;
    size_t len;
    char *error_header; /**< DLQ header `error`, or NULL */
    char *source_offset;
} it_msg_t;

/** Read every message currently in @p topic (all partitions, beginning to end).
 *  @return the count; *out is malloc'd (free with it_msgs_free). */
size_t it_consume_all(const it_env_t *env, const char *topic, it_msg_t **out);
void it_msgs_free(it_msg_t *m, size_t n);

/**
 * Read battlepass.level-ups until it holds every id of @p want (sorted, distinct) among the
 * LevelUp events of players whose id starts with @p prefix, or @p timeout_ms passes.
 * Each event is checked for consistency (previousLevel + 1 == newLevel, key == playerId).
 * @return the number of distinct ids seen for the prefix; *unexpected counts ids seen that
 *         are not in @p want.
 */
size_t it_levelups_wait(const it_env_t *env, const char *prefix, char **want, size_t n_want,
                        int timeout_ms, size_t *unexpected);

/** Build the sorted expected LevelUp ids for players @p names with @p totals. */
char **it_levelups_expected(const bp_season_t *s, const char *season_id, char **names,
                            const int64_t *totals, size_t n_players, size_t *n_out);
void it_strv_free(char **v, size_t n);

/** GET @p path on the daemon with an optional bearer token. @return HTTP status, or -1.
 *  The body (NUL-terminated) goes to @p body when not NULL. */
int it_http_get(uint16_t port, const char *path, const char *token, char *body, size_t body_len);

/**
 * Send one request with an optional bearer token, extra header line (e.g.
 * "Idempotency-Key: k1", without CRLF) and JSON body. @return HTTP status, or -1.
 * The response body goes to @p out (NUL-terminated) and, when @p headers is not NULL, the
 * response's header block to @p headers.
 */
int it_http(uint16_t port, const char *method, const char *path, const char *token,
            const char *extra_header, const char *body, char *out, size_t out_len, char *headers,
            size_t headers_len);

/** Read a response from @p fd until the peer closes it (at most 1 MiB; @p fd stays open).
 *  @return its HTTP status, or -1; body and header block as it_http gives them. */
int it_http_read(int fd, char *out, size_t out_len, char *headers, size_t headers_len);

/** Copy the path template @p tmpl into @p out with {p} replaced by @p player and {s} by
 *  @p season_id (truncated to @p len). */
void it_path_expand(char *out, size_t len, const char *tmpl, const char *player,
                    const char *season_id);

/** Mint an HS256 token. @p exp_offset_s relative to now; @p sub or @p scope may be NULL
 *  to leave the claim out. @return a malloc'd string. */
char *it_jwt(const char *secret, const char *sub, const char *scope, long exp_offset_s);

/** Load a season definition file into @p s (for computing expected levels). */
bool it_season_load(const char *path, bp_season_t *s);

/**
 * Inject a fault into the services of scripts/services: runs `scripts/services fault WHAT`
 * (@p what is split on spaces, e.g. "pg-stop", "redis-start", "broker broker down 2",
 * "broker errors Fetch NOT_LEADER_FOR_PARTITION", "broker clear Fetch"; see docs/faults.md)
 * from $BP_SOURCE_DIR, with the caller's stdout and stderr. Needs the environment that
 * scripts/test exports (BP_RUN_DIR, BP_PG_PORT, BP_REDIS_PORT; BP_BUILD_DIR defaults to
 * the directory of $BP_BATTLEPASSD): without BP_RUN_DIR nothing runs, since the script's
 * defaults would reach the developer's own services.
 * @return true when the command exited 0; false otherwise (with a message on stderr).
 */
bool it_fault(const char *what);

/** Path of the sample season (schemas/seasons/sample-season.json) into @p buf. */
void it_sample_season_path(const it_env_t *env, char *buf, size_t len);

/** A prefix for this run's player ids, "<tag><pid>-<random>-", into @p buf (seeds rand()). */
void it_run_prefix(char *buf, size_t len, const char *tag);

/** For tests that drive the store directly: connect @p pg (the connection under test) and
 *  @p db (the test's own view) to the test database and load its seasons into @p seasons.
 *  @return true on success; false with a message on stderr (close with it_store_close). */
bool it_store_open(const it_env_t *env, bp_pg_t **pg, bp_season_list_t *seasons, PGconn **db);
/** Undo it_store_open (also a partial one). */
void it_store_close(bp_pg_t *pg, bp_season_list_t *seasons, PGconn *db);

/* ---- For cmocka tests: the functions below fail the calling test on error. ---- */

/** Connect to the test database (for a group setup: no test runs yet). @return the
 *  connection (the caller's, PQfinish), or NULL with the error on stderr. */
PGconn *it_pg_connect(const it_env_t *env);

/** Run SQL built from @p fmt on @p db (ids inlined are restricted to [A-Za-z0-9._:@-]).
 *  @return the result (the caller's, PQclear); fails the test when its status is not
 *  @p want. */
PGresult *it_pg_query(PGconn *db, ExecStatusType want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** @return the first value of the query as an integer (0 when it has no row or is NULL). */
long long it_pg_int(PGconn *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Run a command (PGRES_COMMAND_OK). */
void it_pg_exec(PGconn *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Set @p player's progress in @p s: @p xp, all earned (so total = earned + paid holds),
 *  and the stored level @p level (0: the level of the XP); inserted or replaced. */
void it_progress_set(PGconn *db, const bp_season_t *s, const char *player, int64_t xp,
                     int32_t level);

/** The rows claims write. */
typedef struct {
    long long claims;   /**< reward_claims */
    long long audit;    /**< audit_log */
    long long outbox;   /**< outbox rows keyed by the player (of @p topic when given) */
    long long progress; /**< player_progress */
} it_claim_rows_t;

/** Count the rows of @p player, or of every player whose id starts with @p player when
 *  @p prefix; outbox rows of @p topic only unless it is NULL. */
it_claim_rows_t it_claim_rows(PGconn *db, const char *player, bool prefix, const char *topic);

/** POST /rewards/{@p player}/claim {"level":@p level,"tier":@p tier} with @p token.
 *  @return the HTTP status (-1 when no answer); the body goes to @p out (may be NULL). */
int it_claim_http(uint16_t port, const char *player, const char *token, int level, const char *tier,
                  char *out, size_t out_len);

/**
 * Wait (up to @p timeout_ms) until the relay has produced and deleted every outbox row
 * keyed @p key, then read the events keyed @p key on battlepass.reward-grants, each decoded
 * with the project's codec and checked to carry the topic's schema id.
 * @return the events as a JSON array (the caller's, json_decref); fails the test when the
 *         outbox does not empty or an event does not decode.
 */
json_t *it_reward_grants(const it_env_t *env, const char *key, int timeout_ms);

/** Milliseconds since the epoch. */
int64_t it_now_ms(void);
/** Sleep @p ms milliseconds. */
void it_sleep_ms(int ms);

#endif
