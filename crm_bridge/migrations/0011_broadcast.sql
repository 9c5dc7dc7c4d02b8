-- Broadcast campaigns: the engine plays an IVR flow to each answered lead instead of connecting
-- an agent first; `lines` caps the calls up at once; `require_consent` dials only leads whose
-- consent column said yes.
ALTER TABLE campaigns DROP CONSTRAINT campaigns_mode_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_mode_check
    CHECK (mode IN ('power', 'predictive', 'broadcast'));
ALTER TABLE campaigns ADD COLUMN flow TEXT;
ALTER TABLE campaigns ADD COLUMN lines INTEGER NOT NULL DEFAULT 10 CHECK (lines BETWEEN 1 AND 1000);
ALTER TABLE campaigns ADD COLUMN require_consent BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_broadcast_has_flow
    CHECK (mode <> 'broadcast' OR flow IS NOT NULL);

-- What each answered broadcast call did in the flow (one row per attempt).
CREATE TABLE broadcast_results (
    attempt_id       BIGINT PRIMARY KEY REFERENCES attempts (id) ON DELETE CASCADE,
    campaign_id      BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id          BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    flow             TEXT NOT NULL,
    path             TEXT[] NOT NULL,
    digits           TEXT NOT NULL DEFAULT '',
    listened_to_end  BOOLEAN NOT NULL,
    outcome          TEXT NOT NULL,  -- completed, transferred, caller-hangup, failed, voicemail
    transferred_to   TEXT,
    agent            TEXT,           -- who took a transferred call
    callback_created BOOLEAN NOT NULL DEFAULT false,
    opted_out        BOOLEAN NOT NULL DEFAULT false,
    voicemail_left   BOOLEAN NOT NULL DEFAULT false,
    events           JSONB NOT NULL DEFAULT '[]',
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX broadcast_results_campaign ON broadcast_results (campaign_id);
