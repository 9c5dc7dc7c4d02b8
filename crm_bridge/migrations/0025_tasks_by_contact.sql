-- A screen pop reads a contact's open tasks on every call that rings an agent
-- (CrmStore.contact_card): an index on the contact, not a pass over every open task.
CREATE INDEX tasks_contact_open ON tasks (contact_id, due_at) WHERE status = 'open';
