"""The engine's HTTP API (aiohttp). For now: health and a status snapshot; the REST API and
dashboard of the operator-surfaces issue grow here."""

from __future__ import annotations

from .app import build_app, start_http

__all__ = ["build_app", "start_http"]
