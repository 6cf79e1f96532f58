/** @file Analytics on real services: XP events, premium passes, claims, claim-all and a level
 *  purchase move the season counters, checked number by number against an oracle computed
 *  here from core/ rules; a past autoClaim season with events on several days (daily and
 *  weekly activity, claim rate 1); GET /stats across both seasons; GET /audit pages and
 *  filters; access rules and bad parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/level.h"
#include "core/reward.h"
#include "core/timefmt.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23189
#define DAY_MS 86400000LL
#define HOUR_MS 3600000LL
#define N_PLAYERS 50
/** Players of the main season beyond the 50 with XP: one created by a premium pass, one by a
 *  claim. */
#define N_ALL (N_PLAYERS + 2)
#define P_NEW_PREMIUM N_PLAYERS
#define P_NEW_CLAIM (N_PLAYERS + 1)
/** Players 0..N_PAST-1 also play the past season. */
#define N_PAST 5
#define MAX_DAYS 64

static it_env_t env;
static bp_season_t season; /* the sample season, active */
static bp_season_t past;   /* ended, autoClaim, late events accepted */
static char past_id[64];
static pid_t daemon_pid = -1;
static char prefix[32];
static char *admin_token, *service_token;

/* ---- the oracle ---- */

typedef struct {
    char id[64];
    int64_t total;  /* XP in the main season (earned + paid) */
    int64_t earned; /* earned XP in the main season */
    bool row;       /* has a progress row in the main season */
    bool premium;
    int64_t claimed;    /* rewards granted in the main season */
    int64_t past_total; /* XP in the past season (0: not played) */
} player_t;

static player_t players[N_ALL];

/* One (season, day) of activity as the oracle counts it. */
typedef struct {
    int64_t day;
    int64_t xp;
    bool active[N_ALL];
} day_t;

typedef struct {
    day_t days[MAX_DAYS];
    size_t n;
} days_t;

static days_t main_days, past_days;

static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
}

static int64_t monday_of(int64_t day)
{
    return day - ((day + 3) % 7 + 7) % 7;
}

static void count_day(days_t *d, int player, int64_t occurred_ms, int64_t xp)
{
    int64_t day = day_of(occurred_ms);
    size_t i = 0;
    while (i < d->n && d->days[i].day != day)
        i++;
    if (i == d->n) {
        assert_true(d->n < MAX_DAYS);
        memset(&d->days[d->n], 0, sizeof(d->days[0]));
        d->days[d->n++].day = day;
    }
    d->days[i].xp += xp;
    d->days[i].active[player] = true;
}

static int64_t active_on(const day_t *d)
{
    int64_t n = 0;
    for (int p = 0; p < N_ALL; p++)
        n += d->active[p];
    return n;
}

/* Distinct players active in the Monday week of @p monday. */
static int64_t active_in_week(const days_t *d, int64_t monday)
{
    bool seen[N_ALL] = {false};
    int64_t n = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (monday_of(d->days[i].day) != monday)
            continue;
        for (int p = 0; p < N_ALL; p++) {
            n += d->days[i].active[p] && !seen[p];
            seen[p] = seen[p] || d->days[i].active[p];
        }
    }
    return n;
}

/* ---- HTTP ---- */

static int call(const char *method, const char *path, const char *token, const char *body,
                json_t **out)
{
    static char text[1 << 20];
    text[0] = '\0';
    int status = it_http(HTTP_PORT, method, path, token, NULL, body, text, sizeof(text), NULL, 0);
    if (out)
        *out = json_loads(text, 0, NULL);
    return status;
}

static int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fprintf(stderr, "%s is not an integer\n", key);
    assert_true(json_is_integer(v));
    return (int64_t)json_integer_value(v);
}

static void expect_ratio(const json_t *o, const char *key, int64_t num, int64_t den)
{
    const json_t *v = json_object_get(o, key);
    double want = den > 0 ? (double)num / (double)den : 0.0;
    assert_true(json_is_number(v));
    if (fabs(json_number_value(v) - want) > 1e-9)
        fprintf(stderr, "%s: got %.12f want %.12f (%lld/%lld)\n", key, json_number_value(v), want,
                (long long)num, (long long)den);
    assert_true(fabs(json_number_value(v) - want) <= 1e-9);
    assert_true(json_number_value(v) >= 0.0 && json_number_value(v) <= 1.0);
}

/* Poll @p sql until it returns @p want (or 120 s). @return the last value. */
static long long wait_sql(const char *sql, long long want)
{
    long long v = -1;
    for (int waited = 0; waited < 120000; waited += 100) {
        if ((v = it_sql_int(&env, sql)) == want)
            break;
        usleep(100000);
    }
    return v;
}

/* ---- setup: seasons, events, premium passes, claims, a purchase ---- */

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "analytics", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    srand((unsigned)(getpid() ^ it_now_ms()));
    snprintf(prefix, sizeof(prefix), "an%d-%04x-", (int)getpid(), (unsigned)rand() & 0xffff);
    /* A past season of its own id: events name it, so events of earlier runs (other ids)
     * never count here. It ended 170 days ago; late events are still applied. */
    snprintf(past_id, sizeof(past_id), "s-an-past-%d-%04x", (int)getpid(),
             (unsigned)rand() & 0xffff);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path) ||
        !it_season_write(&env, "an-past.json", past_id, -200 * DAY_MS, 30 * DAY_MS,
                         "{\"autoClaim\":true,\"grantUnclaimedAtEnd\":false,"
                         "\"lateEventGraceHours\":8000,\"claimWindowHours\":0}") ||
        !it_season_load("an-past.json", &past) || !it_season_import(&env, "an-past.json", false))
        return -1;
    char group[64];
    snprintf(group, sizeof(group), "it-analytics-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "analytics-daemon.log");
    if (daemon_pid < 0)
        return -1;
    admin_token = it_jwt(env.secret, "ops", "admin", 600);
    service_token = it_jwt(env.secret, "economy-service", "service", 600);
    for (int p = 0; p < N_ALL; p++)
        snprintf(players[p].id, sizeof(players[p].id), "%sp%02d", prefix, p);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    free(admin_token);
    free(service_token);
    bp_season_fini(&season);
    bp_season_fini(&past);
    return rc;
}

static void produce(it_producer_t *pr, int player, const char *season_id, int n, int32_t amount,
                    int64_t occurred_ms)
{
    bp_xp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%se%02d-%s-%d", prefix, player,
             season_id[0] ? "past" : "main", n);
    /* Checked: an id that did not fit would be another player's. */
    assert_true(player >= 0 && player < N_ALL);
    int len = snprintf(ev.player_id, sizeof(ev.player_id), "%s", players[player].id);
    assert_true(len > 0 && (size_t)len < sizeof(ev.player_id));
    snprintf(ev.season_id, sizeof(ev.season_id), "%s", season_id);
    snprintf(ev.reason, sizeof(ev.reason), "match_complete");
    ev.amount = amount;
    ev.occurred_at_ms = occurred_ms;
    it_produce_xp(pr, &ev);
}

/* The XP of player @p p in the main season: two reach max level, the rest spread out. */
static int64_t main_total(int p)
{
    if (p < 2)
        return season.xp_total[season.max_level] + 1000 * p + 500;
    return 2000 + ((int64_t)p * 104729) % 150000;
}

/* Produce every event and wait until the worker has applied them all. */
static void produce_all(void)
{
    it_producer_t *pr = it_producer_new(&env);
    size_t n_events = 0;
    for (int p = 0; p < N_PLAYERS; p++) {
        int64_t total = main_total(p);
        int parts = 1 + p % 4 + (p < 2 ? 3 : 0);
        for (int k = 0; k < parts; k++) {
            int64_t amount = k + 1 < parts ? total / parts : total - (parts - 1) * (total / parts);
            int64_t t = it_now_ms();
            produce(pr, p, "", k, (int32_t)amount, t);
            count_day(&main_days, p, t, amount);
            n_events++;
        }
        players[p].total = players[p].earned = total;
        players[p].row = true;
    }
    /* The past season: a few players on several days, one on its very last day. */
    static const struct {
        int player;
        int day;
        int32_t amount;
    } past_events[] = {
        {0, 0, 1500}, {1, 0, 700},  {0, 1, 2500},  {2, 1, 12000}, {3, 2, 300},
        {4, 8, 5000}, {0, 9, 9000}, {3, 15, 4000}, {1, 22, 1200}, {4, 22, 800},
    };
    size_t n_past = sizeof(past_events) / sizeof(past_events[0]);
    for (size_t i = 0; i < n_past + 1; i++) {
        int p = i < n_past ? past_events[i].player : 2;
        int32_t amount = i < n_past ? past_events[i].amount : 6000;
        int64_t t = i < n_past ? past.starts_at_ms + past_events[i].day * DAY_MS + HOUR_MS
                               : past.ends_at_ms - 60000;
        produce(pr, p, past_id, (int)i, amount, t);
        count_day(&past_days, p, t, amount);
        players[p].past_total += amount;
        n_events++;
    }
    it_producer_destroy(pr);

    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%'"
             " AND season_id IS NOT NULL",
             prefix);
    assert_int_equal(wait_sql(sql, (long long)n_events), (long long)n_events);
}

/* POST /premium as the service. */
static void grant_premium(int p, const char *tx, int want_status)
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "/premium/%s", players[p].id);
    snprintf(body, sizeof(body), "{\"transactionId\":\"%s%s\",\"source\":\"purchase\"}", prefix,
             tx);
    assert_int_equal(call("POST", path, service_token, body, NULL), want_status);
    players[p].premium = true;
    players[p].row = true;
}

/* POST /rewards/{p}/claim as the player. */
static void claim(int p, int level, bp_tier_t tier, int want_status)
{
    char *token = it_jwt(env.secret, players[p].id, "player", 600);
    int status = it_claim_http(HTTP_PORT, players[p].id, token, level, bp_tier_str(tier), NULL, 0);
    if (status != want_status)
        fprintf(stderr, "claim %s %d %s: %d, want %d\n", players[p].id, level, bp_tier_str(tier),
                status, want_status);
    assert_int_equal(status, want_status);
    if (status == 200) { /* a refused claim rolls back: no row is created then */
        players[p].claimed += (int64_t)bp_rewards_at(&season, level, tier, NULL, 0);
        players[p].row = true;
    }
    free(token);
}

static int32_t level_of(const bp_season_t *s, int64_t total)
{
    return bp_level_for_xp(s, total).level;
}

/* ---- tests ---- */

static void test_season_analytics(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    produce_all();

    /* Premium: three players with XP, one without a row yet; a replay and a second pass
     * of the same player change nothing. */
    grant_premium(3, "tx-3", 201);
    grant_premium(10, "tx-10", 201);
    grant_premium(20, "tx-20", 201);
    grant_premium(P_NEW_PREMIUM, "tx-new", 201);
    grant_premium(10, "tx-10", 200);
    grant_premium(10, "tx-10b", 201);

    /* Claims: free levels 1 and 2, a premium reward, a player with no row, claim-all. */
    claim(5, 1, BP_TIER_FREE, 200);
    claim(5, 2, BP_TIER_FREE, 200);
    claim(5, 2, BP_TIER_FREE, 409);
    claim(10, 1, BP_TIER_PREMIUM, 200);
    claim(P_NEW_CLAIM, 1, BP_TIER_FREE, 200);
    claim(6, season.max_level, BP_TIER_FREE, 422);
    char path[256];
    snprintf(path, sizeof(path), "/rewards/%s/claim-all", players[3].id);
    assert_int_equal(call("POST", path, service_token, NULL, NULL), 200);
    players[3].claimed += (int64_t)bp_rewards_unlocked(
        &season, 0, level_of(&season, players[3].total), true, NULL, 0);

    /* A level purchase: paid XP moves the level, not the XP counters. */
    int64_t paid = 0;
    assert_int_equal(bp_level_purchase_xp(&season, players[7].total, 3, &paid), BP_OK);
    snprintf(path, sizeof(path), "/progress/%s/levels", players[7].id);
    char body[128];
    snprintf(body, sizeof(body), "{\"count\":3,\"transactionId\":\"%sbuy-7\"}", prefix);
    assert_int_equal(call("POST", path, service_token, body, NULL), 200);
    players[7].total += paid;

    /* The oracle. */
    int64_t enrolled = 0, premium = 0, at_max = 0, unlocked = 0, claimed = 0, xp = 0;
    int64_t per_level[BP_LEVEL_MAX + 1] = {0};
    for (int p = 0; p < N_ALL; p++) {
        if (!players[p].row)
            continue;
        int32_t lv = level_of(&season, players[p].total);
        enrolled++;
        premium += players[p].premium;
        at_max += lv == season.max_level;
        unlocked += (int64_t)bp_rewards_unlocked(&season, 0, lv, players[p].premium, NULL, 0);
        claimed += players[p].claimed;
        xp += players[p].earned;
        per_level[lv]++;
    }
    assert_int_equal(enrolled, N_ALL);
    assert_int_equal(at_max, 2);
    /* The database agrees on what happened (so the counters are checked, not the worker). */
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM reward_claims WHERE season_id = '%s'",
             season.id);
    assert_int_equal(it_sql_int(&env, sql), claimed);
    snprintf(sql, sizeof(sql), "SELECT sum(total_xp) FROM player_progress WHERE season_id = '%s'",
             season.id);
    int64_t all_xp = 0;
    for (int p = 0; p < N_ALL; p++)
        all_xp += players[p].total;
    assert_int_equal(it_sql_int(&env, sql), all_xp);

    json_t *o = NULL;
    snprintf(path, sizeof(path), "/analytics/seasons/%s", season.id);
    assert_int_equal(call("GET", path, admin_token, NULL, &o), 200);
    assert_non_null(o);
    char *dump = json_dumps(o, JSON_COMPACT);
    printf("analytics: %.600s...\n", dump);
    free(dump);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    assert_int_equal(jint(o, "enrolledPlayers"), enrolled);
    assert_int_equal(jint(o, "premiumPlayers"), premium);
    assert_int_equal(premium, 4);
    assert_int_equal(jint(o, "xp"), xp);
    expect_ratio(o, "premiumConversion", premium, enrolled);
    expect_ratio(o, "completion", at_max, enrolled);
    expect_ratio(o, "completionRate", at_max, enrolled);
    expect_ratio(o, "claimRate", claimed, unlocked);
    printf("oracle: enrolled %lld premium %lld at max %lld unlocked %lld claimed %lld xp %lld\n",
           (long long)enrolled, (long long)premium, (long long)at_max, (long long)unlocked,
           (long long)claimed, (long long)xp);

    /* Level distribution: every level with players, summing to enrolled. */
    json_t *dist = json_object_get(o, "levelDistribution"), *it;
    size_t i;
    int64_t sum = 0, levels_with_players = 0;
    json_array_foreach(dist, i, it)
    {
        int64_t lv = jint(it, "level"), n = jint(it, "players");
        assert_true(lv >= 1 && lv <= season.max_level);
        if (n != per_level[lv])
            fprintf(stderr, "level %lld: %lld players, want %lld\n", (long long)lv, (long long)n,
                    (long long)per_level[lv]);
        assert_int_equal(n, per_level[lv]);
        assert_true(i == 0 || lv > jint(json_array_get(dist, i - 1), "level"));
        sum += n;
    }
    for (int lv = 1; lv <= season.max_level; lv++)
        levels_with_players += per_level[lv] > 0;
    assert_int_equal((int64_t)json_array_size(dist), levels_with_players);
    assert_int_equal(sum, enrolled);

    /* Daily: the players with events that day and their XP. */
    json_t *daily = json_object_get(o, "daily");
    assert_int_equal(json_array_size(daily), main_days.n);
    int64_t player_days = 0;
    for (i = 0; i < main_days.n; i++) {
        const day_t *d = &main_days.days[i];
        json_t *row = json_array_get(daily, i);
        char date[32];
        bp_time_format(d->day * DAY_MS, date, sizeof(date));
        date[10] = '\0';
        assert_string_equal(json_string_value(json_object_get(row, "date")), date);
        assert_int_equal(jint(row, "activePlayers"), active_on(d));
        assert_int_equal(jint(row, "xp"), d->xp);
        assert_true(fabs(json_number_value(json_object_get(row, "xpPerActivePlayer")) -
                         (double)d->xp / (double)active_on(d)) < 1e-6);
        player_days += active_on(d);
    }
    int64_t today = day_of(it_now_ms());
    int64_t dau = 0;
    for (i = 0; i < main_days.n; i++)
        if (main_days.days[i].day == today)
            dau = active_on(&main_days.days[i]);
    assert_int_equal(jint(o, "dailyActivePlayers"), dau);
    assert_int_equal(jint(o, "weeklyActivePlayers"), active_in_week(&main_days, monday_of(today)));
    assert_true(fabs(json_number_value(json_object_get(o, "xpVelocity")) -
                     (double)xp / (double)player_days) < 1e-6);
    json_t *weekly = json_object_get(o, "weekly");
    assert_true(json_array_size(weekly) >= 1);
    json_t *last = json_array_get(weekly, json_array_size(weekly) - 1);
    char monday[32];
    bp_time_format(monday_of(main_days.days[main_days.n - 1].day) * DAY_MS, monday, sizeof(monday));
    monday[10] = '\0';
    assert_string_equal(json_string_value(json_object_get(last, "weekStart")), monday);
    json_decref(o);

    /* Unknown season: 404; only admins. */
    assert_int_equal(call("GET", "/analytics/seasons/no-such-season", admin_token, NULL, NULL),
                     404);
    char *player = it_jwt(env.secret, players[0].id, "player", 600);
    static const struct {
        const char *what;
        int token; /* 0 none, 1 service, 2 player */
        int want;
    } access[] = {{"no token", 0, 401}, {"service", 1, 403}, {"player", 2, 403}};
    for (i = 0; i < sizeof(access) / sizeof(access[0]); i++) {
        const char *tok = access[i].token == 1   ? service_token
                          : access[i].token == 2 ? player
                                                 : NULL;
        int st = call("GET", path, tok, NULL, NULL);
        if (st != access[i].want)
            fprintf(stderr, "analytics with %s: %d\n", access[i].what, st);
        assert_int_equal(st, access[i].want);
    }
    free(player);
}

static void test_past_season(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char path[256];
    json_t *o = NULL;
    snprintf(path, sizeof(path), "/analytics/seasons/%s", past_id);
    assert_int_equal(call("GET", path, admin_token, NULL, &o), 200);
    int64_t enrolled = 0, unlocked = 0, xp = 0, player_days = 0;
    for (int p = 0; p < N_PAST; p++) {
        enrolled++;
        unlocked += (int64_t)bp_rewards_unlocked(&past, 0, level_of(&past, players[p].past_total),
                                                 false, NULL, 0);
        xp += players[p].past_total;
    }
    assert_int_equal(jint(o, "enrolledPlayers"), enrolled);
    assert_int_equal(jint(o, "premiumPlayers"), 0);
    assert_int_equal(jint(o, "xp"), xp);
    /* autoClaim: everything unlocked was granted by the worker, in the batches. */
    expect_ratio(o, "claimRate", unlocked, unlocked);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM reward_claims WHERE season_id = '%s' AND source = 'auto'",
             past_id);
    assert_int_equal(it_sql_int(&env, sql), unlocked);

    /* Days in order, each with its players and XP. */
    json_t *daily = json_object_get(o, "daily");
    assert_int_equal(json_array_size(daily), past_days.n);
    for (size_t i = 0; i < past_days.n; i++) {
        const day_t *d = &past_days.days[i];
        json_t *row = json_array_get(daily, i);
        char date[32];
        bp_time_format(d->day * DAY_MS, date, sizeof(date));
        date[10] = '\0';
        assert_string_equal(json_string_value(json_object_get(row, "date")), date);
        assert_int_equal(jint(row, "activePlayers"), active_on(d));
        assert_int_equal(jint(row, "xp"), d->xp);
        player_days += active_on(d);
    }
    /* Weeks (Monday first), distinct players in each. */
    json_t *weekly = json_object_get(o, "weekly"), *w;
    size_t i;
    int64_t weeks = 0;
    for (int64_t m = monday_of(past_days.days[0].day);
         m <= monday_of(past_days.days[past_days.n - 1].day); m += 7)
        weeks += active_in_week(&past_days, m) > 0;
    assert_int_equal((int64_t)json_array_size(weekly), weeks);
    json_array_foreach(weekly, i, w)
    {
        int64_t ms;
        char stamp[40];
        snprintf(stamp, sizeof(stamp), "%sT00:00:00Z",
                 json_string_value(json_object_get(w, "weekStart")));
        assert_int_equal(bp_time_parse(stamp, &ms), BP_OK);
        assert_int_equal(monday_of(day_of(ms)), day_of(ms));
        assert_int_equal(jint(w, "activePlayers"), active_in_week(&past_days, day_of(ms)));
    }
    /* Ended: "today" is its last day (one player there). */
    int64_t last = day_of(past.ends_at_ms - 1);
    assert_int_equal(past_days.days[past_days.n - 1].day, last);
    assert_int_equal(jint(o, "dailyActivePlayers"), active_on(&past_days.days[past_days.n - 1]));
    assert_int_equal(jint(o, "weeklyActivePlayers"), active_in_week(&past_days, monday_of(last)));
    assert_true(fabs(json_number_value(json_object_get(o, "xpVelocity")) -
                     (double)xp / (double)player_days) < 1e-6);
    json_decref(o);
}

/* Add @p d to column @p col of the row of shard @p shard of past_id (creating it) in
 * @p table, whose key past the season is @p key_col = @p key_val (NULL: none), by SQL. */
static void shard_add(const char *table, const char *key_col, const char *key_val, const char *col,
                      int shard, long long d)
{
    char sql[512], cols[64] = "", vals[64] = "";
    if (key_col) {
        snprintf(cols, sizeof(cols), "%s, ", key_col);
        snprintf(vals, sizeof(vals), "%s, ", key_val);
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s AS t (season_id, %sshard, %s) VALUES ('%s', %s%d, %lld)"
             " ON CONFLICT (season_id, %sshard) DO UPDATE SET %s = t.%s + EXCLUDED.%s"
             " RETURNING 1",
             table, cols, col, past_id, vals, shard, d, cols, col, col, col);
    assert_int_equal(it_sql_int(&env, sql), 1);
}

/* Counters live in shards (migration 008), which may go below zero: the report is their
 * sum. Deltas that cancel out across shards change nothing; a level whose shards sum to
 * players appears once with that sum. Everything is undone at the end. */
static void test_counter_shards(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char path[256], day_key[32], week_key[32];
    json_t *before = NULL, *after = NULL;
    snprintf(path, sizeof(path), "/analytics/seasons/%s", past_id);
    assert_int_equal(call("GET", path, admin_token, NULL, &before), 200);

    int64_t day = past_days.days[0].day;
    snprintf(day_key, sizeof(day_key), "%lld", (long long)day);
    snprintf(week_key, sizeof(week_key), "%lld", (long long)((day + 3) / 7));
    for (int sign = 1; sign >= -1; sign -= 2) { /* apply, then undo */
        /* cancelling pairs across shards 13 and 14 */
        shard_add("season_stats", NULL, NULL, "xp", 13, sign * 500);
        shard_add("season_stats", NULL, NULL, "xp", 14, -sign * 500);
        shard_add("season_daily", "day", day_key, "active", 13, sign * 3);
        shard_add("season_daily", "day", day_key, "active", 14, -sign * 3);
        shard_add("season_weekly", "week", week_key, "active", 13, sign * 2);
        shard_add("season_weekly", "week", week_key, "active", 14, -sign * 2);
        shard_add("season_level_counts", "level", "2", "players", 13, sign * 7);
        shard_add("season_level_counts", "level", "2", "players", 14, -sign * 7);
        if (sign == 1) {
            assert_int_equal(call("GET", path, admin_token, NULL, &after), 200);
            if (!json_equal(before, after)) {
                char *a = json_dumps(before, JSON_COMPACT), *b = json_dumps(after, JSON_COMPACT);
                fail_msg("cancelling shard rows changed the report:\n%s\n%s", a, b);
            }
            json_decref(after);
            /* 4 - 1 players at a level nobody reached: one entry of 3 */
            shard_add("season_level_counts", "level", "99", "players", 13, 4);
            shard_add("season_level_counts", "level", "99", "players", 14, -1);
            assert_int_equal(call("GET", path, admin_token, NULL, &after), 200);
            json_t *levels = json_object_get(after, "levelDistribution"), *l;
            size_t i;
            int seen = 0;
            json_array_foreach(levels, i, l)
            {
                if (jint(l, "level") == 99) {
                    seen++;
                    assert_int_equal(jint(l, "players"), 3);
                }
            }
            assert_int_equal(seen, 1);
            json_decref(after);
            shard_add("season_level_counts", "level", "99", "players", 13, -4);
            shard_add("season_level_counts", "level", "99", "players", 14, 1);
        }
    }
    assert_int_equal(call("GET", path, admin_token, NULL, &after), 200);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
}

static void test_player_stats(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char path[256], sql[512];
    json_t *o = NULL;
    for (int p = 0; p < 4; p++) { /* 3: premium and claim-all in the main season */
        snprintf(path, sizeof(path), "/stats/%.64s", players[p].id);
        char *own = it_jwt(env.secret, players[p].id, "player", 600);
        assert_int_equal(call("GET", path, own, NULL, &o), 200);
        free(own);
        snprintf(
            sql, sizeof(sql),
            "SELECT count(*) FROM reward_claims WHERE player_id = '%.64s' AND season_id = '%.64s'",
            players[p].id, past_id);
        int64_t past_claimed = it_sql_int(&env, sql);
        assert_int_equal(past_claimed,
                         (int64_t)bp_rewards_unlocked(
                             &past, 0, level_of(&past, players[p].past_total), false, NULL, 0));
        assert_string_equal(json_string_value(json_object_get(o, "playerId")), players[p].id);
        assert_int_equal(jint(o, "seasonsPlayed"), 2);
        assert_int_equal(jint(o, "totalXp"), players[p].total + players[p].past_total);
        assert_int_equal(jint(o, "rewardsClaimed"), players[p].claimed + past_claimed);
        assert_int_equal(jint(o, "premiumSeasons"), players[p].premium ? 1 : 0);
        json_t *seasons = json_object_get(o, "seasons");
        assert_int_equal(json_array_size(seasons), 2);
        /* Oldest first: the past season, then the sample season. */
        json_t *a = json_array_get(seasons, 0), *b = json_array_get(seasons, 1);
        assert_string_equal(json_string_value(json_object_get(a, "seasonId")), past_id);
        assert_int_equal(jint(a, "totalXp"), players[p].past_total);
        assert_int_equal(jint(a, "highestLevel"), level_of(&past, players[p].past_total));
        assert_int_equal(jint(a, "rewardsClaimed"), past_claimed);
        assert_true(json_is_false(json_object_get(a, "premium")));
        assert_string_equal(json_string_value(json_object_get(b, "seasonId")), season.id);
        assert_int_equal(jint(b, "totalXp"), players[p].total);
        assert_int_equal(jint(b, "level"), level_of(&season, players[p].total));
        assert_int_equal(jint(b, "rewardsClaimed"), players[p].claimed);
        assert_true(json_is_boolean(json_object_get(b, "premium")) &&
                    json_is_true(json_object_get(b, "premium")) == players[p].premium);
        json_decref(o);
    }
    /* A stranger: zeros. Another player's stats: 403; service and admin may read. */
    snprintf(path, sizeof(path), "/stats/%snobody", prefix);
    assert_int_equal(call("GET", path, service_token, NULL, &o), 200);
    assert_int_equal(jint(o, "seasonsPlayed"), 0);
    assert_int_equal(jint(o, "totalXp"), 0);
    assert_int_equal(json_array_size(json_object_get(o, "seasons")), 0);
    json_decref(o);
    char *other = it_jwt(env.secret, players[1].id, "player", 600);
    snprintf(path, sizeof(path), "/stats/%s", players[0].id);
    assert_int_equal(call("GET", path, other, NULL, NULL), 403);
    assert_int_equal(call("GET", path, admin_token, NULL, NULL), 200);
    assert_int_equal(call("GET", path, NULL, NULL, NULL), 401);
    free(other);
}

/* GET /audit pages (limit @p limit, @p query "&playerId=..." or "") until the end.
 * @return the ids seen, in order (malloc'd), their count in *n; checks every page. */
static int64_t *audit_all(const char *query, int limit, size_t *n)
{
    int64_t *ids = NULL;
    char path[512], cursor[32] = "";
    *n = 0;
    for (int pages = 0; pages < 10000; pages++) {
        json_t *o = NULL;
        snprintf(path, sizeof(path), "/audit?limit=%d%s%s%s", limit, query,
                 cursor[0] ? "&cursor=" : "", cursor);
        assert_int_equal(call("GET", path, admin_token, NULL, &o), 200);
        json_t *items = json_object_get(o, "items"), *it;
        size_t i;
        assert_true(json_array_size(items) <= (size_t)limit);
        ids = realloc(ids, (*n + json_array_size(items) + 1) * sizeof(*ids));
        json_array_foreach(items, i, it)
        {
            int64_t id = jint(it, "id");
            assert_true(*n == 0 || id < ids[*n - 1]);
            ids[(*n)++] = id;
            assert_non_null(json_string_value(json_object_get(it, "at")));
            assert_non_null(json_string_value(json_object_get(it, "actor")));
            assert_true(json_is_object(json_object_get(it, "detail")));
        }
        json_t *next = json_object_get(o, "nextCursor");
        assert_non_null(next); /* present, null on the last page */
        if (json_is_null(next)) {
            json_decref(o);
            break;
        }
        assert_int_equal(json_array_size(items), (size_t)limit);
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(o);
    }
    return ids;
}

static void test_audit(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char q[256], sql[256];
    size_t n;

    /* Everything, 7 at a time, newest first: the same ids as the table. */
    int64_t *ids = audit_all("", 7, &n);
    assert_int_equal((long long)n, it_sql_int(&env, "SELECT count(*) FROM audit_log"));
    assert_int_equal(ids[0], it_sql_int(&env, "SELECT max(id) FROM audit_log"));
    assert_int_equal(ids[n - 1], it_sql_int(&env, "SELECT min(id) FROM audit_log"));
    free(ids);

    /* One player: the two claims of player 5. */
    snprintf(q, sizeof(q), "&playerId=%s", players[5].id);
    ids = audit_all(q, 1, &n);
    assert_int_equal(n, 2);
    free(ids);
    json_t *o = NULL, *it;
    char path[320];
    snprintf(path, sizeof(path), "/audit?playerId=%s", players[5].id);
    assert_int_equal(call("GET", path, admin_token, NULL, &o), 200);
    assert_true(json_is_null(json_object_get(o, "nextCursor")));
    it = json_array_get(json_object_get(o, "items"), 0); /* newest: level 2 */
    assert_string_equal(json_string_value(json_object_get(it, "action")), "claim");
    assert_string_equal(json_string_value(json_object_get(it, "actor")), players[5].id);
    assert_string_equal(json_string_value(json_object_get(it, "playerId")), players[5].id);
    assert_string_equal(json_string_value(json_object_get(it, "seasonId")), season.id);
    assert_int_equal(jint(it, "level"), 2);
    assert_string_equal(json_string_value(json_object_get(it, "tier")), "free");
    assert_non_null(json_string_value(json_object_get(it, "rewardId")));
    assert_non_null(strstr(json_string_value(json_object_get(it, "grantId")), players[5].id));
    json_decref(o);

    /* Player and season: claim-all rows and the premium pass of player 3. */
    snprintf(q, sizeof(q), "&playerId=%s&seasonId=%s", players[3].id, season.id);
    ids = audit_all(q, 200, &n);
    assert_int_equal((int64_t)n, players[3].claimed + 1);
    free(ids);
    snprintf(path, sizeof(path), "/audit?playerId=%s&seasonId=%s&limit=1", players[3].id,
             season.id);
    assert_int_equal(call("GET", path, admin_token, NULL, &o), 200);
    it = json_array_get(json_object_get(o, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "action")), "claim");
    assert_string_equal(json_string_value(json_object_get(it, "actor")), "economy-service");
    json_decref(o);
    snprintf(path, sizeof(path), "/audit?playerId=%s&limit=200", players[10].id);
    assert_int_equal(call("GET", path, admin_token, NULL, &o), 200);
    size_t i, passes = 0;
    json_array_foreach(json_object_get(o, "items"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "action")), "premium-grant") != 0)
            continue;
        passes++;
        assert_true(json_is_null(json_object_get(it, "level")));
        assert_true(json_is_null(json_object_get(it, "tier")));
        assert_true(json_is_null(json_object_get(it, "grantId")));
        assert_non_null(
            json_string_value(json_object_get(json_object_get(it, "detail"), "transactionId")));
    }
    assert_int_equal(passes, 2); /* tx-10 and tx-10b; the replay wrote nothing */
    json_decref(o);

    /* One season: the worker's auto-grants of the past season. */
    snprintf(q, sizeof(q), "&seasonId=%s", past_id);
    ids = audit_all(q, 50, &n);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE season_id = '%s' AND actor = 'worker'"
             " AND action = 'auto-grant'",
             past_id);
    assert_true(n > 0);
    assert_int_equal((long long)n, it_sql_int(&env, sql));
    free(ids);

    /* Bad parameters: 400; not an admin: 403; no token: 401. */
    static const char *const bad[] = {
        "/audit?limit=0",   "/audit?limit=201", "/audit?limit=abc", "/audit?limit=",
        "/audit?cursor=-1", "/audit?cursor=x1", "/audit?cursor=0",  "/audit?playerId=a%20b",
        "/audit?seasonId=", "/audit?playerId=",
    };
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = call("GET", bad[i], admin_token, NULL, &o);
        if (st != 400)
            fprintf(stderr, "%s: %d, want 400\n", bad[i], st);
        assert_int_equal(st, 400);
        json_decref(o);
    }
    char *player = it_jwt(env.secret, players[5].id, "player", 600);
    assert_int_equal(call("GET", "/audit", player, NULL, NULL), 403);
    assert_int_equal(call("GET", "/audit", service_token, NULL, NULL), 403);
    assert_int_equal(call("GET", "/audit", NULL, NULL, NULL), 401);
    free(player);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_season_analytics),
        cmocka_unit_test(test_past_season),
        cmocka_unit_test(test_counter_shards),
        cmocka_unit_test(test_player_stats),
        cmocka_unit_test(test_audit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
