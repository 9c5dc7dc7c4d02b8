-- DND and call forwarding per extension, as phones (*78, *72...) and the API set them: shared by
-- every engine node (one row per extension, whichever node took the change) and loaded at start,
-- so a restart forgets nothing. An extension without a row has its configuration's settings.
-- A change is announced on the channel agent_forwarding (payload: the extension).
CREATE TABLE agent_forwarding (
    extension         TEXT PRIMARY KEY,
    dnd               BOOLEAN NOT NULL DEFAULT false,
    forward_always    TEXT,
    forward_busy      TEXT,
    forward_no_answer TEXT,
    no_answer_after   DOUBLE PRECISION NOT NULL,
    node              TEXT NOT NULL,         -- the node that took the last change
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
