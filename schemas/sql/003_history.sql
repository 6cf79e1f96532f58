-- XP history: a processing sequence for cursor pagination per player, and what each event
-- applied (boosts, caps).

-- seq orders a player's events by when they were processed (existing rows are numbered in
-- table order); it is the cursor of GET /progress/{playerId}/history.
-- applied_amount is the XP that counted after boosts and caps (NULL: read as amount);
-- boost_pct is the boost applied in percent (100 = none). 004 adds them too, IF NOT EXISTS
-- on both sides, so a database that got 004 first still takes this one.
ALTER TABLE processed_events
    ADD COLUMN IF NOT EXISTS seq            bigserial,
    ADD COLUMN IF NOT EXISTS applied_amount integer,
    ADD COLUMN IF NOT EXISTS boost_pct      integer NOT NULL DEFAULT 100;

CREATE INDEX IF NOT EXISTS processed_events_history ON processed_events (player_id, seq);
