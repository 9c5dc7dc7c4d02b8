-- Answering-machine detection per campaign: on or off, its two time limits, and what an
-- unsure verdict means (connect an agent, leave the voicemail message, or hang up).
ALTER TABLE campaigns ADD COLUMN amd BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE campaigns ADD COLUMN amd_max_seconds DOUBLE PRECISION NOT NULL DEFAULT 6.0
    CHECK (amd_max_seconds BETWEEN 1 AND 30);
ALTER TABLE campaigns ADD COLUMN amd_initial_silence_seconds DOUBLE PRECISION NOT NULL
    DEFAULT 3.0 CHECK (amd_initial_silence_seconds BETWEEN 0.5 AND 30);
ALTER TABLE campaigns ADD COLUMN amd_unsure TEXT NOT NULL DEFAULT 'connect'
    CHECK (amd_unsure IN ('connect', 'voicemail', 'hangup'));

-- The verdict on each answered attempt: what the detector said, why, how sure, and when
-- (audio seconds after answer). NULL when the campaign runs without AMD.
ALTER TABLE attempts ADD COLUMN amd_verdict TEXT
    CHECK (amd_verdict IN ('human', 'machine', 'unsure', 'sit', 'fax'));
ALTER TABLE attempts ADD COLUMN amd_reason TEXT;
ALTER TABLE attempts ADD COLUMN amd_confidence DOUBLE PRECISION
    CHECK (amd_confidence BETWEEN 0 AND 1);
ALTER TABLE attempts ADD COLUMN amd_seconds DOUBLE PRECISION CHECK (amd_seconds >= 0);
