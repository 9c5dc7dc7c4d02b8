"""A Bitrix24-shaped portal for tests: a real aiohttp server on loopback answering the REST
methods the engine calls the way the documentation shows them.

Built from:
- https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/telephony_externalcall_register.php
  (finds the CRM entity by number or creates a lead with CRM_CREATE; the same parameters before
  finish answer the same CALL_ID for 30 minutes), ..._finish.php (USER_ID, DURATION,
  STATUS_CODE; "the responsible of the lead becomes the given USER_ID", only for a lead the
  register created), telephony.externalCall.searchCrmEntities;
- .../telephony_externalCall_attachRecord.php (FILENAME "must end in wav or mp3"; with
  RECORD_URL "the portal makes one attempt to download the record from that address; on
  failure the method returns an error");
- https://apidocs.bitrix24.com/api-reference/how-to-call-rest-api/batch.html (`cmd` by name,
  `$result[name][FIELD]` references, `result` / `result_error` per command);
- https://apidocs.bitrix24.com/settings/performance/limits.html (a leaky bucket: more than X
  requests, draining Y per second, answer 503 QUERY_LIMIT_EXCEEDED; X=50, Y=2 on most plans);
- https://apidocs.bitrix24.com/api-reference/tasks/tasks-task-add.html (UF_CRM_TASK bindings);
- incoming webhooks at /rest/<user>/<code>/<method>.json, local apps with `auth` and OAuth at
  https://oauth.bitrix.info/oauth/token/ (refresh with grant_type=refresh_token, one use);
- https://apidocs.bitrix24.com/settings/oauth/index.html (the full protocol: the portal hands the
  application a `code` valid for 30 s, which the application exchanges once, with its
  client_secret, for access_token and refresh_token, GET oauth/token/?grant_type=
  authorization_code).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .ports import free_port

_REF = re.compile(r"\$result\[(\w+)\]\[(\w+)\]")


@dataclass
class BitrixPortal:
    port: int = field(default_factory=lambda: free_port("tcp"))
    webhook_code: str = "hookcode123"
    client_id: str = "local.app"
    client_secret: str = "app-secret"
    access_token: str = field(default_factory=lambda: "b24-" + secrets.token_hex(4))
    refresh_token: str = field(default_factory=lambda: "b24r-" + secrets.token_hex(4))
    capacity: int = 50
    drain: float = 2.0
    users: set[int] = field(default_factory=lambda: {1, 7, 9})
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Phone digits -> {CRM_ENTITY_TYPE, CRM_ENTITY_ID, ASSIGNED_BY_ID}."""
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    hits: list[tuple[str, float]] = field(default_factory=list)
    """(method, monotonic time) of every request that reached a method (batch counts once)."""
    limited: int = 0
    fetch_records: bool = False
    """Download each RECORD_URL while answering attachRecord, as the portal does (off for
    contract tests whose links point nowhere)."""
    downloads: list[dict[str, Any]] = field(default_factory=list)
    """What attachRecord fetched: {FILENAME, RECORD_URL, status, content_type, body}."""
    fail_finish: int = 0
    """Answer this many finish commands with an error in result_error."""
    refreshes: int = 0
    codes: dict[str, float] = field(default_factory=dict)
    """Authorization codes handed out and not used yet -> when they stop working."""
    hang_after: dict[str, int] = field(default_factory=dict)
    """Method -> how many calls of it are done and then answered only after `hang_seconds`
    (the client times out: "did it go through?")."""
    hang_seconds: float = 5.0
    _ids: Any = field(default_factory=lambda: itertools.count(500))
    _level: float = 0.0
    _stamp: float = field(default_factory=time.monotonic)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/rest/1/{self.webhook_code}/"

    def add_entity(self, phone: str, kind: str, entity_id: int, assigned: int) -> None:
        self.entities[phone.lstrip("+")] = {
            "CRM_ENTITY_TYPE": kind,
            "CRM_ENTITY_ID": entity_id,
            "ASSIGNED_BY_ID": assigned,
        }

    def issue_code(self, lifetime: float = 30.0) -> str:
        """What the portal's /oauth/authorize/ redirect gives the application: a code that
        works once, for `lifetime` seconds."""
        code = secrets.token_hex(8)
        self.codes[code] = time.monotonic() + lifetime
        return code

    async def start(self) -> BitrixPortal:
        app = web.Application()
        app.router.add_get("/oauth/token/", self._token)
        app.router.add_post("/rest/{method}.json", self._app_call)
        app.router.add_post("/rest/{user}/{code}/{method}.json", self._webhook_call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing ----------------------------------------------------------------------------

    def _admit(self) -> bool:
        now = time.monotonic()
        self._level = max(0.0, self._level - (now - self._stamp) * self.drain)
        self._stamp = now
        if self._level + 1 > self.capacity:
            self.limited += 1
            return False
        self._level += 1
        return True

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        ok = (q.get("client_id"), q.get("client_secret")) == (self.client_id, self.client_secret)
        if ok and q.get("grant_type") == "authorization_code":
            expires = self.codes.pop(q.get("code", ""), None)
            if expires is None or expires < time.monotonic():
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid authorization code"},
                    status=400,
                )
        elif (
            not ok
            or q.get("grant_type") != "refresh_token"
            or q.get("refresh_token") != (self.refresh_token)
        ):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid refresh token"},
                status=400,
            )
        else:
            self.refreshes += 1
        self.access_token = "b24-" + secrets.token_hex(4)
        self.refresh_token = "b24r-" + secrets.token_hex(4)
        return web.json_response(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": 3600,
                "client_endpoint": f"{self.url}/rest/",
                "member_id": "m1",
            }
        )

    async def _app_call(self, request: web.Request) -> web.Response:
        params = await request.json()
        if params.pop("auth", None) != self.access_token:
            return web.json_response(
                {"error": "expired_token", "error_description": "The access token expired"},
                status=401,
            )
        return await self._dispatch(request.match_info["method"], params)

    async def _webhook_call(self, request: web.Request) -> web.Response:
        if request.match_info["code"] != self.webhook_code:
            return web.json_response(
                {
                    "error": "INVALID_CREDENTIALS",
                    "error_description": "Invalid request credentials",
                },
                status=401,
            )
        return await self._dispatch(request.match_info["method"], await request.json())

    async def _dispatch(self, method: str, params: dict[str, Any]) -> web.Response:
        if not self._admit():
            return web.json_response(
                {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
                status=503,
            )
        self.hits.append((method, time.monotonic()))
        if method.lower() == "batch":
            return web.json_response({"result": await self._batch(params), "time": {}})
        result, error = await self._fetch_record(method, params) or self._method(method, params)
        if self.hang_after.get(method):
            self.hang_after[method] -= 1
            await asyncio.sleep(self.hang_seconds)  # done, but the answer comes too late
        if error is not None:
            return web.json_response(error, status=400)
        return web.json_response({"result": result, "time": {}})

    async def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, command in params.get("cmd", {}).items():
            method, _, query = command.partition("?")

            def ref(match: re.Match[str]) -> str:
                return str((results.get(match.group(1)) or {}).get(match.group(2), ""))

            query = _REF.sub(ref, query)
            args = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            result, error = await self._fetch_record(method, args) or self._method(method, args)
            if error is not None:
                errors[name] = error
            else:
                results[name] = result
        return {"result": results, "result_error": errors, "result_total": [], "result_next": []}

    async def _fetch_record(
        self, method: str, p: dict[str, Any]
    ) -> tuple[Any, dict[str, str] | None] | None:
        """attachRecord with a RECORD_URL, when the portal downloads: one attempt, no key (the
        link must work on its own); None for every other method."""
        if method.lower() != "telephony.externalcall.attachrecord" or not self.fetch_records:
            return None
        if not str(p.get("FILENAME", "")).endswith(("wav", "mp3")):
            return None, {"error": "WRONG_FILENAME", "error_description": "wav or mp3 only"}
        try:
            async with aiohttp.ClientSession() as http, http.get(p["RECORD_URL"]) as answer:
                got = {"status": answer.status, "content_type": answer.content_type,
                       "body": await answer.read()}  # fmt: skip
        except (aiohttp.ClientError, KeyError) as exc:
            got = {"status": 0, "content_type": "", "body": repr(exc).encode()}
        self.downloads.append({"FILENAME": p["FILENAME"], "RECORD_URL": p.get("RECORD_URL"), **got})
        if got["status"] != 200:
            return None, {"error": "ERROR_DOWNLOAD", "error_description": "record not downloaded"}
        return self._method(method, p)

    # -- methods -----------------------------------------------------------------------------

    def _method(self, method: str, p: dict[str, Any]) -> tuple[Any, dict[str, str] | None]:
        name = method.lower()
        if name == "telephony.externalcall.register":
            return self._register(p)
        if name == "telephony.externalcall.finish":
            call = self.calls.get(str(p.get("CALL_ID")))
            if call is None:
                return None, {"error": "ERROR_NOT_FOUND", "error_description": "Call not found"}
            if self.fail_finish:
                self.fail_finish -= 1
                return None, {"error": "ERROR_CORE", "error_description": "Internal error"}
            call.update(finished=True, DURATION=int(p["DURATION"]), STATUS_CODE=p["STATUS_CODE"])
            call["finish_params"] = dict(p)
            if call.get("created_lead"):  # the lead the register made follows finish's user
                lead = self.entities[str(call["params"]["PHONE_NUMBER"]).lstrip("+")]
                lead["ASSIGNED_BY_ID"] = int(p["USER_ID"])
            return {"CALL_ID": call["CALL_ID"]}, None
        if name == "telephony.externalcall.attachrecord":
            call = self.calls.get(str(p.get("CALL_ID")))
            if call is None:
                return None, {"error": "ERROR_NOT_FOUND", "error_description": "Call not found"}
            call.setdefault("records", []).append(p["RECORD_URL"])
            return {"FILE_ID": next(self._ids)}, None
        if name == "telephony.externalcall.searchcrmentities":
            found = self.entities.get(str(p.get("PHONE_NUMBER", "")).lstrip("+"))
            return ([found] if found else []), None
        if name == "tasks.task.add":
            task_id = next(self._ids)
            self.tasks[task_id] = {**p["fields"], "id": task_id, "status": "open"}
            return {"task": {"id": str(task_id)}}, None
        if name == "tasks.task.update":
            self.tasks[int(p["taskId"])].update(p["fields"])
            return {"task": {"id": str(p["taskId"])}}, None
        if name == "tasks.task.complete":
            self.tasks[int(p["taskId"])]["status"] = "done"
            return {"task": {"id": str(p["taskId"])}}, None
        if name == "tasks.task.list":
            wanted = p.get("filter", {})
            found = [
                {"id": str(t["id"]), "title": t["TITLE"], "deadline": t["DEADLINE"]}
                for t in self.tasks.values()
                if all(str(t.get(k)) == str(v) for k, v in wanted.items())
            ]
            return {"tasks": found}, None
        return None, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": method}

    def _register(self, p: dict[str, Any]) -> tuple[Any, dict[str, str] | None]:
        if int(p.get("USER_ID", 0)) not in self.users:
            return None, {"error": "USER_NOT_FOUND", "error_description": "Unknown USER_ID"}
        phone = str(p["PHONE_NUMBER"]).lstrip("+")
        for call in self.calls.values():  # same parameters, not finished: the same call
            if not call.get("finished") and call["params"] == p:
                return _register_answer(call), None
        entity = self.entities.get(phone)
        created = None
        if entity is None and str(p.get("CRM_CREATE")) == "1":
            created = next(self._ids)
            entity = {"CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": created,
                      "ASSIGNED_BY_ID": int(p["USER_ID"])}  # fmt: skip
            self.entities[phone] = entity
        call_id = f"externalCall.{secrets.token_hex(8)}"
        self.calls[call_id] = {"CALL_ID": call_id, "params": dict(p), "created_lead": created,
                               **(entity or {})}  # fmt: skip
        return _register_answer(self.calls[call_id]), None


def _register_answer(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "CALL_ID": call["CALL_ID"],
        "CRM_CREATED_LEAD": call.get("created_lead"),
        "CRM_ENTITY_TYPE": call.get("CRM_ENTITY_TYPE"),
        "CRM_ENTITY_ID": call.get("CRM_ENTITY_ID"),
    }
