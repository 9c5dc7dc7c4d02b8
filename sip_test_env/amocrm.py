"""An amoCRM-shaped account for tests: a real aiohttp server on loopback that answers the API v4
requests the engine makes the way amoCRM's documentation shows them.

Built from the documented requests and answers:
- calls: https://www.amocrm.ru/developers/content/crm_platform/calls-api (a batch; "if no
  entity has this number, the call will not be added": the refusal comes back in `errors`
  of a 200);
- unsorted (incoming leads): https://www.amocrm.com/developers/content/api_v4/incoming-leads/
  (`POST /api/v4/leads/unsorted/sip` answers `_embedded.unsorted[]` with `uid` and the lead and
  contact made; contacts of an unsorted entry are not found by the contacts list until
  accepted; the same entry twice is an error);
- call notifications: https://www.amocrm.ru/developers/content/telephony/call_event
  (`POST /api/v2/events/` with `add: [{type: phone_call, phone_number, users}]`);
- contacts: `GET /api/v4/contacts?query=` answers 204 No Content when nothing matches;
- tasks: https://www.amocrm.ru/developers/content/crm_platform/tasks-api (`entity_id`,
  `entity_type`, `request_id` echoed back, not de-duplicated);
- OAuth: https://www.amocrm.ru/developers/content/oauth/step-by-step (24 h access tokens; each
  refresh token works once and the refresh answers a new pair);
- limits and errors: https://www.amocrm.com/developers/content/api/errors (7 requests per second
  per integration, 429 above it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .ports import free_port


@dataclass
class AmoAccount:
    """State of the fake account; tests read it after the engine is done."""

    port: int = field(default_factory=lambda: free_port("tcp"))
    client_id: str = "integration-id"
    client_secret: str = "integration-secret"
    auth_code: str = "auth-code-1"
    access_token: str = field(default_factory=lambda: "at-" + secrets.token_hex(4))
    refresh_token: str = field(default_factory=lambda: "rt-" + secrets.token_hex(4))
    expires_in: int = 86400
    rate: int = 7
    """Requests allowed in any one-second window; more get 429."""
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    unsorted: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    """Call notifications (POST /api/v2/events/, type phone_call)."""
    requests: list[tuple[str, str, float]] = field(default_factory=list)
    """(method, path, monotonic time) of every request, refused ones included."""
    throttled: int = 0
    refreshes: int = 0
    spent_refresh_tokens: list[str] = field(default_factory=list)
    hang_after: dict[str, int] = field(default_factory=dict)
    """Path -> how many requests to that path are done and then answered only after
    `hang_seconds` (the client times out: "did it go through?")."""
    hang_seconds: float = 5.0
    invalid_phones: set[str] = field(default_factory=set)
    """Phone digits whose call fails validation: the whole POST /api/v4/calls is refused with
    400 and `validation-errors` (as amoCRM does for a bad item in a batch)."""
    batch_sizes: list[int] = field(default_factory=list)
    """Items per POST /api/v4/calls, in arrival order."""
    call_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Phone digits -> the per-item error POST /api/v4/calls answers (in a 200) for it."""
    _ids: Any = field(default_factory=lambda: itertools.count(1000))
    _window: deque[float] = field(default_factory=deque)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_contact(self, phone: str, responsible_user_id: int, name: str = "") -> int:
        contact_id: int = next(self._ids)
        self.contacts[contact_id] = {
            "id": contact_id,
            "name": name or phone,
            "responsible_user_id": responsible_user_id,
            "phone": phone.lstrip("+"),
        }
        return contact_id

    def peak_rate(self, window: float = 1.0) -> int:
        """Most requests that arrived within any `window` seconds."""
        stamps = sorted(t for _, _, t in self.requests)
        best, start = 0, 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    async def start(self) -> AmoAccount:
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/oauth2/access_token", self._token)
        app.router.add_get("/api/v4/contacts", self._contacts)
        app.router.add_post("/api/v4/calls", self._add_calls)
        app.router.add_post("/api/v2/events/", self._add_events)
        app.router.add_post("/api/v4/leads/unsorted/sip", self._add_unsorted)
        app.router.add_get("/api/v4/leads/unsorted", self._list_unsorted)
        app.router.add_post("/api/v4/tasks", self._add_tasks)
        app.router.add_patch("/api/v4/tasks", self._edit_tasks)
        app.router.add_get("/api/v4/tasks", self._list_tasks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing ----------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        now = time.monotonic()
        self.requests.append((request.method, request.path, now))
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate:
            self.throttled += 1
            return _problem(429, "Too Many Requests")
        self._window.append(now)
        if request.path.startswith("/api/") and (
            request.headers.get("Authorization") != f"Bearer {self.access_token}"
        ):
            return _problem(401, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        left = self.hang_after.get(request.path, 0)
        if left:
            self.hang_after[request.path] = left - 1
            await asyncio.sleep(self.hang_seconds)  # done, but the answer comes too late
        return response

    # -- OAuth -------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.json()
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return web.json_response({"hint": "Client authentication failed"}, status=401)
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code") == self.auth_code:
            self.auth_code = ""  # a code works once
        elif grant == "refresh_token" and form.get("refresh_token") == self.refresh_token:
            self.spent_refresh_tokens.append(self.refresh_token)
            self.refreshes += 1
        else:
            return web.json_response(
                {"title": "Bad Request", "hint": "Token has been revoked", "status": 400},
                status=400,
            )
        self.access_token = "at-" + secrets.token_hex(4)
        self.refresh_token = "rt-" + secrets.token_hex(4)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
            }
        )

    # -- contacts and calls ------------------------------------------------------------------

    def _contact_by_phone(self, phone: str) -> dict[str, Any] | None:
        digits = "".join(ch for ch in phone if ch.isdigit())
        return next((c for c in self.contacts.values() if c["phone"] == digits), None)

    async def _contacts(self, request: web.Request) -> web.Response:
        contact = self._contact_by_phone(request.query.get("query", ""))
        if contact is None:
            return web.Response(status=204)
        shown = {k: v for k, v in contact.items() if k != "phone"}
        return web.json_response({"_page": 1, "_embedded": {"contacts": [shown]}})

    async def _add_calls(self, request: web.Request) -> web.Response:
        added, errors = [], []
        items = await request.json()
        self.batch_sizes.append(len(items))
        invalid = [
            {"request_id": str(item.get("request_id", index)),
             "errors": [{"code": "InvalidPhone", "path": "phone", "detail": "bad phone"}]}
            for index, item in enumerate(items)
            if "".join(ch for ch in str(item.get("phone", "")) if ch.isdigit())
            in self.invalid_phones
        ]  # fmt: skip
        if invalid:
            body = {"validation-errors": invalid, "title": "Bad Request", "status": 400}
            return web.Response(
                status=400, text=json.dumps(body), content_type="application/problem+json"
            )
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))
            digits = "".join(ch for ch in str(item.get("phone", "")) if ch.isdigit())
            if digits in self.call_errors:
                errors.append({**self.call_errors[digits], "request_id": request_id})
                continue
            contact = self._contact_by_phone(digits)
            if contact is None:
                errors.append(
                    {"code": "NotFound", "title": "Entity not found", "request_id": request_id}
                )
                continue
            call_id = next(self._ids)
            self.calls.append({**item, "id": call_id, "entity_id": contact["id"]})
            added.append(
                {
                    "id": call_id,
                    "entity_id": contact["id"],
                    "entity_type": "contact",
                    "account_id": 1,
                    "request_id": request_id,
                }
            )
        body = {"_total_items": len(added), "errors": errors, "_embedded": {"calls": added}}
        return web.json_response(body)

    async def _add_events(self, request: web.Request) -> web.Response:
        """Call notifications (https://www.amocrm.ru/developers/content/telephony/call_event)."""
        items = []
        for item in (await request.json()).get("add", []):
            if item.get("type") != "phone_call" or not item.get("phone_number"):
                return _problem(400, "Bad Request", detail="type phone_call and phone_number")
            self.notifications.append(item)
            contact = self._contact_by_phone(item["phone_number"])
            items.append(
                {"element_id": contact["id"] if contact else 0, "element_type": 1,
                 "uid": secrets.token_hex(8)}
            )  # fmt: skip
        return web.json_response({"_embedded": {"items": items}})

    async def _add_unsorted(self, request: web.Request) -> web.Response:
        answer = []
        for index, item in enumerate(await request.json()):
            uniq = item.get("metadata", {}).get("uniq")
            if any(u["metadata"].get("uniq") == uniq for u in self.unsorted):
                return _problem(400, "Bad Request", detail="unsorted entry already exists")
            uid = secrets.token_hex(16)
            lead_id, contact_id = next(self._ids), next(self._ids)
            self.unsorted.append({**item, "uid": uid, "lead_id": lead_id})
            answer.append(
                {
                    "uid": uid,
                    "account_id": 1,
                    "request_id": str(item.get("request_id", index)),
                    "_embedded": {"leads": [{"id": lead_id}], "contacts": [{"id": contact_id}]},
                }
            )
        return web.json_response({"_total_items": len(answer), "_embedded": {"unsorted": answer}})

    async def _list_unsorted(self, request: web.Request) -> web.StreamResponse:
        if not self.unsorted:
            return web.Response(status=204)
        items = [
            {
                "uid": u["uid"],
                "metadata": u["metadata"],
                "_embedded": {"leads": [{"id": u["lead_id"]}]},
            }
            for u in reversed(self.unsorted)
        ]
        return web.json_response({"_embedded": {"unsorted": items}})

    # -- tasks -------------------------------------------------------------------------------

    async def _add_tasks(self, request: web.Request) -> web.Response:
        answer = []
        for index, item in enumerate(await request.json()):
            task_id = next(self._ids)
            self.tasks[task_id] = {**item, "id": task_id, "is_completed": False}
            answer.append({"id": task_id, "request_id": str(item.get("request_id", index))})
        return web.json_response({"_embedded": {"tasks": answer}})

    async def _edit_tasks(self, request: web.Request) -> web.Response:
        answer = []
        for item in await request.json():
            task = self.tasks.get(item.get("id"))
            if task is None:
                return _problem(400, "Bad Request", detail=f"task {item.get('id')} not found")
            task.update(item)
            answer.append({"id": task["id"]})
        return web.json_response({"_embedded": {"tasks": answer}})

    async def _list_tasks(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        found = [
            t
            for t in self.tasks.values()
            if (query.get("filter[is_completed]") != "0" or not t["is_completed"])
            and (
                "filter[entity_type]" not in query
                or t.get("entity_type") == query["filter[entity_type]"]
            )
            and (
                "filter[entity_id][]" not in query
                or str(t.get("entity_id")) == query["filter[entity_id][]"]
            )
        ]
        if not found:
            return web.Response(status=204)
        return web.json_response({"_embedded": {"tasks": found}})


def _problem(status: int, title: str, *, detail: str = "") -> web.Response:
    body = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json"
    )
