-- Secrets every node of one database must share (issue 18): the key of the SIP digest nonces,
-- so a phone challenged by one node behind Kamailio may answer to another (the dispatcher's
-- hash, or a failover, sends its next request elsewhere). The first node to start makes each
-- secret; the others read it.
CREATE TABLE cluster_secrets (
    name        TEXT PRIMARY KEY,
    value       BYTEA NOT NULL CHECK (octet_length(value) >= 16),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
