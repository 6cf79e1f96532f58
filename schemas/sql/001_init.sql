-- Seasons, processed events, progress, partition offsets with fencing, and the outbox.

CREATE TABLE seasons (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    max_level   integer     NOT NULL CHECK (max_level >= 1),
    definition  jsonb       NOT NULL,  -- the imported Season resource, minus status
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    -- at most one season at any instant
    EXCLUDE USING gist (tstzrange(starts_at, ends_at) WITH &&)
);

-- Every XP event ever applied (or recorded outside every season): the idempotency
-- ledger. season_id is NULL for events that fell in no season.
CREATE TABLE processed_events (
    event_id     text        PRIMARY KEY,
    player_id    text        NOT NULL,
    season_id    text,
    amount       integer     NOT NULL,
    reason       text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_player ON processed_events (player_id, season_id, occurred_at);

CREATE TABLE player_progress (
    player_id  text        NOT NULL,
    season_id  text        NOT NULL REFERENCES seasons (id),
    total_xp   bigint      NOT NULL DEFAULT 0 CHECK (total_xp >= 0),
    level      integer     NOT NULL DEFAULT 1,
    premium    boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, season_id)
);

-- Next offset to consume per partition, stored in the batch transaction. epoch is the
-- fencing token: bumped when a worker is assigned the partition; a batch commits only
-- while its worker's epoch is still the current one.
CREATE TABLE partition_offsets (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL DEFAULT -1,
    epoch          bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Output events written in the same transaction as the state they describe, produced to
-- Kafka by the relay and deleted once delivered.
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
