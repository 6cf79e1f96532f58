-- XP boosts and the daily XP cap: what each event really added, and earned XP per player,
-- season and UTC day of occurredAt.

ALTER TABLE processed_events
    ADD COLUMN IF NOT EXISTS applied_amount integer,
    ADD COLUMN IF NOT EXISTS boost_pct integer NOT NULL DEFAULT 100;

CREATE TABLE player_daily_xp (
    player_id text    NOT NULL,
    season_id text    NOT NULL,
    day       integer NOT NULL,  -- days since 1970-01-01, UTC
    earned    bigint  NOT NULL CHECK (earned >= 0),
    PRIMARY KEY (player_id, season_id, day)
);
