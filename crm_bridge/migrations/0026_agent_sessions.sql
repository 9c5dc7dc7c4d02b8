-- The agent page's login tokens and sessions (callcenter/api/security.py AgentSessions), shared
-- by every node of one database and kept across restarts. Only SHA-256 digests of the tokens
-- are stored, never the tokens; a row past its expiry is worthless and swept.
CREATE TABLE agent_logins (
    digest      TEXT PRIMARY KEY,
    extension   TEXT NOT NULL,
    issued_by   TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_logins_expiry ON agent_logins (expires_at);

CREATE TABLE agent_sessions (
    digest      TEXT PRIMARY KEY,
    extension   TEXT NOT NULL,
    issued_by   TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_sessions_expiry ON agent_sessions (expires_at);
