"""An agent key bound to an extension acts for that agent only; an unbound key (a CRM's) acts
for any. Refusals are 403 with a reason, and change nothing."""

from __future__ import annotations

import aiohttp

from callcenter.runtime import Engine

from .conftest import AGENT_101_KEY, AGENT_KEY, api_url, bearer


async def test_a_bound_agent_key_acts_for_its_own_extension_only(engine: Engine) -> None:
    own, other = bearer(AGENT_101_KEY), "102"
    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(engine, f"/agents/{other}/events"), headers=own) as r:
            assert r.status == 403
            assert "101 only" in (await r.json())["error"]["reason"]
        async with http.get(api_url(engine, "/agents/101/events"), headers=own) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        url = api_url(engine, f"/agents/{other}/presence")
        async with http.put(url, json={"state": "away"}, headers=own) as r:
            assert r.status == 403
        async with http.get(url, headers=own) as r:
            assert (await r.json())["state"] == "available"  # nothing changed
        async with http.put(url, json={"state": "away"}, headers=bearer(AGENT_KEY)) as r:
            assert r.status == 200  # an unbound key acts for anyone
        async with http.put(url, json={"state": "available"}, headers=bearer(AGENT_KEY)) as r:
            assert r.status == 200
        body = {"agent": other, "number": "+12125550999"}
        async with http.post(api_url(engine, "/calls"), json=body, headers=own) as r:
            assert r.status == 403
