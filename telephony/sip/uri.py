"""SIP and other URIs, name-addr and Via values (RFC 3261 sections 19.1, 20.10, 20.42, 25.1)."""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import quote, unquote

from . import grammar
from .errors import ParseError

logger = logging.getLogger(__name__)

__all__ = ["AbsoluteUri", "NameAddr", "SipUri", "Via", "format_host", "parse_uri"]

_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_SCHEME_PREFIX = re.compile(rf"({grammar.SCHEME}):")
_WSP = re.compile(r"[ \t]")
_NEEDS_QUOTING = re.compile(r'["\\]')


def _clip(text: str, limit: int = 80) -> str:
    """repr() of text cut to ``limit`` characters, for error messages."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _unescape(text: str) -> str:
    # Exactly one decoding pass (RFC 4475 3.1.1.3: %25%34%31 -> %41, never 'A').
    if "%" not in text:
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def _check_host(host: str, what: str) -> str:
    """Validate a host already matched by grammar.HOST; return it lower-cased."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ParseError(f"bad IPv6 reference in {what}: {_clip(host)}") from None
    elif host.startswith((".", "-")) or ".." in host:
        raise ParseError(f"bad host in {what}: {_clip(host)}")
    return host.lower()


def format_host(address: str) -> str:
    """An address as a URI or Via host: an IPv6 literal in brackets (RFC 3261 25.1
    IPv6reference, `sip:101@[::1]:5060`), anything else (IPv4, a name, an already bracketed
    reference) as given."""
    if ":" in address and not address.startswith("["):
        return f"[{address}]"
    return address


def _port(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if len(text) > 5 or int(text) > 65535:
        raise ParseError(f"port out of range in {what}: {_clip(text)}")
    return int(text)


def parse_params(text: str, pos: int, what: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` from ``text[pos:]`` up to the end.

    Names are lower-cased (they compare case-insensitively); values are kept as received,
    a quoted-string value keeps its quotes.
    """
    params: dict[str, str | None] = {}
    end = len(text)
    match = grammar.GENERIC_PARAM.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            if text[pos:].strip(" \t"):
                raise ParseError(f"malformed parameters in {what}: {_clip(text[pos:])}")
            break
        params[m.group("name").lower()] = m.group("value")
        pos = m.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class SipUri:
    """A sip: or sips: URI; user, password, parameters and headers are stored unescaped."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Self:
        m = grammar.SIP_URI.fullmatch(text)
        if m is None:
            raise ParseError(f"malformed SIP URI: {_clip(text)}")
        user = m.group("user")
        password = m.group("password")
        params: dict[str, str | None] = {}
        raw_params = m.group("params")
        if raw_params:
            for item in raw_params[1:].split(";"):
                name, eq, value = item.partition("=")
                params[_unescape(name).lower()] = _unescape(value) if eq else None
        headers: dict[str, str] = {}
        raw_headers = m.group("headers")
        if raw_headers:
            for item in raw_headers.split("&"):
                name, _, value = item.partition("=")
                headers[_unescape(name)] = _unescape(value)
        return cls(
            scheme=m.group("scheme").lower(),
            user=None if user is None else _unescape(user),
            password=None if password is None else _unescape(password),
            host=_check_host(m.group("host"), "URI"),
            port=_port(m.group("port"), "URI"),
            params=params,
            headers=headers,
        )

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, grammar.USER_SAFE))
            if self.password is not None:
                parts += [":", _escape(self.password, grammar.PASSWORD_SAFE)]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for name, value in self.params.items():
            parts += [";", _escape(name, grammar.PARAM_SAFE)]
            if value is not None:
                parts += ["=", _escape(value, grammar.PARAM_SAFE)]
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(
                    f"{_escape(k, grammar.HNV_SAFE)}={_escape(v, grammar.HNV_SAFE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(parts)

    @property
    def transport(self) -> str | None:
        """The ``transport`` URI parameter, lower-cased, or None."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True when the URI carries the loose-routing ``lr`` parameter."""
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.port


@dataclass
class AbsoluteUri:
    """Any URI whose scheme is not sip/sips (tel:, http:, isbn:...), kept opaque."""

    scheme: str
    opaque: str

    @classmethod
    def parse(cls, text: str) -> Self:
        m = grammar.ABSOLUTE_URI.fullmatch(text)
        if m is None:
            raise ParseError(f"malformed URI: {_clip(text)}")
        return cls(scheme=m.group("scheme").lower(), opaque=m.group("opaque"))

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """Parse a Request-URI or addr-spec: SipUri for sip/sips, AbsoluteUri otherwise."""
    m = _SCHEME_PREFIX.match(text)
    if m is None:
        raise ParseError(f"URI without scheme: {_clip(text)}")
    if m.group(1).lower() in ("sip", "sips"):
        return SipUri.parse(text)
    return AbsoluteUri.parse(text)


@dataclass
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters.

    ``display_name`` is unquoted and unescaped; parameter values are kept as received
    (a quoted-string value keeps its quotes).
    """

    display_name: str | None
    uri: SipUri | AbsoluteUri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.display_name, self.uri, {**self.params, "tag": tag})

    @classmethod
    def parse(cls, text: str) -> Self:
        s = text.strip(" \t")
        display: str | None = None
        if s.startswith('"'):
            m = re.match(grammar.QUOTED_STRING, s)
            if m is None:
                raise ParseError(f"unterminated quoted display name: {_clip(text)}")
            display = _QUOTED_PAIR.sub(r"\1", m.group()[1:-1])
            rest = s[m.end() :].lstrip(" \t")
            if not rest.startswith("<"):
                raise ParseError(f"quoted display name without <URI>: {_clip(text)}")
            lt = 0
            s = rest
        else:
            lt = s.find("<")
        if lt >= 0:
            if lt > 0:
                name = s[:lt].rstrip(" \t")
                if not grammar.TOKEN_DISPLAY_NAME.fullmatch(name):
                    raise ParseError(f"display name needs quoting: {_clip(name)}")
                display = name
            gt = s.find(">", lt)
            if gt < 0:
                raise ParseError(f"missing '>' in {_clip(text)}")
            uri = parse_uri(s[lt + 1 : gt])
            pos = gt + 1
        else:
            # addr-spec form: the URI ends at the first ';' or LWS, and ';...' are header
            # parameters.  A URI with ',', '?' or ';' must be in <> (RFC 3261 20.10).
            m2 = re.search(r"[; \t]", s)
            pos = m2.start() if m2 else len(s)
            spec = s[:pos]
            if "?" in spec or "," in spec:
                raise ParseError(f"URI with '?' or ',' must be enclosed in <>: {_clip(text)}")
            uri = parse_uri(spec)
        params = parse_params(s, pos, "name-addr")
        return cls(display, uri, params)

    def __str__(self) -> str:
        head = ""
        if self.display_name is not None:
            escaped = _NEEDS_QUOTING.sub(r"\\\g<0>", self.display_name)
            head = f'"{escaped}" '
        return f"{head}<{self.uri}>{format_params(self.params)}"


@dataclass
class Via:
    """One via-parm (RFC 3261 20.42); parameter names are lower-cased."""

    protocol: str = "SIP/2.0"
    transport: str = "UDP"
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Self:
        s = text.strip(" \t")
        m = grammar.VIA_PARM.match(s)
        if m is None:
            raise ParseError(f"malformed Via: {_clip(text)}")
        params = parse_params(s, m.end(), "Via")
        return cls(
            protocol=f"{m.group('protocol').upper()}/{m.group('version')}",
            transport=m.group("transport").upper(),
            host=_check_host(m.group("host"), "Via"),
            port=_port(m.group("port"), "Via"),
            params=params,
        )

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """None when absent, '' when present without a value, else the value."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port
