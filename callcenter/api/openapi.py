"""The OpenAPI 3.1 document of the REST API, served at GET /api/openapi.json.

Each handler carries its own declaration (`@operation(...)`, next to the handler), so the
document is built from the running router: a route without a declaration is a test failure
(tests/e2e/test_openapi.py), and the roles come from the handler's `@requires`. Schemas of
stored rows are derived from the dataclasses the handlers serialize.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from .security import ALL_ROLES, PUBLIC_PATHS, roles_of

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Schema = dict[str, Any]

MAX_LIMIT = 500
"""Largest page a list endpoint returns."""
DEFAULT_LIMIT = 50

ERROR = {"$ref": "#/components/schemas/Error"}
ROW_ID = {"type": "string", "pattern": r"^[0-9]{1,18}$", "description": "Row id (digits)."}
EXTENSION = {"type": "string", "description": "Extension number, e.g. 101."}


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers."""

    summary: str
    responses: Mapping[int, Schema | None]
    """Success status -> JSON schema of the body (None: no JSON body, see `produces`)."""
    description: str = ""
    tag: str = "engine"
    path: Mapping[str, Schema] = field(default_factory=dict)
    """Schemas of path parameters (default: any string)."""
    query: tuple[Param, ...] = ()
    body: Schema | None = None
    """JSON request body schema, if the operation takes one."""
    body_type: str = "application/json"
    body_required: bool = True
    produces: str = "application/json"
    errors: tuple[int, ...] = ()
    """Error statuses worth naming (every operation has 401 and a default error)."""
    public: bool = False
    """No key needed."""
    extra_auth: str = ""
    """How else it may be reached, for the description (e.g. /metrics from loopback)."""


def operation(**spec: Any) -> Callable[[F], F]:
    """Attach an Operation to a handler (works above or below `@requires`)."""
    op = Operation(**spec)

    def attach(handler: F) -> F:
        handler.__openapi__ = op  # type: ignore[attr-defined]
        return handler

    return attach


def declaration(handler: Any) -> Operation | None:
    return getattr(handler, "__openapi__", None)


def paged(*extra: Param) -> tuple[Param, ...]:
    """Query parameters of a list endpoint: its filters, then limit and offset."""
    return (
        *extra,
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "Page size.",
        ),
        Param(
            "offset",
            {"type": "integer", "minimum": 0, "default": 0},
            "Rows to skip: pass the previous page's `next_offset`.",
        ),
    )


def page_of(key: str, item: Schema) -> Schema:
    """A page: the items under `key`, the page's limit and offset, and where the next begins."""
    return {
        "type": "object",
        "required": [key, "limit", "offset", "next", "next_offset"],
        "properties": {
            key: {"type": "array", "items": item},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {
                "type": ["integer", "null"],
                "description": "offset of the next page; null on the last page",
            },
            "next": {
                "type": ["string", "null"],
                "description": "path and query of the next page; null on the last page",
            },
        },
    }


def read_page(query: Mapping[str, str]) -> tuple[int, int]:
    """(limit, offset) of a list request; ApiError 400 when they are not sane numbers."""
    from .security import ApiError

    values = []
    for name, default, low, high in (
        ("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        ("offset", 0, 0, 10**12),
    ):
        text = query.get(name)
        if text is None:
            values.append(default)
            continue
        if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 14:
            raise ApiError(400, f"{name} must be a whole number, not {text[:40]!r}")
        value = int(text)
        if not low <= value <= high:
            raise ApiError(400, f"{name} must be {low}..{high}")
        values.append(value)
    return values[0], values[1]


def page_json(
    request: web.Request, key: str, items: list[Any], *, limit: int, offset: int, more: bool
) -> dict[str, Any]:
    """A page for the client, with the link to the next one when there is more."""
    following = offset + limit if more else None
    link = None
    if following is not None:
        link = str(request.rel_url.update_query(limit=str(limit), offset=str(following)))
    return {key: items, "limit": limit, "offset": offset, "next_offset": following, "next": link}


# -- schemas from dataclasses ------------------------------------------------------------------

_SCALARS = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "time": {"type": "string"},
    "CampaignState": {"type": "string"},
}


def _type_schema(text: str) -> Schema:
    text = text.strip()
    parts = [p.strip() for p in _split_union(text)]
    if len(parts) > 1:
        return {"anyOf": [_type_schema(p) for p in parts]}
    if text == "None":
        return {"type": "null"}
    if text in _SCALARS:
        return dict(_SCALARS[text])
    match = re.fullmatch(r"(?:tuple|list)\[(\w+)(?:, \.\.\.)?\]", text)
    if match:
        return {"type": "array", "items": _type_schema(match.group(1))}
    if text.startswith(("dict[", "Mapping[")):
        return {"type": "object"}
    return {}


def _split_union(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def dataclass_schema(cls: type, *, description: str = "") -> Schema:
    """JSON schema of `cls.to_json()`-style output: every field, typed from its annotation."""
    props = {
        f.name: _type_schema(f.type if isinstance(f.type, str) else f.type.__name__)
        for f in dataclasses.fields(cls)
    }
    schema: Schema = {"type": "object", "properties": props, "required": sorted(props)}
    if description or cls.__doc__:
        schema["description"] = description or (cls.__doc__ or "").strip()
    return schema


def _components() -> dict[str, Schema]:
    from crm_bridge import models
    from dialer import Campaign

    campaign = dataclass_schema(Campaign, description="A campaign's settings and state.")
    campaign["properties"]["retry_delays"] = {"type": "object"}
    campaign["properties"]["state"] = {"type": "string"}
    campaign["properties"]["progress"] = {"$ref": "#/components/schemas/CampaignProgress"}
    campaign["properties"]["amd_summary"] = {
        "type": "object",
        "description": "AMD verdict counts, median decision time, mean confidence, and quality "
        "(false person / false machine rates from agents' dispositions).",
    }
    campaign["required"] = ["id", "name", "state"]
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "reason", "request_id"],
                    "properties": {
                        "status": {"type": "integer", "description": "The HTTP status."},
                        "reason": {"type": "string", "description": "What was wrong, for people."},
                        "request_id": {
                            "type": ["string", "null"],
                            "description": "Also in X-Request-Id and the engine log.",
                        },
                    },
                }
            },
        },
        "Call": dataclass_schema(models.Call),
        "Task": dataclass_schema(models.Task),
        "Contact": dataclass_schema(models.Contact),
        "Campaign": campaign,
        "CampaignProgress": {
            "type": "object",
            "properties": {
                name: {"type": "integer"}
                for name in (
                    "total",
                    "dialled",
                    "answered_human",
                    "answered_machine",
                    "connected",
                    "abandoned",
                    "remaining",
                    "done",
                    "dnc",
                    "in_flight",
                )
            },
        },
    }


# -- the document ------------------------------------------------------------------------------

_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(METHOD, OpenAPI path, handler) of every route (HEAD twins of GETs left out)."""
    found = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if "prefix" in info and "path" not in info and "formatter" not in info:
            path = path.rstrip("/") + "/{filename}"
        found.append((route.method, _PATH_PARAM.sub(r"{\1}", path), route.handler))
    return found


def undocumented(app: web.Application) -> list[str]:
    return [f"{m} {p}" for m, p, h in routes(app) if declaration(h) is None]


def build_document(app: web.Application, *, version: str = "1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in routes(app):
        op = declaration(handler)
        if op is None:
            logger.warning("OpenAPI: %s %s has no declaration", method, path)
            continue
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, handler, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callcenter engine API",
            "version": version,
            "description": (
                "REST API of the contact-center engine. Every request but /health and "
                "/api/openapi.json needs an API key (`Authorization: Bearer <key>`); each "
                "operation names the roles (`x-roles`) allowed. Errors always have the body "
                '`{"error": {"status", "reason", "request_id"}}`. Every response carries '
                "X-Request-Id: the client's (1-128 of A-Z a-z 0-9 . _ : -) or a new one. "
                f"Lists take `limit` (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}) and "
                "`offset`, and answer `next_offset` and `next` (null on the last page)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from the config's [[api_keys]].",
                }
            },
            "headers": {
                "X-Request-Id": {"description": "The request's id.", "schema": {"type": "string"}}
            },
        },
    }


def _operation(method: str, path: str, handler: Any, op: Operation) -> dict[str, Any]:
    public = op.public or path in PUBLIC_PATHS
    roles = roles_of(handler)
    rid = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    responses: dict[str, Any] = {}
    for status, schema in op.responses.items():
        content = {op.produces: {"schema": schema}} if schema is not None else {op.produces: {}}
        responses[str(status)] = {"description": "success", "headers": rid, "content": content}
    error = {"content": {"application/json": {"schema": ERROR}}, "headers": rid}
    named = set(op.errors)
    if not public:
        named.add(401)
        if set(roles) != set(ALL_ROLES):
            named.add(403)
    for status in sorted(named):
        responses[str(status)] = {"description": _ERROR_TEXT.get(status, "refused"), **error}
    responses["default"] = {"description": "any other error", **error}
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": op.path.get(name, {"type": "string"}),
        }
        for name in _PATH_PARAM.findall(path)
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "schema": p.schema,
            **({"description": p.description} if p.description else {}),
        }
        for p in op.query
    ]
    role_text = "none (public)" if public else ", ".join(roles)
    description = op.description.strip()
    description += f"\n\nRoles: {role_text}." + (f" {op.extra_auth}" if op.extra_auth else "")
    out: dict[str, Any] = {
        "summary": op.summary,
        "description": description.strip(),
        "operationId": f"{method.lower()}{_op_name(path)}",
        "tags": [op.tag],
        "x-roles": [] if public else list(roles),
        "parameters": params,
        "responses": responses,
    }
    if public:
        out["security"] = [{}] if not op.extra_auth else [{}, {"bearer": []}]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {op.body_type: {"schema": op.body}},
        }
    return out


def _op_name(path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path.replace("{", "by_"))
    return "".join(w[:1].upper() + w[1:] for w in words)


_ERROR_TEXT = {
    400: "malformed request (the reason says what)",
    401: "missing or unknown API key",
    403: "the key's role may not do this",
    404: "no such row",
    409: "the state forbids it now",
    503: "this engine runs without a database",
}


@operation(
    summary="This document",
    responses={200: {"type": "object"}},
    tag="meta",
    public=True,
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
