-- OAuth 2.0 tokens of CRM accounts (amoCRM integrations, Bitrix24 local apps), shared by every
-- engine node. A refresh token works once (amoCRM rotates it at each refresh), so a refresh
-- happens under this row's lock: the node that holds it refreshes and stores the new pair, the
-- others wait and read it.
CREATE TABLE crm_oauth_tokens (
    endpoint       TEXT PRIMARY KEY,          -- CrmEndpoint.name
    account        TEXT NOT NULL,             -- scheme://host of the CRM account
    access_token   TEXT NOT NULL,
    refresh_token  TEXT NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    extra          JSONB NOT NULL DEFAULT '{}'::jsonb,  -- e.g. Bitrix24 client_endpoint, member_id
    refreshed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
