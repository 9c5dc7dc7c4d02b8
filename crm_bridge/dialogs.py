"""The answered SIP dialogs of a node, kept in PostgreSQL so that a restarted engine can send
BYE in every dialog a crash left open (phones would otherwise stay on a dead call)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telephony.sip import DialogRecord
from telephony.sip.dialog import DialogId


@dataclass(frozen=True)
class StoredDialog:
    """One leg's dialog and where its peer is."""

    record: DialogRecord
    transport: str
    """udp or tcp."""
    host: str
    port: int
    """Where the leg's messages came from (symmetric signalling: where ours go)."""
    confirmed_at: datetime

    @property
    def dialog_id(self) -> DialogId:
        return self.record.dialog_id


_COLUMNS = (
    "call_id, local_tag, remote_tag, local_seq, local_uri, remote_uri, remote_target, route_set,"
    " local_contact, secure, is_uac, transport, peer_host, peer_port, confirmed_at"
)


_UPSERT = (
    f"INSERT INTO sip_dialogs (node, {_COLUMNS}) VALUES"
    " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
    " ON CONFLICT (node, call_id, local_tag, remote_tag) DO UPDATE SET"
    " local_seq = GREATEST(sip_dialogs.local_seq, EXCLUDED.local_seq),"
    " remote_target = EXCLUDED.remote_target, route_set = EXCLUDED.route_set,"
    " local_contact = EXCLUDED.local_contact, transport = EXCLUDED.transport,"
    " peer_host = EXCLUDED.peer_host, peer_port = EXCLUDED.peer_port,"
    " updated_at = now()"
)
_DELETE = (
    "DELETE FROM sip_dialogs WHERE node = $1 AND call_id = $2"
    " AND local_tag = $3 AND remote_tag = $4"
)


class DialogStore:
    """One node's rows of `sip_dialogs`."""

    def __init__(self, pool: asyncpg.Pool, *, node: str) -> None:
        self._pool = pool
        self.node = node

    async def apply(self, saved: Iterable[StoredDialog], gone: Iterable[DialogId]) -> None:
        """Write the dialogs `saved` (new, or a newer state of one stored) and delete those
        `gone`, in one transaction. A stored CSeq never goes down."""
        rows = [
            (self.node, d.record.call_id, d.record.local_tag, d.record.remote_tag,
             d.record.local_seq, d.record.local_uri, d.record.remote_uri, d.record.remote_target,
             list(d.record.route_set), d.record.local_contact, d.record.secure, d.record.is_uac,
             d.transport, d.host, d.port, d.confirmed_at)
            for d in saved
        ]  # fmt: skip
        keys = [(self.node, *dialog_id) for dialog_id in gone]
        writes: list[tuple[str, Sequence[Sequence[object]]]] = [(_UPSERT, rows)] if rows else []
        if keys:
            writes.append((_DELETE, keys))
        async with self._pool.acquire() as conn:
            if len(writes) == 1:  # one executemany is atomic by itself: no BEGIN, no COMMIT
                await conn.executemany(*writes[0])
                return
            async with conn.transaction():
                for statement, args in writes:
                    await conn.executemany(statement, args)

    async def load(self) -> list[StoredDialog]:
        """This node's dialogs, oldest first: at start-up, the ones a crash left."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM sip_dialogs WHERE node = $1 ORDER BY confirmed_at, call_id",
            self.node,
        )
        return [
            StoredDialog(
                DialogRecord(
                    call_id=r["call_id"],
                    local_tag=r["local_tag"],
                    remote_tag=r["remote_tag"],
                    local_seq=r["local_seq"],
                    local_uri=r["local_uri"],
                    remote_uri=r["remote_uri"],
                    remote_target=r["remote_target"],
                    route_set=tuple(r["route_set"]),
                    local_contact=r["local_contact"],
                    secure=r["secure"],
                    is_uac=r["is_uac"],
                ),
                r["transport"],
                r["peer_host"],
                r["peer_port"],
                r["confirmed_at"],
            )
            for r in rows
        ]

    async def delete(self, dialog_id: DialogId) -> None:
        """Forget one dialog (its BYE was answered, refused or timed out)."""
        await self.apply((), (dialog_id,))
