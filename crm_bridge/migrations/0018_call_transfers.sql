-- The chain of agents of a transferred call: one entry per transfer, in order
-- ({at, from, to, by, mode, result}); `agent` stays the last agent who talked to the customer.
ALTER TABLE calls ADD COLUMN transfers JSONB NOT NULL DEFAULT '[]'::jsonb
    CHECK (jsonb_typeof(transfers) = 'array');
