-- Call pickup (*8, **EXT) and supervisor monitoring (listen / whisper / barge).

-- One row per pickup: who took which ringing call, and whose phone it was ringing. Its outbox
-- event (call.pickup) is written in the same transaction.
CREATE TABLE call_pickups (
    id           BIGSERIAL PRIMARY KEY,
    call_row_id  BIGINT REFERENCES calls (id) ON DELETE SET NULL,
    call_id      TEXT NOT NULL,
    picker       TEXT NOT NULL,
    picked_from  TEXT NOT NULL,
    picked_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX call_pickups_call ON call_pickups (call_row_id);

-- The monitoring audit: who monitored whom on which call, every mode change, with times.
-- Append-only: updates and deletes are refused by a trigger (retention is a DBA's decision).
CREATE TABLE monitor_audit (
    id           BIGSERIAL PRIMARY KEY,
    node         TEXT NOT NULL,
    session      INTEGER NOT NULL,      -- the session's number on that node
    call_row_id  BIGINT,                -- calls.id (no FK: the audit outlives purged calls)
    call_id      TEXT NOT NULL,
    supervisor   TEXT NOT NULL,
    agent        TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('started', 'mode', 'ended')),
    mode         TEXT NOT NULL CHECK (mode IN ('listen', 'whisper', 'barge')),
    at           TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX monitor_audit_call ON monitor_audit (call_id, id);
CREATE INDEX monitor_audit_supervisor ON monitor_audit (supervisor, at);

CREATE FUNCTION monitor_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'monitor_audit is append-only';
END
$$;
CREATE TRIGGER monitor_audit_no_change BEFORE UPDATE OR DELETE ON monitor_audit
    FOR EACH ROW EXECUTE FUNCTION monitor_audit_append_only();
