-- Agents booked for a call, shared by the nodes of one database (pbx.booking): one row per
-- agent at most, so two calls on two nodes never book the same agent. The node renews its
-- rows' lease while it lives; a row whose lease ran out (its node died) can be taken over.
CREATE TABLE agent_bookings (
    extension    TEXT PRIMARY KEY,
    node         TEXT NOT NULL,
    call_id      TEXT NOT NULL,
    booked_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until  TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_bookings_node ON agent_bookings (node);

-- Every change is announced on 'agent_bookings' as "node\nextension\nop", so the other nodes
-- count the agent busy (or free) at once, without a read per decision.
CREATE FUNCTION agent_bookings_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('agent_bookings', OLD.node || E'\n' || OLD.extension || E'\nfree');
        RETURN OLD;
    END IF;
    PERFORM pg_notify('agent_bookings', NEW.node || E'\n' || NEW.extension || E'\nbooked');
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER agent_bookings_notify AFTER INSERT OR UPDATE OF node, call_id OR DELETE
    ON agent_bookings FOR EACH ROW EXECUTE FUNCTION agent_bookings_notify();
