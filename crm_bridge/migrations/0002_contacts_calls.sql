-- Contacts (customers known by their E.164 number) and the full call record of issue 3.
CREATE TABLE contacts (
    id           BIGSERIAL PRIMARY KEY,
    phone        TEXT NOT NULL UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name         TEXT,
    responsible  TEXT,            -- extension of the responsible manager
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A call row is written when the call starts (ended_at and outcome NULL) and closed when it ends.
ALTER TABLE calls ALTER COLUMN outcome DROP NOT NULL;
ALTER TABLE calls
    ADD COLUMN did             TEXT,
    ADD COLUMN agent           TEXT,
    ADD COLUMN ring_group      TEXT,
    ADD COLUMN ringing_at      TIMESTAMPTZ,
    ADD COLUMN recording_path  TEXT,
    ADD COLUMN analytics       JSONB,
    ADD COLUMN campaign_id     BIGINT,
    ADD COLUMN lead_id         BIGINT,
    ADD COLUMN contact_id      BIGINT REFERENCES contacts (id),
    -- Which engine node owns the call: a restarting node closes only its own open calls.
    ADD COLUMN node            TEXT NOT NULL DEFAULT '',
    ADD COLUMN updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Derived, so they can never disagree with the timestamps.
    ADD COLUMN ring_seconds    DOUBLE PRECISION GENERATED ALWAYS AS (
        EXTRACT(EPOCH FROM (COALESCE(answered_at, ended_at) - COALESCE(ringing_at, started_at)))
            ::double precision
    ) STORED,
    ADD COLUMN talk_seconds    DOUBLE PRECISION GENERATED ALWAYS AS (
        EXTRACT(EPOCH FROM (ended_at - answered_at))::double precision
    ) STORED;

-- NOT VALID: rows written before this migration keep whatever they had; new writes are checked.
ALTER TABLE calls ADD CONSTRAINT calls_outcome_known CHECK (
    outcome IS NULL OR outcome IN ('answered', 'missed', 'busy', 'no-answer', 'failed',
        'abandoned', 'voicemail', 'cancelled', 'unavailable', 'rejected')
) NOT VALID;
ALTER TABLE calls ADD CONSTRAINT calls_closed_has_outcome CHECK (
    (ended_at IS NULL) = (outcome IS NULL)
) NOT VALID;

CREATE INDEX calls_open ON calls (node) WHERE ended_at IS NULL;
CREATE INDEX calls_agent_started ON calls (agent, started_at);
CREATE INDEX calls_outcome_started ON calls (outcome, started_at);
CREATE INDEX calls_from_number ON calls (from_number);
CREATE INDEX calls_to_number ON calls (to_number);
CREATE INDEX calls_contact ON calls (contact_id, started_at);
