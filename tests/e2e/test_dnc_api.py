"""The do-not-call list over REST: import a file (bad rows by line), list, export, lift a bar;
global and per campaign; managers only."""

from __future__ import annotations

import aiohttp

from callcenter.runtime import Engine

from .conftest import AGENT_KEY, api_url, bearer


async def test_dnc_import_list_export_and_remove(engine: Engine) -> None:
    async with aiohttp.ClientSession(headers=bearer()) as http:
        body = "phone\n+12125550901\n(212) 555-0902\nnot a number\n+12125550901\n"
        async with http.post(api_url(engine, "/dnc"), data=body.encode()) as r:
            imported = await r.json()
        assert r.status == 200
        assert imported["read"] == 2 and imported["added"] == 2
        assert [e["line"] for e in imported["errors"]] == [4]
        async with http.get(api_url(engine, "/dnc")) as r:
            listed = [n["phone"] for n in (await r.json())["numbers"]]
        assert {"+12125550901", "+12125550902"} <= set(listed)
        async with http.get(api_url(engine, "/dnc.csv")) as r:
            exported = await r.text()
        assert r.headers["Content-Type"].startswith("text/csv")
        assert exported.startswith("phone\n") and "+12125550902\n" in exported
        # A campaign's own list is separate from the global one.
        settings = {"name": f"dnc-{engine.sip_port}", "agents": ["101"]}
        async with http.post(api_url(engine, "/campaigns"), json=settings) as r:
            cid = (await r.json())["id"]
        async with http.post(api_url(engine, f"/dnc?campaign={cid}"), data=b"+12125550903\n") as r:
            assert (await r.json())["added"] == 1
        async with http.get(api_url(engine, f"/dnc?campaign={cid}")) as r:
            assert [n["phone"] for n in (await r.json())["numbers"]] == ["+12125550903"]
        async with http.delete(api_url(engine, "/dnc/+12125550902")) as r:
            assert r.status == 200 and (await r.json())["removed"] == 1
        async with http.delete(api_url(engine, "/dnc/+12125550902")) as r:
            assert r.status == 404
        async with http.get(api_url(engine, "/dnc?campaign=999999999")) as r:
            assert r.status == 404
        async with http.get(api_url(engine, "/dnc"), headers=bearer(AGENT_KEY)) as r:
            assert r.status == 403
