-- The answered SIP dialogs of each node (both legs of every bridged call): what a restarted
-- engine needs to send BYE in each, so that no phone stays on a call the crash cut off. A row is
-- written when the dialog is confirmed, rewritten when our CSeq or the remote target changes,
-- and deleted when the call ends normally; the rows a node finds at start-up are its crash's.
CREATE TABLE sip_dialogs (
    node           TEXT NOT NULL,
    call_id        TEXT NOT NULL,
    local_tag      TEXT NOT NULL,
    remote_tag     TEXT NOT NULL,          -- '' for an RFC 2543 peer that sent none
    local_seq      BIGINT NOT NULL,        -- CSeq of our last request in the dialog
    local_uri      TEXT NOT NULL,          -- our From/To address (name-addr, no tag)
    remote_uri     TEXT NOT NULL,          -- the peer's (name-addr, no tag)
    remote_target  TEXT NOT NULL,          -- the peer's Contact URI as last refreshed
    route_set      TEXT[] NOT NULL DEFAULT '{}',
    local_contact  TEXT,                   -- our Contact in the dialog
    secure         BOOLEAN NOT NULL DEFAULT false,
    is_uac         BOOLEAN NOT NULL,       -- we sent the INVITE (the callee's leg)
    transport      TEXT NOT NULL,          -- udp or tcp
    peer_host      TEXT NOT NULL,          -- where the leg's messages came from
    peer_port      INTEGER NOT NULL,
    confirmed_at   TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (node, call_id, local_tag, remote_tag)
);
