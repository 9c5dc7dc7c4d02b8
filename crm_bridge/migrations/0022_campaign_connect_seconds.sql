-- How long a person who answered a campaign's call may wait for an agent before the call is
-- abandoned (and counted against the abandon cap): 2 s by default, as Ofcom and the FTC's
-- Telemarketing Sales Rule allow; campaigns whose agents sit on seats may ask for less.
ALTER TABLE campaigns ADD COLUMN connect_seconds DOUBLE PRECISION NOT NULL DEFAULT 2.0
    CHECK (connect_seconds BETWEEN 0.5 AND 15);
