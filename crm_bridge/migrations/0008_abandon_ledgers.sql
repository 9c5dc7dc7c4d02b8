-- Each node's abandon ledger per campaign (dialer.AbandonLedger.to_dict), so a restart keeps the
-- rolling 30-day abandon rate that pacing must respect.
CREATE TABLE abandon_ledgers (
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    node         TEXT NOT NULL,
    state        JSONB NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, node)
);
