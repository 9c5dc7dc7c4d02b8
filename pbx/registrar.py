"""Registrar and location service (RFC 3261 section 10): where each extension can be reached.

Pure: time comes in as `now`. A binding remembers the transport peer the REGISTER came from, so
the engine reaches a phone the way the phone reached it (symmetric signalling; a TCP phone is
called over its own connection).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from telephony.sip import NameAddr, SipRequest, SipUri

logger = logging.getLogger(__name__)

Peer = tuple[str, str, int]


@dataclass
class Binding:
    extension: str
    contact: NameAddr
    """The Contact as registered, parameters included (q, expires, +sip.instance...)."""
    peer: Peer
    """Where requests for this binding go."""
    expires_at: float
    call_id: str
    cseq: int
    static: bool = False
    path: tuple[str, ...] = ()
    """The REGISTER's Path header values (RFC 3327): the proxies between us and the phone, in
    order; requests for the binding carry them as Route headers and go to `peer`, the first of
    them (the REGISTER came from there)."""
    node: str | None = None
    """The engine node that holds the registration when not this one (a binding another node
    took, seen through the shared store): rung, but not pinged, from here."""
    reachable: bool = True
    """False once a keepalive OPTIONS went unanswered: the binding is kept (the phone may be
    back before it expires) but not rung; an answer to a later ping or a new REGISTER clears
    it."""

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))

    def route_headers(self) -> list[tuple[str, str]]:
        """The Route lines of a request to this binding (its Path), none for a direct one."""
        return [("Route", hop) for hop in self.path]


class RegistrationError(Exception):
    """A REGISTER the registrar refuses; status and headers of the response."""

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or []


class Registrar:
    def __init__(
        self, *, min_expires: int = 60, max_expires: int = 3600, default_expires: int = 3600
    ) -> None:
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = min(default_expires, max_expires)
        self._bindings: dict[str, list[Binding]] = {}
        self._remote: dict[str, list[Binding]] = {}
        """Bindings other nodes hold, by extension (`set_remote`)."""
        self.on_change: Callable[[str, list[Binding]], None] | None = None
        """Gets an extension's bindings after every REGISTER that changed them (persistence)."""

    def add_static(self, extension: str, uri: SipUri) -> None:
        """A phone that never registers (configured static contact)."""
        # sips: is TLS to port 5061 unless said otherwise (RFC 3261 19.1.2, 26.2.2).
        secure = uri.scheme == "sips"
        transport = (uri.transport or ("tls" if secure else "udp")).lower()
        peer: Peer = (
            transport,
            uri.host.strip("[]"),
            uri.port or (5061 if transport == "tls" else 5060),
        )
        contact = NameAddr(display_name=None, uri=uri, params={})
        binding = Binding(extension, contact, peer, float("inf"), "static", 0, static=True)
        self._bindings.setdefault(extension, []).append(binding)

    def register(
        self, extension: str, request: SipRequest, peer: Peer, *, now: float
    ) -> list[Binding]:
        """Apply a REGISTER (already authenticated as `extension`); returns the current bindings."""
        self.prune(now)
        call_id, cseq = request.call_id, request.cseq.seq
        path = tuple(request.headers.get_all("Path"))
        header_expires = request.expires
        current = self._bindings.setdefault(extension, [])
        if request.contact_star:
            if header_expires != 0 or len(request.contacts) > 0:
                raise RegistrationError(400, "Contact: * needs Expires: 0 and no other Contact")
            current[:] = [b for b in current if b.static]
            logger.info("registrar: %s unregistered all contacts", extension)
            self._changed(extension, current)
            return list(current)
        for contact in request.contacts:
            expires = _contact_expires(contact, header_expires, self.default_expires)
            if 0 < expires < self.min_expires:
                raise RegistrationError(
                    423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))]
                )
            expires = min(expires, self.max_expires)
            existing = next(
                (b for b in current if _same_uri(b.contact, contact) and not b.static), None
            )
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                # RFC 3261 10.3 step 7: an older or repeated request must not undo a newer one.
                raise RegistrationError(500, "Out of order REGISTER")
            if existing is not None:
                current.remove(existing)
            if expires == 0:
                logger.info("registrar: %s removed %s", extension, contact.uri)
                continue
            stored = NameAddr(
                display_name=contact.display_name,
                uri=contact.uri,
                params={k: v for k, v in contact.params.items() if k != "expires"},
            )
            current.append(
                Binding(extension, stored, peer, now + expires, call_id, cseq, path=path)
            )
            if existing is None:
                logger.info(
                    "registrar: %s registered %s from %s:%d for %d s",
                    extension,
                    contact.uri,
                    peer[1],
                    peer[2],
                    expires,
                )
        self._changed(extension, current)
        return list(current)

    def restore(self, binding: Binding) -> None:
        """A binding remembered from before a restart."""
        self._bindings.setdefault(binding.extension, []).append(binding)

    def drop_flow(self, peer: Peer) -> list[str]:
        """The connection `peer` is gone for good (a WebSocket closed: nobody can open one to a
        browser, RFC 7118 5): its bindings go now rather than at expiry. Returns the
        extensions that lost one."""
        touched = []
        for extension, bindings in list(self._bindings.items()):
            kept = [b for b in bindings if b.static or b.peer != peer]
            if len(kept) == len(bindings):
                continue
            touched.append(extension)
            logger.info("registrar: %s's connection from %s:%d closed", extension, *peer[1:])
            if kept:
                self._bindings[extension] = kept
            else:
                del self._bindings[extension]
            self._changed(extension, kept)
        return touched

    def set_remote(self, extension: str, bindings: list[Binding]) -> None:
        """Replace what other nodes hold for `extension` (from the shared store)."""
        if bindings:
            self._remote[extension] = list(bindings)
        else:
            self._remote.pop(extension, None)

    def _changed(self, extension: str, current: list[Binding]) -> None:
        if self.on_change is not None:
            self.on_change(extension, [b for b in current if not b.static])

    def lookup(
        self, extension: str, *, now: float, include_unreachable: bool = False
    ) -> list[Binding]:
        """The live bindings of `extension`, this node's first, then those other nodes hold
        (a contact this node holds too is not repeated); without those a keepalive found
        unreachable unless `include_unreachable`."""
        own = [
            b
            for b in self._bindings.get(extension, [])
            if b.expires_at > now and (b.reachable or include_unreachable)
        ]
        remote = self._remote.get(extension)
        if not remote:
            return own
        seen = {str(b.contact.uri) for b in self._bindings.get(extension, [])}
        for binding in sorted(remote, key=lambda b: -b.expires_at):
            uri = str(binding.contact.uri)
            if binding.expires_at > now and uri not in seen:
                seen.add(uri)
                own.append(binding)
        return own

    def registered(self, *, now: float) -> list[Binding]:
        """Every live binding made by a REGISTER to this node (not static), reachable or not."""
        return [
            b
            for bindings in self._bindings.values()
            for b in bindings
            if not b.static and b.expires_at > now
        ]

    def prune(self, now: float) -> None:
        for extension in list(self._bindings):
            live = [b for b in self._bindings[extension] if b.expires_at > now]
            if live:
                self._bindings[extension] = live
            else:
                del self._bindings[extension]
        for extension in list(self._remote):
            live = [b for b in self._remote[extension] if b.expires_at > now]
            self.set_remote(extension, live)

    def contact_headers(self, bindings: list[Binding], *, now: float) -> list[tuple[str, str]]:
        """The Contact lines of a 200 to REGISTER: every current binding with its expires."""
        lines = []
        for binding in bindings:
            if binding.static:
                continue
            params = {**binding.contact.params, "expires": str(binding.expires_in(now))}
            contact = NameAddr(
                display_name=binding.contact.display_name, uri=binding.contact.uri, params=params
            )
            lines.append(("Contact", str(contact)))
        return lines

    @staticmethod
    def path_headers(request: SipRequest) -> list[tuple[str, str]]:
        """The Path lines a 200 to REGISTER echoes: the request's, when the phone said it
        supports Path (RFC 3327 5.3)."""
        supported = {v.strip().lower() for v in request.headers.get_all("Supported")}
        if "path" not in supported:
            return []
        return [("Path", hop) for hop in request.headers.get_all("Path")]


def _contact_expires(contact: NameAddr, header: int | None, default: int) -> int:
    value = contact.params.get("expires")
    if value is not None and value.isdigit():
        return int(value)
    if header is not None:
        return header
    return default


def _same_uri(a: NameAddr, b: NameAddr) -> bool:
    return str(a.uri) == str(b.uri)
