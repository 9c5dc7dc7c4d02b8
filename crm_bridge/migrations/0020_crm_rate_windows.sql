-- The request rate each CRM account allows, shared by every engine node (amoCRM: 7 per second
-- per integration, or 429 and a block of the IP; Bitrix24: a leaky bucket of 50 draining at
-- 2/s). One row per account holds the send times within the last window and a pause the CRM
-- asked for (429, QUERY_LIMIT_EXCEEDED); a node takes a slot under the row's lock.
CREATE TABLE crm_rate_windows (
    account       TEXT PRIMARY KEY,                    -- "<kind>:<account URL>"
    sent          TIMESTAMPTZ[] NOT NULL DEFAULT '{}', -- requests within the window
    paused_until  TIMESTAMPTZ                          -- nothing goes before this
);
