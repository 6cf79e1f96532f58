-- Rewards, claims, premium passes, level purchases, the audit log; earned and paid XP.

ALTER TABLE player_progress
    ADD COLUMN earned_xp bigint NOT NULL DEFAULT 0 CHECK (earned_xp >= 0),
    ADD COLUMN paid_xp   bigint NOT NULL DEFAULT 0 CHECK (paid_xp >= 0);
UPDATE player_progress SET earned_xp = total_xp;
ALTER TABLE player_progress ADD CONSTRAINT player_progress_total
    CHECK (total_xp = earned_xp + paid_xp);

-- One row per reward a player got, whatever the way (claim, auto-claim, premium, season
-- end). The primary key is what makes a double grant impossible.
CREATE TABLE reward_claims (
    player_id  text        NOT NULL,
    season_id  text        NOT NULL REFERENCES seasons (id),
    level      integer     NOT NULL,
    tier       text        NOT NULL CHECK (tier IN ('free', 'premium')),
    reward_id  text        NOT NULL,
    item_id    text        NOT NULL,
    quantity   integer     NOT NULL CHECK (quantity > 0),
    grant_id   text        NOT NULL UNIQUE,
    source     text        NOT NULL,  -- claim, auto, premium, season-end
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, season_id, level, tier, reward_id)
);

-- Premium passes, idempotent by the economy service's transaction id.
CREATE TABLE premium_grants (
    transaction_id text        PRIMARY KEY,
    player_id      text        NOT NULL,
    season_id      text        NOT NULL REFERENCES seasons (id),
    source         text        NOT NULL,
    granted_at     timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX premium_grants_player ON premium_grants (player_id, season_id);

-- Levels bought, idempotent by transaction id.
CREATE TABLE level_purchases (
    transaction_id text        PRIMARY KEY,
    player_id      text        NOT NULL,
    season_id      text        NOT NULL REFERENCES seasons (id),
    levels         integer     NOT NULL CHECK (levels > 0),
    paid_xp        bigint      NOT NULL CHECK (paid_xp >= 0),
    purchased_at   timestamptz NOT NULL DEFAULT now()
);

-- Every reward transaction: who (actor: token subject or "worker"), what, when, why.
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,  -- claim, auto-grant, season-end-grant, premium-grant
    player_id text        NOT NULL,
    season_id text        NOT NULL,
    level     integer,
    tier      text,
    reward_id text,
    grant_id  text,
    detail    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_player ON audit_log (player_id, id);
CREATE INDEX audit_log_season ON audit_log (season_id, id);
