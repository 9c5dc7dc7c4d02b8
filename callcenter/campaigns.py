"""Campaigns as the API and CLI show them (the supervisor itself is dialer.CampaignSupervisor)."""

from __future__ import annotations

import dataclasses
from typing import Any


def campaign_json(stored: Any, progress: Any | None = None) -> dict[str, Any]:
    """A campaign (and its progress) for the API."""
    data = {
        f.name: getattr(stored, f.name)
        for f in dataclasses.fields(stored)
        if isinstance(getattr(stored, f.name), str | int | float | bool | type(None) | tuple | list)
    }
    for key, value in list(data.items()):
        if isinstance(value, tuple):
            data[key] = list(value)
    for name in ("window_start", "window_end", "created_at", "updated_at"):
        value = getattr(stored, name, None)
        if value is not None:
            data[name] = value.isoformat()
    data["retry_delays"] = dict(getattr(stored, "retry_delays", {}) or {})
    if progress is not None:
        data["progress"] = dataclasses.asdict(progress)
    return data
