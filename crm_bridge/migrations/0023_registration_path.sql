-- Nodes behind a proxy (deploy/kamailio): a REGISTER forwarded by the proxy carries Path
-- (RFC 3327), the way back to the phone. Every node reads every node's bindings, so a call on
-- node B reaches a phone that registered through node A: B sends the INVITE along the Path.
ALTER TABLE registrations ADD COLUMN path TEXT[] NOT NULL DEFAULT '{}';
CREATE INDEX registrations_extension ON registrations (extension);
