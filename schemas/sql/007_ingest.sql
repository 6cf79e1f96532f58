-- Ingest throughput (docs/benchmarks.md, "Ingest"): fewer rows and index entries written per
-- XP event. Every index keyed by player id takes a random leaf page per event, and each such
-- page costs a full-page image in the WAL after every checkpoint.

-- Unused: GET /progress/{playerId}/history reads processed_events_history (player_id, seq),
-- and nothing looks events up by (player, season, time). Dropping it saves one random index
-- entry per event.
DROP INDEX IF EXISTS processed_events_player;

-- The batch checked this foreign key with one trigger query per new progress row (about a
-- third of the cost of inserting one). Seasons are never deleted, and every writer takes
-- the season id from the seasons table (the worker's and the API's season snapshot).
ALTER TABLE player_progress DROP CONSTRAINT IF EXISTS player_progress_season_id_fkey;

-- Room on each page for the next version of its rows: progress updates stay HOT (no index
-- entry) as long as the page has space. Applies to pages written from now on.
ALTER TABLE player_progress SET (fillfactor = 85);

-- Daily and weekly activity, kept on the player's progress row instead of one row per
-- (season, day, player) in season_activity and one per (season, week, player) in
-- season_weekly_activity (two more random index entries per player and day):
--   active_days  the UTC days (days since 1970-01-01 of occurredAt) on which the player had
--                applied XP in the season, sorted, distinct; NULL: none yet
--   days_added   written by each batch's upsert: the days that upsert added (NULL: none), so
--                that its RETURNING tells which players are new to a day (and, with
--                active_days, to a week); meaningless outside that statement
-- The worker stops writing season_activity and season_weekly_activity; they stay for the
-- workers of the previous version during a rolling upgrade (activity they count meanwhile
-- may be counted again by the new ones) and may be dropped afterwards.
ALTER TABLE player_progress
    ADD COLUMN IF NOT EXISTS active_days integer[],
    ADD COLUMN IF NOT EXISTS days_added  integer[];

UPDATE player_progress p SET active_days = a.days
FROM (SELECT season_id, player_id, array_agg(day ORDER BY day) AS days
      FROM season_activity GROUP BY season_id, player_id) a
WHERE a.season_id = p.season_id AND a.player_id = p.player_id;
