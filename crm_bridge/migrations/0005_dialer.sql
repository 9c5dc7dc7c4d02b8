-- Dialer campaigns, their leads, every attempt at a lead, and the do-not-call list (issue 4).
CREATE TABLE campaigns (
    id                   BIGSERIAL PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE CHECK (name <> ''),
    caller_id            TEXT NOT NULL DEFAULT '',
    trunk                TEXT NOT NULL DEFAULT '',
    agents               TEXT[] NOT NULL DEFAULT '{}',
    ring_group           TEXT,
    mode                 TEXT NOT NULL DEFAULT 'power' CHECK (mode IN ('power', 'predictive')),
    ratio                DOUBLE PRECISION NOT NULL DEFAULT 1.0 CHECK (ratio BETWEEN 1.0 AND 5.0),
    abandon_cap          DOUBLE PRECISION NOT NULL DEFAULT 0.03 CHECK (abandon_cap BETWEEN 0 AND 1),
    abandon_window_days  INTEGER NOT NULL DEFAULT 30 CHECK (abandon_window_days >= 1),
    max_attempts         INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    -- {"busy": 300, "no-answer": 1800, ...}: seconds; an outcome not listed ends the lead.
    retry_delays         JSONB NOT NULL DEFAULT '{}',
    -- Calling hours in each lead's local time; end < start runs past midnight.
    window_start         TIME NOT NULL DEFAULT '09:00',
    window_end           TIME NOT NULL DEFAULT '21:00',
    window_days          SMALLINT[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}',   -- ISO, Monday = 1
    tz_default           TEXT NOT NULL DEFAULT 'UTC',
    -- Hanging up sooner than 15 s is unlawful in several countries.
    max_ring_seconds     DOUBLE PRECISION NOT NULL DEFAULT 20 CHECK (max_ring_seconds >= 15),
    machine_action       TEXT NOT NULL DEFAULT 'voicemail'
                             CHECK (machine_action IN ('voicemail', 'hangup')),
    voicemail_prompt     TEXT,
    safe_harbor_prompt   TEXT,
    state                TEXT NOT NULL DEFAULT 'draft'
                             CHECK (state IN ('draft', 'running', 'paused', 'finished')),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at           TIMESTAMPTZ,
    finished_at          TIMESTAMPTZ,
    CHECK (window_start <> window_end),
    CHECK (cardinality(window_days) > 0 AND window_days <@ '{1,2,3,4,5,6,7}'::SMALLINT[])
);

CREATE TABLE leads (
    id               BIGSERIAL PRIMARY KEY,
    campaign_id      BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    phone            TEXT NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name             TEXT,
    tz               TEXT NOT NULL,
    data             JSONB NOT NULL DEFAULT '{}',
    consent          BOOLEAN,
    responsible      TEXT,
    status           TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'in-progress', 'done', 'dnc')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_outcome     TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A number is one lead per campaign: imports merge into it.
    UNIQUE (campaign_id, phone)
);
-- The claim query: due pending leads of a campaign, oldest due first.
CREATE INDEX leads_due ON leads (campaign_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX leads_phone ON leads (phone);

CREATE TABLE dnc (
    id           BIGSERIAL PRIMARY KEY,
    phone        TEXT NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    campaign_id  BIGINT REFERENCES campaigns (id) ON DELETE CASCADE,   -- NULL: every campaign
    reason       TEXT,
    added_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX dnc_one_entry ON dnc (phone, campaign_id) NULLS NOT DISTINCT;

CREATE TABLE attempts (
    id           BIGSERIAL PRIMARY KEY,
    lead_id      BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    attempt_no   INTEGER NOT NULL CHECK (attempt_no >= 1),
    reserved_at  TIMESTAMPTZ NOT NULL,
    -- The node that reserved it: after a crash, that node closes its own attempts in flight.
    node         TEXT NOT NULL,
    call_id      TEXT,
    dialled_at   TIMESTAMPTZ,
    outcome      TEXT CHECK (outcome IN ('answered-human', 'answered-machine', 'busy',
                     'no-answer', 'failed', 'abandoned', 'rejected', 'dnc', 'outcome-unknown')),
    ended_at     TIMESTAMPTZ,
    agent        TEXT,
    -- The guarantee behind "never dial a lead twice for the same attempt".
    UNIQUE (lead_id, attempt_no),
    CHECK ((ended_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX attempts_in_flight ON attempts (node) WHERE ended_at IS NULL;
CREATE INDEX attempts_campaign ON attempts (campaign_id, outcome);
CREATE UNIQUE INDEX attempts_call_id ON attempts (call_id) WHERE call_id IS NOT NULL;

-- Whether `instant` falls within calling hours [opens, closes) in zone `tz` on one of the ISO
-- weekdays `days` (hours past midnight belong to the day they open). The dialer's
-- compliance.CallingHours.allowed says the same in Python; a test holds them together.
CREATE FUNCTION dialer_within_hours(
    instant TIMESTAMPTZ, tz TEXT, opens TIME, closes TIME, days SMALLINT[]
) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN opens < closes THEN
            local::time >= opens AND local::time < closes
            AND extract(isodow FROM local)::smallint = ANY (days)
        ELSE
            (local::time >= opens AND extract(isodow FROM local)::smallint = ANY (days))
            OR (local::time < closes
                AND extract(isodow FROM local - interval '1 day')::smallint = ANY (days))
        END
    FROM (SELECT instant AT TIME ZONE tz AS local) AS l
$$;
