"""RegistrationStore on a real PostgreSQL: each node replaces its own rows of an extension, the
Path survives the round trip, and the other nodes see the change (LISTEN/NOTIFY, then a read of
just that extension) while their own rows stay theirs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from crm_bridge import RegistrationStore, StoredBinding

PATH = "<sip:127.0.0.1:5060;lr;received=sip:127.0.0.2:5070>"


def binding(extension: str, port: int, *, seconds: float = 300) -> StoredBinding:
    return StoredBinding(
        extension,
        f"<sip:{extension}@10.0.0.7:{port}>",
        "udp",
        "127.0.0.1",
        5060,
        datetime.now(UTC) + timedelta(seconds=seconds),
        f"call-{port}",
        1,
        path=(PATH,),
    )


async def test_nodes_see_each_others_bindings_and_hear_of_changes(pool: asyncpg.Pool) -> None:
    a = RegistrationStore(pool, node="a")
    b = RegistrationStore(pool, node="b")
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    await b.listen(lambda node, extension: heard.put_nowait((node, extension)))
    try:
        await a.replace("101", [binding("101", 5070), binding("101", 5072, seconds=-1)])
        assert await asyncio.wait_for(heard.get(), 5) == ("a", "101")
        await b.replace("102", [binding("102", 5074)])  # its own change: not announced to b
        now = datetime.now(UTC)
        [seen] = await b.load_others(now=now)  # the expired one is left out
        assert (seen.node, seen.extension, seen.path) == ("a", "101", (PATH,))
        assert seen.contact == "<sip:101@10.0.0.7:5070>"
        assert [r.extension for r in await a.load_others(now=now, extension="102")] == ["102"]
        assert await a.load_others(now=now, extension="103") == []
        [own] = await b.load(now=now)
        assert (own.node, own.extension) == ("b", "102")
        await a.replace("101", [])  # unregistered
        assert await asyncio.wait_for(heard.get(), 5) == ("a", "101")
        assert await b.load_others(now=now) == []
        assert heard.empty()
    finally:
        await b.close()
        await a.close()  # never listened: nothing to release
