"""Registrar bindings kept in PostgreSQL across restarts (UDP ones: a TCP binding's connection
dies with the process, and the phone re-registers over a new one anyway)."""

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
        registrar.on_change = self._changed

    async def restore(self) -> int:
        """Load the bindings a previous run of this node left; returns how many."""
        now_wall, now_loop = datetime.now(UTC), self.loop.time()
        restored = 0
        for stored in await self.store.load(now=now_wall):
            if stored.transport != "udp":
                continue
            try:
                contact = NameAddr.parse(stored.contact)
            except SipError:
                continue
            left = (stored.expires_at - now_wall).total_seconds()
            peer = (stored.transport, stored.host, stored.port)
            self.registrar.restore(
                Binding(
                    stored.extension, contact, peer, now_loop + left, stored.call_id, stored.cseq
                )
            )
            restored += 1
        if restored:
            logger.info("registrar: %d bindings restored from before the restart", restored)
        return restored

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
