-- Where each phone is registered, so a restarted engine can reach its agents at once instead
-- of waiting for their next REGISTER (up to the registration interval). One row per binding.
CREATE TABLE registrations (
    extension   TEXT NOT NULL,
    contact     TEXT NOT NULL,          -- the Contact as registered (name-addr)
    transport   TEXT NOT NULL,          -- udp or tcp: where requests for the binding go
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    call_id     TEXT NOT NULL,
    cseq        BIGINT NOT NULL,
    node        TEXT NOT NULL,
    PRIMARY KEY (node, extension, contact)
);
