-- Season analytics: counters kept up to date by the transactions that change the data
-- (worker batches, claims, premium passes, level purchases), so reading them never scans
-- players. Days are days since 1970-01-01 (UTC) of the events' occurredAt; weeks start on
-- Monday: week = floor((day + 3) / 7), its first day is week * 7 - 3.
-- No foreign keys: these rows are updated by every batch and only ever follow player_progress,
-- which has them.

-- One row per season. unlocked counts rewards that became available to players (free tier
-- always, premium tier with the pass); claimed counts rewards granted by any source; xp is
-- earned XP applied (paid XP excluded).
CREATE TABLE season_stats (
    season_id text   PRIMARY KEY,
    enrolled  bigint NOT NULL DEFAULT 0,  -- players with a progress row
    premium   bigint NOT NULL DEFAULT 0,  -- players with the pass
    at_max    bigint NOT NULL DEFAULT 0,  -- players at max level
    unlocked  bigint NOT NULL DEFAULT 0,
    claimed   bigint NOT NULL DEFAULT 0,
    xp        bigint NOT NULL DEFAULT 0
);

-- Players per level (rows may reach 0 players and stay).
CREATE TABLE season_level_counts (
    season_id text    NOT NULL,
    level     integer NOT NULL,
    players   bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (season_id, level)
);

-- Who was active on a day / in a week: the insert that succeeds is the one that counts.
CREATE TABLE season_activity (
    season_id text    NOT NULL,
    day       integer NOT NULL,
    player_id text    NOT NULL,
    PRIMARY KEY (season_id, day, player_id)
);
CREATE TABLE season_weekly_activity (
    season_id text    NOT NULL,
    week      integer NOT NULL,
    player_id text    NOT NULL,
    PRIMARY KEY (season_id, week, player_id)
);

CREATE TABLE season_daily (
    season_id text    NOT NULL,
    day       integer NOT NULL,
    active    bigint  NOT NULL DEFAULT 0,
    xp        bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (season_id, day)
);
CREATE TABLE season_weekly (
    season_id text    NOT NULL,
    week      integer NOT NULL,
    active    bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (season_id, week)
);

-- Backfill from what is there already (once, at migration time).
INSERT INTO season_activity (season_id, day, player_id)
SELECT DISTINCT season_id, floor(extract(epoch FROM occurred_at) / 86400)::integer, player_id
FROM processed_events WHERE season_id IS NOT NULL;

INSERT INTO season_weekly_activity (season_id, week, player_id)
SELECT DISTINCT season_id, floor((day + 3) / 7.0)::integer, player_id FROM season_activity;

INSERT INTO season_daily (season_id, day, active, xp)
SELECT a.season_id, a.day, a.active, COALESCE(x.xp, 0)
FROM (SELECT season_id, day, count(*) AS active FROM season_activity GROUP BY 1, 2) a
LEFT JOIN (SELECT season_id, floor(extract(epoch FROM occurred_at) / 86400)::integer AS day,
                  sum(COALESCE(applied_amount, amount)) AS xp
           FROM processed_events WHERE season_id IS NOT NULL GROUP BY 1, 2) x
    USING (season_id, day);

INSERT INTO season_weekly (season_id, week, active)
SELECT season_id, week, count(*) FROM season_weekly_activity GROUP BY 1, 2;

INSERT INTO season_level_counts (season_id, level, players)
SELECT season_id, level, count(*) FROM player_progress GROUP BY 1, 2;

-- Rewards of each season by level and tier, from the stored definition.
WITH rewards AS (
    SELECT s.id AS season_id, (l ->> 'level')::integer AS level, r ->> 'tier' AS tier
    FROM seasons s,
         jsonb_array_elements(s.definition -> 'levels') AS l,
         jsonb_array_elements(COALESCE(l -> 'rewards', '[]'::jsonb)) AS r
)
INSERT INTO season_stats (season_id, enrolled, premium, at_max, unlocked, claimed, xp)
SELECT s.id,
       (SELECT count(*) FROM player_progress p WHERE p.season_id = s.id),
       (SELECT count(*) FROM player_progress p WHERE p.season_id = s.id AND p.premium),
       (SELECT count(*) FROM player_progress p WHERE p.season_id = s.id
          AND p.level >= s.max_level),
       (SELECT count(*) FROM player_progress p JOIN rewards r ON r.season_id = p.season_id
          AND r.level <= p.level AND (r.tier = 'free' OR p.premium)
        WHERE p.season_id = s.id),
       (SELECT count(*) FROM reward_claims c WHERE c.season_id = s.id),
       (SELECT COALESCE(sum(p.earned_xp), 0) FROM player_progress p WHERE p.season_id = s.id)
FROM seasons s;
