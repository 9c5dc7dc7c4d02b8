-- The agent who promised a callback (a `callback` disposition): the next attempt goes to them.
ALTER TABLE leads ADD COLUMN callback_agent TEXT;
