-- What the agent recorded about a call (sale, callback, not-interested, wrong-number, dnc).
ALTER TABLE calls ADD COLUMN disposition TEXT;
ALTER TABLE calls ADD COLUMN disposition_note TEXT;
ALTER TABLE calls ADD COLUMN disposed_at TIMESTAMPTZ;
