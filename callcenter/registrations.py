"""Registrar bindings kept in PostgreSQL across restarts (UDP ones: a TCP binding's connection
dies with the process, and the phone re-registers over a new one anyway), and shared between
the nodes of one database: each node's registrar also holds the others' bindings (read at
start, then per extension when a node announces a change), so any node rings any phone.

A binding another node holds is reached over UDP: along its Path when the phone registered
through a proxy (deploy/kamailio), else straight at the address its REGISTER came from."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from crm_bridge import RegistrationStore, StoredBinding
from pbx import Binding, Registrar
from telephony.sip import NameAddr, SipError

logger = logging.getLogger(__name__)


class PersistentBindings:
    def __init__(
        self, store: RegistrationStore, registrar: Registrar, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.store = store
        self.registrar = registrar
        self.loop = loop
        self._writes: set[asyncio.Task[None]] = set()
        self._reads: set[asyncio.Task[None]] = set()
        registrar.on_change = self._changed

    async def restore(self) -> int:
        """Load the bindings a previous run of this node left; returns how many."""
        now_wall, now_loop = datetime.now(UTC), self.loop.time()
        restored = 0
        for stored in await self.store.load(now=now_wall):
            binding = _binding(stored, now_wall, now_loop, own=True)
            if binding is not None:
                self.registrar.restore(binding)
                restored += 1
        if restored:
            logger.info("registrar: %d bindings restored from before the restart", restored)
        return restored

    async def share(self) -> int:
        """Follow the other nodes' bindings: LISTEN for their changes, then read them all (in
        that order, so no change falls between); returns how many there are now."""
        await self.store.listen(self._peer_changed)
        others = await self.store.load_others(now=datetime.now(UTC))
        by_extension: dict[str, list[StoredBinding]] = {}
        for stored in others:
            by_extension.setdefault(stored.extension, []).append(stored)
        for extension, rows in by_extension.items():
            self._set_remote(extension, rows)
        if others:
            logger.info("registrar: %d bindings held by other nodes", len(others))
        return len(others)

    def _set_remote(self, extension: str, rows: list[StoredBinding]) -> None:
        now_wall, now_loop = datetime.now(UTC), self.loop.time()
        found = [_binding(r, now_wall, now_loop) for r in rows]
        self.registrar.set_remote(extension, [b for b in found if b is not None])

    def _peer_changed(self, node: str, extension: str) -> None:
        task = self.loop.create_task(self._reread(node, extension))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _reread(self, node: str, extension: str) -> None:
        try:
            rows = await self.store.load_others(now=datetime.now(UTC), extension=extension)
        except Exception as exc:  # the next change (or REGISTER refresh) reads it again
            logger.error(
                "registrar: could not read %s's bindings from %s: %s", extension, node, exc
            )
            return
        self._set_remote(extension, rows)

    def _changed(self, extension: str, bindings: list[Binding]) -> None:
        now_wall, now_loop = datetime.now(UTC), self.loop.time()
        stored = [
            StoredBinding(
                extension,
                str(b.contact),
                b.peer[0],
                b.peer[1],
                b.peer[2],
                now_wall + timedelta(seconds=b.expires_at - now_loop),
                b.call_id,
                b.cseq,
                b.path,
            )
            for b in bindings
        ]
        task = self.loop.create_task(self._write(extension, stored))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, extension: str, bindings: list[StoredBinding]) -> None:
        try:
            await self.store.replace(extension, bindings)
        except (
            Exception
        ) as exc:  # the phone is registered all the same; only a restart would miss it
            logger.error("registrar: could not store %s's bindings: %s", extension, exc)

    async def flush(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=5)

    async def close(self) -> None:
        """Stop following the other nodes (after `flush`)."""
        for task in list(self._reads):
            task.cancel()
        if self._reads:
            await asyncio.wait(self._reads, timeout=5)
        await self.store.close()


def _binding(
    stored: StoredBinding, now_wall: datetime, now_loop: float, *, own: bool = False
) -> Binding | None:
    """A stored row as a registrar binding (None for a TCP/TLS one: its connection belonged to
    the process that took the REGISTER, or for a contact that no longer parses)."""
    if stored.transport != "udp":
        return None
    try:
        contact = NameAddr.parse(stored.contact)
    except SipError:
        return None
    left = (stored.expires_at - now_wall).total_seconds()
    return Binding(
        stored.extension,
        contact,
        (stored.transport, stored.host, stored.port),
        now_loop + left,
        stored.call_id,
        stored.cseq,
        path=stored.path,
        node=None if own else stored.node,
    )
