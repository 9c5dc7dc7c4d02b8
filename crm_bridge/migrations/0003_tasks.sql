-- Tasks for people (callbacks after missed calls, ...).
CREATE TABLE tasks (
    id                 BIGSERIAL PRIMARY KEY,
    type               TEXT NOT NULL CHECK (type IN ('callback', 'follow-up', 'other')),
    contact_id         BIGINT NOT NULL REFERENCES contacts (id),
    assignee           TEXT,        -- extension
    due_at             TIMESTAMPTZ NOT NULL,
    status             TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    text               TEXT NOT NULL DEFAULT '',
    created_from_call  BIGINT REFERENCES calls (id),
    last_call          BIGINT REFERENCES calls (id),
    missed_calls       INTEGER NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at          TIMESTAMPTZ,
    CHECK ((status = 'open') = (closed_at IS NULL))
);
-- At most one open callback per contact, even with several engine nodes writing at once:
-- a repeat missed call updates it (INSERT ... ON CONFLICT on this index).
CREATE UNIQUE INDEX tasks_one_open_callback ON tasks (contact_id)
    WHERE type = 'callback' AND status = 'open';
CREATE INDEX tasks_status_assignee ON tasks (status, assignee, due_at);

-- A contact is "open" while it waits for us: its latest inbound call went unanswered and no call
-- (either direction) was answered since.
CREATE VIEW open_contacts AS
SELECT ct.*, m.id AS missed_call_id, m.started_at AS missed_at
FROM contacts ct
JOIN LATERAL (
    SELECT c.id, c.started_at, c.answered_at, c.outcome FROM calls c
    WHERE c.contact_id = ct.id AND c.direction = 'inbound' AND c.ended_at IS NOT NULL
    ORDER BY c.started_at DESC, c.id DESC LIMIT 1
) m ON true
WHERE m.answered_at IS NULL
  AND m.outcome <> 'rejected'
  AND NOT EXISTS (
      SELECT 1 FROM calls a
      WHERE a.contact_id = ct.id AND a.answered_at IS NOT NULL AND a.started_at > m.started_at
  );

-- The rule "no open contact without an open task": this view must be empty.
CREATE VIEW contacts_without_open_task AS
SELECT o.* FROM open_contacts o
WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.contact_id = o.id AND t.status = 'open');
