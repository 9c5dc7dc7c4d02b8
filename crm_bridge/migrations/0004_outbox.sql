-- Transactional outbox: one row per event (written in the transaction that changed the call or
-- task), and one delivery row per (event, CRM endpoint) holding that endpoint's retry state, so
-- a CRM that is down never holds back another, and the payload is stored once.
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    aggregate        TEXT NOT NULL,          -- 'call/<id>', 'task/<id>': ordering scope
    event_type       TEXT NOT NULL,          -- 'call.ended', 'task.created', ...
    payload          JSONB NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    occurred_at      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_aggregate ON outbox (aggregate, id);
CREATE INDEX outbox_created ON outbox (created_at);

CREATE TABLE outbox_deliveries (
    event_id         BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    endpoint         TEXT NOT NULL,
    aggregate        TEXT NOT NULL,          -- copy of outbox.aggregate for the ordering index
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    dead_at          TIMESTAMPTZ,
    last_error       TEXT,
    remote_ref       TEXT,                   -- id the CRM gave the object (amoCRM task id)
    PRIMARY KEY (event_id, endpoint)
);
-- Pending work, by due time (claim) and per aggregate in order (head-of-line check).
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_deliveries_chain ON outbox_deliveries (endpoint, aggregate, event_id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_deliveries_ref ON outbox_deliveries (endpoint, aggregate, event_id)
    WHERE remote_ref IS NOT NULL;

-- Wake the delivery workers (LISTEN crm_outbox) when the writing transaction commits; one
-- notification per statement, and PostgreSQL folds duplicates within a transaction.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crm_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_deliveries_notify AFTER INSERT ON outbox_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
