-- State the nodes of one database share beyond bookings (issue 18, items 4 and 5).

-- Nodes alive: each node in a cluster renews its row's lease while it runs. A node whose lease
-- ran out is dead (killed, or cut off from the database): a surviving node closes its dialer
-- attempts in flight, without waiting for the dead node's restart.
CREATE TABLE cluster_nodes (
    node         TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until  TIMESTAMPTZ NOT NULL
);

-- Calls-per-second budget per trunk, one token bucket for every node dialing through it:
-- `tokens` as of `refilled_at` (dialer.PgTokenBucket takes from it under the row's lock).
CREATE TABLE trunk_buckets (
    trunk        TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refilled_at  TIMESTAMPTZ NOT NULL
);

-- Presence an agent set on one node (away by *50 or the API) and the wrap-up their last call
-- left, for every node's hunts and dialers: one row per extension, announced on
-- 'agent_presence' as "node\nextension".
CREATE TABLE agent_presence (
    extension      TEXT PRIMARY KEY,
    away           BOOLEAN NOT NULL DEFAULT false,
    wrap_up_until  TIMESTAMPTZ,
    node           TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION agent_presence_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('agent_presence', NEW.node || E'\n' || NEW.extension);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER agent_presence_notify AFTER INSERT OR UPDATE ON agent_presence
    FOR EACH ROW EXECUTE FUNCTION agent_presence_notify();

-- Bookings are announced as "node\nextension\nop\ncall_id": a dialer's reservation (call_id
-- 'dialer') keeps other nodes' dialers off an idle agent, a call's booking shows the agent on a
-- call on every node.
CREATE OR REPLACE FUNCTION agent_bookings_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('agent_bookings',
            OLD.node || E'\n' || OLD.extension || E'\nfree\n' || OLD.call_id);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('agent_bookings',
        NEW.node || E'\n' || NEW.extension || E'\nbooked\n' || NEW.call_id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- A booking renewed in place (a dialer's reservation of an idle agent, taken again each round)
-- changes nothing the other nodes follow: announce only a change of holder.
DROP TRIGGER agent_bookings_notify ON agent_bookings;
CREATE TRIGGER agent_bookings_notify AFTER INSERT OR DELETE
    ON agent_bookings FOR EACH ROW EXECUTE FUNCTION agent_bookings_notify();
CREATE TRIGGER agent_bookings_notify_change AFTER UPDATE OF node, call_id ON agent_bookings
    FOR EACH ROW WHEN (OLD.node IS DISTINCT FROM NEW.node OR OLD.call_id IS DISTINCT FROM NEW.call_id)
    EXECUTE FUNCTION agent_bookings_notify();

-- Take up to `wanted` calls from the trunk's bucket (`rate` a second, at most `burst` saved):
-- the row is locked while it is refilled and spent, so nodes taking at once never overspend.
CREATE FUNCTION trunk_bucket_take(
    p_trunk TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION, p_wanted INTEGER
) RETURNS INTEGER AS $$
DECLARE
    have DOUBLE PRECISION;
    since TIMESTAMPTZ;
    at TIMESTAMPTZ;
    granted INTEGER;
BEGIN
    INSERT INTO trunk_buckets (trunk, tokens, refilled_at)
        VALUES (p_trunk, p_burst, clock_timestamp()) ON CONFLICT (trunk) DO NOTHING;
    SELECT tokens, refilled_at INTO have, since FROM trunk_buckets
        WHERE trunk = p_trunk FOR UPDATE;
    at := clock_timestamp();
    have := least(p_burst, have + p_rate * greatest(0, extract(epoch FROM at - since)));
    granted := greatest(0, least(p_wanted, floor(have + 1e-9)))::integer;
    UPDATE trunk_buckets SET tokens = have - granted, refilled_at = greatest(since, at)
        WHERE trunk = p_trunk;
    RETURN granted;
END;
$$ LANGUAGE plpgsql;
