-- One row per call the engine handled (the CRM bridge issue extends this table).
CREATE TABLE calls (
    id            BIGSERIAL PRIMARY KEY,
    call_id       TEXT NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('internal', 'inbound', 'outbound')),
    from_number   TEXT NOT NULL,
    to_number     TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    answered_at   TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    outcome       TEXT NOT NULL,
    sip_status    INTEGER,
    hangup_cause  TEXT
);
CREATE INDEX calls_started_at ON calls (started_at);
