"""The shipped CRM kinds and the checks of an endpoint against its kind."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .adapters import RECORDING_LINK_FIELDS, CrmAdapter, JsonWebhook, template_fields
from .amocrm import AmoCrmAdapter
from .bitrix24 import DEFAULT_USER, Bitrix24Adapter
from .config import CrmEndpoint
from .links import FORMATS

DEFAULT_ADAPTERS: Mapping[str, CrmAdapter] = MappingProxyType(
    {"webhook": JsonWebhook(), "amocrm": AmoCrmAdapter(), "bitrix24": Bitrix24Adapter()}
)
"""The shipped adapters by CrmEndpoint.kind (read-only; pass your own mapping to add kinds)."""

DEFAULT_RATES: Mapping[str, tuple[float, int]] = MappingProxyType(
    {"amocrm": (6.0, 6), "bitrix24": (2.0, 50)}
)
"""Requests per second and burst per account when the endpoint does not say. amoCRM allows 7
requests/s per integration: we send at most 6 in any second, because requests that leave on
time can still arrive bunched (the bench saw 8 within one second at the receiver, and a 429,
when sending 7 per second on a loaded machine). Bitrix24 drains its leaky bucket at 2/s and
blocks above 50."""


def subscribed(
    endpoints: tuple[CrmEndpoint, ...], adapters: Mapping[str, CrmAdapter], event_type: str
) -> list[str]:
    """Names of the endpoints that take `event_type`."""
    names = []
    for endpoint in endpoints:
        wanted = endpoint.events if endpoint.events is not None else adapters[endpoint.kind].events
        if event_type in wanted:
            names.append(endpoint.name)
    return names


def endpoint_problems(
    endpoint: CrmEndpoint, adapters: Mapping[str, CrmAdapter]
) -> list[tuple[str, str]]:
    """(config key, reason) for everything wrong with one endpoint."""
    name = endpoint.name
    if endpoint.kind not in adapters:
        return [
            (
                "kind",
                f"CRM endpoint {name!r}: unknown kind {endpoint.kind!r}"
                f" (one of {', '.join(sorted(adapters))})",
            )
        ]
    problems = []
    if not endpoint.url.startswith(("http://", "https://")):
        problems.append(("url", f"CRM endpoint {name!r}: url must be http(s)"))
    takes = adapters[endpoint.kind].events
    if endpoint.events is not None:
        unknown = sorted(endpoint.events - takes)
        if unknown:
            problems.append(
                (
                    "events",
                    f"CRM endpoint {name!r}: unknown event(s) {', '.join(unknown)}"
                    f" for kind {endpoint.kind} (one of {', '.join(sorted(takes))})",
                )
            )
    if endpoint.recording_link is not None:
        try:
            fields = template_fields(endpoint.recording_link)
        except ValueError as exc:
            problems.append(("recording_link", f"CRM endpoint {name!r}: recording_link: {exc}"))
        else:
            bad = sorted(fields - RECORDING_LINK_FIELDS)
            known = ", ".join("{" + f + "}" for f in sorted(RECORDING_LINK_FIELDS))
            if bad:
                problems.append(
                    (
                        "recording_link",
                        f"CRM endpoint {name!r}: recording_link uses unknown field(s)"
                        f" {', '.join('{' + b + '}' for b in bad)}"
                        f" (known: {known})",
                    )
                )
    link = endpoint.recording_link or ""
    if "{signature}" in link and not endpoint.link_secret:
        problems.append(
            (
                "recording_link",
                f"CRM endpoint {name!r}: recording_link is signed but [crm] link_secret is not set",
            )
        )
    if endpoint.recording_format not in FORMATS:
        problems.append(
            (
                "recording_format",
                f"CRM endpoint {name!r}: recording_format must be one of {', '.join(FORMATS)}",
            )
        )
    if endpoint.kind == "amocrm" and not endpoint.secret.strip() and endpoint.oauth is None:
        problems.append(
            ("kind", f"CRM endpoint {name!r}: amoCRM needs an access token or an [oauth] client")
        )
    if endpoint.kind == "bitrix24":
        if DEFAULT_USER not in endpoint.user_map:
            problems.append(
                (
                    "user_map",
                    f'CRM endpoint {name!r}: Bitrix24 needs user_map with a "*" user for'
                    " calls no agent answered",
                )
            )
        if endpoint.oauth is None and "/rest/" not in endpoint.url:
            problems.append(
                (
                    "url",
                    f"CRM endpoint {name!r}: Bitrix24 needs an incoming-webhook URL"
                    " (https://<portal>/rest/<user>/<code>/) or an [oauth] local app",
                )
            )
    if endpoint.oauth is not None and not (
        endpoint.oauth.client_id.strip() and endpoint.oauth.client_secret.strip()
    ):
        problems.append(("oauth", f"CRM endpoint {name!r}: empty OAuth client_id or secret"))
    if any(not s.strip() for s in endpoint.old_secrets):
        problems.append(("old_secrets", f"CRM endpoint {name!r}: empty secret in old_secrets"))
    if endpoint.rate_limit is not None and endpoint.rate_limit <= 0:
        problems.append(("rate_limit", f"CRM endpoint {name!r}: rate_limit must be positive"))
    return problems


def check_endpoints(endpoints: tuple[CrmEndpoint, ...], adapters: Mapping[str, CrmAdapter]) -> None:
    """Raise ValueError for unknown kinds, duplicate names, bad URLs, unknown event names or
    template fields and missing tokens (config errors)."""
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate CRM endpoint names in {names}")
    for endpoint in endpoints:
        problems = endpoint_problems(endpoint, adapters)
        if problems:
            raise ValueError(problems[0][1])
