"""SIP digest authentication, both sides (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760).

Works on header VALUE strings only (``WWW-Authenticate``, ``Proxy-Authenticate``,
``Authorization``, ``Proxy-Authorization``): it knows nothing of SIP messages, so the message
parser and this module do not depend on each other.

Server side: :class:`DigestServer` issues challenges and verifies credentials. Nonces come from a
:class:`NonceManager`: an HMAC over (timestamp, random) under a secret passed in, so their
integrity and age are checked without state; only nonces that were actually used are tracked,
to refuse replays, in bounded memory.

Client side: :func:`build_authorization` answers a challenge (our outbound trunk registration).

Field notes that shaped the rules (checked on loopback against the packaged peers):

- baresip 1.0.0 (libre 1.1.0) fails the whole registration ("Function not implemented") as
  soon as ANY challenge header names an algorithm other than MD5, even with an MD5 one next
  to it; SIPp 3.6.1 reads the first ``algorithm=`` of all challenges and knows only MD5. So the
  default offer is MD5 alone; ``DigestConfig.algorithms=("SHA-256", "MD5")`` is the RFC 8760
  offer (preferred first) for fleets of newer phones.
- pyVoIP 1.6.8 answers with the RFC 2069 form (no qop, no cnonce, no nc) even when qop is
  offered, always with ``algorithm=MD5``, keeps only the LAST ``WWW-Authenticate`` header and
  cannot read quoted values holding a comma. Hence ``allow_no_qop`` (default on), one nonce
  shared by all the challenge headers of a response (pyVoIP's MD5 answer to whichever header
  it kept is then valid), and nonces drawn from the base64url alphabet. pyVoIP also puts its
  registrar URI in the ``uri`` of an INVITE's credentials, so digest-uri checking is off by
  default.
- A failed check of the nonce (stale, replayed, or minted by a previous process or another
  node) is only reported once the response itself proved the password right, so the caller can
  answer ``stale=true`` and the phone retries silently instead of prompting for a password.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import re
import secrets
import struct
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .errors import SipError

logger = logging.getLogger(__name__)

__all__ = [
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestConfig",
    "DigestError",
    "DigestServer",
    "NonceManager",
    "NonceState",
    "build_authorization",
    "choose_challenge",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_credentials",
    "supported_algorithms",
]


class DigestError(SipError):
    """A digest header value that cannot be parsed, or a challenge we cannot answer.

    Root of this module's errors, under the SIP layer's root. A malformed ``Authorization``
    from a peer is answered with a fresh challenge (401/407), not a 400, so that is the status
    carried here.
    """

    status_code = 401


# --------------------------------------------------------------------------------------------
# Grammar (RFC 3261 section 25.1, the rules named in sections 20.7, 20.44 and 22.4)

# LWS  =  [*WSP CRLF] 1*WSP ; linear whitespace
_FOLD = re.compile(r"\r?\n[ \t]+")
"""A folded line; the parser unfolds to a single SP first (RFC 3261 7.3.1: same meaning)."""

# SWS  =  [LWS] ; sep whitespace (after unfolding: spaces and tabs)
_WSP = " \t"

# token  =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = re.compile(rf"[{_TOKEN_CHARS}]+")
_TOKEN_FULL = re.compile(rf"[{_TOKEN_CHARS}]+\Z")

# quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QUOTED_STRING = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
"""Characters a quoted-string can carry only as a quoted-pair (CR and LF not at all)."""

# auth-param  =  auth-param-name EQUAL ( token / quoted-string )
# EQUAL       =  SWS "=" SWS
# Leniency: an unquoted value may hold any visible character but DQUOTE and COMMA, because
# clients send ``uri=sip:host`` or ``nonce=abc/def=`` without quotes.
_PARAM_NAME = _TOKEN
_EQUAL = re.compile(r"[ \t]*=[ \t]*")
_BARE_VALUE = re.compile(r'[^\x00-\x20\x7f",]+')

# COMMA  =  SWS "," SWS
_COMMA = re.compile(r"[ \t]*,[ \t]*")

# nonce-count  =  "nc" EQUAL nc-value ;  nc-value  =  8LHEX
# Leniency: 1 to 8 hex digits of either case; the digest is computed over the string as sent.
_NC_VALUE = re.compile(r"[0-9A-Fa-f]{1,8}\Z")

# username* (RFC 7616 3.4.4, RFC 8187):  UTF-8'lang'percent-encoded
_EXT_VALUE = re.compile(r"(?i:utf-8)'[^']*'(.*)\Z", re.DOTALL)

_SCHEME = "digest"
_DEFAULT_ALGORITHM = "MD5"
_QOP_AUTH = "auth"
_QOP_AUTH_INT = "auth-int"
_QOP_KNOWN = (_QOP_AUTH, _QOP_AUTH_INT)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WSP:
        pos += 1
    return pos


def _unquote(raw: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", raw)


def _quote(value: str) -> str:
    """A quoted-string; CR and LF cannot be escaped in SIP, so they are refused."""
    if "\r" in value or "\n" in value:
        raise DigestError("CR or LF in a quoted value")
    return '"' + _NEEDS_ESCAPE.sub(r"\\\g<0>", value) + '"'


def _check_encodable(value: str) -> None:
    # Values are hashed as UTF-8; bytes decoded with surrogateescape round-trip, lone
    # surrogates from elsewhere cannot be hashed and would raise deep inside verify().
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise DigestError("header value holds unencodable characters") from exc


def _parse_auth_value(value: str) -> tuple[str, dict[str, str], dict[str, bool]]:
    """Split ``Scheme name=value, name="value"`` into (scheme, params, was_quoted).

    Parameter names are lowercased; values are unquoted. Empty list elements are skipped
    (``#rule`` leniency); a parameter given twice is an error (RFC 7616 section 3.4).
    """
    if not isinstance(value, str):
        raise DigestError(f"header value must be str, not {type(value).__name__}")
    _check_encodable(value)
    text = _FOLD.sub(" ", value)
    pos = _skip_ws(text, 0)
    scheme_match = _TOKEN.match(text, pos)
    if scheme_match is None:
        raise DigestError("missing auth scheme")
    scheme = scheme_match.group()
    if scheme.lower() != _SCHEME:
        raise DigestError(f"unsupported auth scheme {scheme[:32]!r}")
    pos = scheme_match.end()
    params: dict[str, str] = {}
    quoted: dict[str, bool] = {}
    end = len(text)
    ws = _skip_ws(text, pos)
    if ws == pos and pos < end:
        raise DigestError("no whitespace after the auth scheme")
    pos = ws
    while pos < end:
        comma = _COMMA.match(text, pos)
        if comma is not None:  # an empty list element
            pos = comma.end()
            continue
        name_match = _PARAM_NAME.match(text, pos)
        if name_match is None:
            raise DigestError(f"bad auth-param at offset {pos}")
        name = name_match.group().lower()
        eq = _EQUAL.match(text, name_match.end())
        if eq is None:
            raise DigestError(f"auth-param {name[:32]!r} has no '='")
        pos = eq.end()
        if pos < end and text[pos] == '"':
            q = _QUOTED_STRING.match(text, pos)
            if q is None:
                raise DigestError(f"unterminated or invalid quoted value for {name[:32]!r}")
            param_value = _unquote(q.group(1))
            was_quoted = True
            pos = q.end()
        else:
            b = _BARE_VALUE.match(text, pos)
            if b is None:
                raise DigestError(f"auth-param {name[:32]!r} has no value")
            param_value = b.group()
            was_quoted = False
            pos = b.end()
        if name in params:
            raise DigestError(f"auth-param {name[:32]!r} given twice")
        params[name] = param_value
        quoted[name] = was_quoted
        pos = _skip_ws(text, pos)
        if pos < end:
            sep = _COMMA.match(text, pos)
            if sep is None:
                raise DigestError(f"expected ',' at offset {pos}")
            pos = sep.end()
    if not params:
        raise DigestError("digest header value without parameters")
    return scheme, params, quoted


def _render_params(pairs: Iterable[tuple[str, str, bool]]) -> str:
    parts = []
    for name, value, quoted in pairs:
        if quoted:
            parts.append(f"{name}={_quote(value)}")
        else:
            if _TOKEN_FULL.match(value) is None:
                raise DigestError(f"value of {name} is not a token: {value[:32]!r}")
            parts.append(f"{name}={value}")
    return "Digest " + ", ".join(parts)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


# --------------------------------------------------------------------------------------------
# Wire objects


@dataclass(frozen=True)
class Challenge:
    """One digest challenge: the value of a ``WWW-Authenticate`` or ``Proxy-Authenticate``."""

    realm: str
    """Protection space shown to the user; part of HA1."""

    nonce: str
    """Server-chosen value the response is bound to."""

    algorithm: str | None = None
    """``MD5``, ``SHA-256``... as received; ``None`` when absent (meaning MD5)."""

    qop: tuple[str, ...] = ()
    """Offered qop options (``auth``, ``auth-int``); empty for an RFC 2069 challenge."""

    opaque: str | None = None
    """Server data the client must echo unchanged."""

    stale: bool = False
    """True when the previous response was right but its nonce was not: retry, don't prompt."""

    domain: str | None = None
    """Space-separated URIs of the protection space (rare in SIP)."""

    userhash: bool = False
    """RFC 7616: the server accepts a hashed username."""

    extra: tuple[tuple[str, str], ...] = ()
    """Unknown parameters, lowercase names, in order of appearance."""

    @property
    def effective_algorithm(self) -> str:
        """The algorithm in force: the one named, or MD5 by default."""
        return self.algorithm or _DEFAULT_ALGORITHM

    @classmethod
    def parse(cls, value: str) -> Challenge:
        """Parse a challenge header value; raises :class:`DigestError`."""
        _, params, _ = _parse_auth_value(value)
        realm = params.pop("realm", None)
        nonce = params.pop("nonce", None)
        if realm is None or nonce is None:
            raise DigestError("challenge lacks realm or nonce")
        qop_raw = params.pop("qop", None)
        qop = tuple(q.strip() for q in qop_raw.split(",") if q.strip()) if qop_raw else ()
        return cls(
            realm=realm,
            nonce=nonce,
            algorithm=params.pop("algorithm", None),
            qop=qop,
            opaque=params.pop("opaque", None),
            stale=_flag(params.pop("stale", None)),
            domain=params.pop("domain", None),
            userhash=_flag(params.pop("userhash", None)),
            extra=tuple(params.items()),
        )

    def __str__(self) -> str:
        pairs: list[tuple[str, str, bool]] = [("realm", self.realm, True)]
        if self.domain is not None:
            pairs.append(("domain", self.domain, True))
        pairs.append(("nonce", self.nonce, True))
        if self.opaque is not None:
            pairs.append(("opaque", self.opaque, True))
        if self.stale:
            pairs.append(("stale", "true", False))
        if self.algorithm is not None:
            pairs.append(("algorithm", self.algorithm, False))
        if self.qop:
            pairs.append(("qop", ",".join(self.qop), True))
        if self.userhash:
            pairs.append(("userhash", "true", False))
        pairs.extend((name, value, True) for name, value in self.extra)
        return _render_params(pairs)


@dataclass(frozen=True)
class Credentials:
    """Digest credentials: the value of an ``Authorization`` or ``Proxy-Authorization``."""

    username: str
    """The user, as typed (or ``H(user:realm)`` when :attr:`userhash`)."""

    realm: str
    """Realm echoed from the challenge."""

    nonce: str
    """Nonce echoed from the challenge."""

    uri: str
    """digest-uri: the Request-URI as the client saw it."""

    response: str
    """The hex digest proving knowledge of the password."""

    algorithm: str | None = None
    """As received; ``None`` when absent (meaning MD5)."""

    qop: str | None = None
    """The chosen qop (``auth``/``auth-int``); ``None`` for the RFC 2069 form."""

    nc: str | None = None
    """Nonce count, hex, exactly as sent (it is hashed as a string)."""

    cnonce: str | None = None
    """Client nonce."""

    opaque: str | None = None
    """Echo of the challenge's opaque."""

    userhash: bool = False
    """RFC 7616: :attr:`username` is hashed."""

    extra: tuple[tuple[str, str], ...] = ()
    """Unknown parameters, lowercase names, in order of appearance."""

    @property
    def effective_algorithm(self) -> str:
        """The algorithm in force: the one named, or MD5 by default."""
        return self.algorithm or _DEFAULT_ALGORITHM

    @classmethod
    def parse(cls, value: str) -> Credentials:
        """Parse a credentials header value; raises :class:`DigestError`."""
        _, params, _ = _parse_auth_value(value)
        username = params.pop("username", None)
        username_ext = params.pop("username*", None)
        if username is None and username_ext is not None:
            username = _decode_ext_value(username_ext)
        elif username_ext is not None:
            raise DigestError("both username and username* given")
        missing = [
            name
            for name, val in (
                ("username", username),
                ("realm", params.get("realm")),
                ("nonce", params.get("nonce")),
                ("uri", params.get("uri")),
                ("response", params.get("response")),
            )
            if val is None
        ]
        if missing or username is None:
            raise DigestError(f"credentials lack {', '.join(missing)}")
        return cls(
            username=username,
            realm=params.pop("realm"),
            nonce=params.pop("nonce"),
            uri=params.pop("uri"),
            response=params.pop("response"),
            algorithm=params.pop("algorithm", None),
            qop=params.pop("qop", None),
            nc=params.pop("nc", None),
            cnonce=params.pop("cnonce", None),
            opaque=params.pop("opaque", None),
            userhash=_flag(params.pop("userhash", None)),
            extra=tuple(params.items()),
        )

    def __str__(self) -> str:
        pairs: list[tuple[str, str, bool]] = [
            ("username", self.username, True),
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("uri", self.uri, True),
            ("response", self.response, True),
        ]
        if self.algorithm is not None:
            pairs.append(("algorithm", self.algorithm, False))
        if self.cnonce is not None:
            pairs.append(("cnonce", self.cnonce, True))
        if self.opaque is not None:
            pairs.append(("opaque", self.opaque, True))
        if self.qop is not None:
            pairs.append(("qop", self.qop, False))
        if self.nc is not None:
            pairs.append(("nc", self.nc, False))
        if self.userhash:
            pairs.append(("userhash", "true", False))
        pairs.extend((name, value, True) for name, value in self.extra)
        return _render_params(pairs)


def _decode_ext_value(raw: str) -> str:
    m = _EXT_VALUE.match(raw)
    if m is None:
        raise DigestError("username* is not UTF-8''percent-encoded")
    try:
        return urllib.parse.unquote(m.group(1), encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise DigestError("username* is not valid UTF-8") from exc


def parse_challenge(value: str) -> Challenge:
    """Parse a ``WWW-Authenticate``/``Proxy-Authenticate`` value; raises :class:`DigestError`."""
    return Challenge.parse(value)


def parse_credentials(value: str) -> Credentials:
    """Parse an ``Authorization``/``Proxy-Authorization`` value; raises :class:`DigestError`."""
    return Credentials.parse(value)


# --------------------------------------------------------------------------------------------
# The math (RFC 7616 section 3.4.1-3.4.3; RFC 2069 when there is no qop)

HashFunction = Callable[[bytes], str]
"""bytes -> lowercase hex digest."""


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha512_256(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


_HASHES: dict[str, HashFunction] = {"MD5": _md5, "SHA-256": _sha256}
"""Hash per algorithm name (uppercase, without -sess). Strongest last."""
if "sha512_256" in hashlib.algorithms_available:  # OpenSSL >= 1.1.1
    _HASHES["SHA-512-256"] = _sha512_256

_SESS_SUFFIX = "-SESS"


def supported_algorithms() -> tuple[str, ...]:
    """Every algorithm name this module computes, strongest first, -sess variants included."""
    names = list(reversed(_HASHES))
    return tuple(n for base in names for n in (base, base + "-sess"))


def _lookup_algorithm(name: str) -> tuple[HashFunction, bool] | None:
    """(hash, is_sess) for an algorithm name (case-insensitive), or None if unknown."""
    upper = name.upper()
    sess = upper.endswith(_SESS_SUFFIX)
    base = upper[: -len(_SESS_SUFFIX)] if sess else upper
    fn = _HASHES.get(base)
    return None if fn is None else (fn, sess)


def _strength(name: str) -> int:
    upper = name.upper().removesuffix(_SESS_SUFFIX)
    return list(_HASHES).index(upper) if upper in _HASHES else -1


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _hash_for(algorithm: str) -> tuple[HashFunction, bool]:
    found = _lookup_algorithm(algorithm)
    if found is None:
        raise DigestError(f"unsupported digest algorithm {algorithm[:32]!r}")
    return found


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password), what a credential store may keep instead of the password.

    The -sess variants share the base HA1 (the nonce part is added per response).
    """
    fn, _ = _hash_for(algorithm)
    return fn(_b(f"{username}:{realm}:{password}"))


def compute_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest from a base HA1 (as :func:`compute_ha1` returns it).

    With ``qop`` (``auth`` or ``auth-int``): KD(HA1, nonce:nc:cnonce:qop:HA2) (RFC 7616).
    Without: KD(HA1, nonce:HA2), the RFC 2069 form pyVoIP uses. Raises :class:`DigestError`
    for an unknown algorithm or qop, or for missing nc/cnonce.
    """
    fn, sess = _hash_for(algorithm)
    if sess:
        if cnonce is None:
            raise DigestError(f"{algorithm} needs a cnonce")
        ha1 = fn(_b(f"{ha1}:{nonce}:{cnonce}"))
    if qop is None:
        ha2 = fn(_b(f"{method}:{uri}"))
        return fn(_b(f"{ha1}:{nonce}:{ha2}"))
    if qop not in _QOP_KNOWN:
        raise DigestError(f"unsupported qop {qop[:32]!r}")
    if nc is None or cnonce is None:
        raise DigestError("qop needs nc and cnonce")
    if qop == _QOP_AUTH_INT:
        ha2 = fn(_b(f"{method}:{uri}:") + _b(fn(body)))
    else:
        ha2 = fn(_b(f"{method}:{uri}"))
    return fn(_b(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))


# --------------------------------------------------------------------------------------------
# Client side


def choose_challenge(values: Iterable[str]) -> Challenge:
    """Of several challenge values (one per header), the strongest we can answer.

    Non-digest schemes, unparsable values and unknown algorithms are skipped; -sess variants
    are only taken with a qop (their cnonce needs one). Raises :class:`DigestError` if none.
    """
    best: Challenge | None = None
    for value in values:
        try:
            ch = Challenge.parse(value)
        except DigestError:
            continue
        found = _lookup_algorithm(ch.effective_algorithm)
        if found is None or (found[1] and not ch.qop):
            continue
        if best is None or _strength(ch.effective_algorithm) > _strength(best.effective_algorithm):
            best = ch
    if best is None:
        raise DigestError("no digest challenge we can answer")
    return best


def build_authorization(
    challenge: Challenge | str,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge``.

    Picks qop ``auth`` when offered, else ``auth-int`` (hashing ``body``), else the RFC 2069
    form. ``cnonce`` comes from the caller (this module draws no randomness for clients), and
    ``nc`` counts the requests sent with this nonce, starting at 1.
    """
    ch = challenge if isinstance(challenge, Challenge) else Challenge.parse(challenge)
    algorithm = ch.effective_algorithm
    fn, sess = _hash_for(algorithm)
    offered = [q.lower() for q in ch.qop]
    qop = next((q for q in _QOP_KNOWN if q in offered), None)
    if ch.qop and qop is None:
        raise DigestError(f"no supported qop in {','.join(ch.qop)[:64]!r}")
    if sess and qop is None:
        raise DigestError(f"{algorithm} without qop cannot carry a cnonce")
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError("nc out of range")
    nc_value = f"{nc:08x}" if qop else None
    cnonce_value = cnonce if (qop or sess) else None
    ha1 = compute_ha1(algorithm, username, ch.realm, password)
    response = compute_response(
        algorithm=algorithm,
        ha1=ha1,
        nonce=ch.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_value,
        cnonce=cnonce_value,
        body=body,
    )
    wire_username = fn(_b(f"{username}:{ch.realm}")) if ch.userhash else username
    return str(
        Credentials(
            username=wire_username,
            realm=ch.realm,
            nonce=ch.nonce,
            uri=uri,
            response=response,
            algorithm=ch.algorithm,
            qop=qop,
            nc=nc_value,
            cnonce=cnonce_value,
            opaque=ch.opaque,
            userhash=ch.userhash,
        )
    )


# --------------------------------------------------------------------------------------------
# Server side: nonces


class NonceState(enum.Enum):
    """What the stateless check of a nonce says."""

    FRESH = "fresh"
    """Ours, and younger than the lifetime."""

    STALE = "stale"
    """Ours, but older than the lifetime (or from too far in the future)."""

    FORGED = "forged"
    """Not minted under our secret: tampered, foreign, or from before a restart."""


_NONCE_TS = struct.Struct(">d")
_NONCE_RANDOM_BYTES = 10
_NONCE_TAG_BYTES = 15
_NONCE_RAW_BYTES = _NONCE_TS.size + _NONCE_RANDOM_BYTES + _NONCE_TAG_BYTES  # 33: no padding
_NONCE_TEXT = re.compile(r"[A-Za-z0-9_-]{44}\Z")
_NONCE_TAG_LABEL = b"sip-digest-nonce\x00"
_MAX_NO_QOP_USES = 16
"""Distinct RFC 2069 responses accepted per nonce (one per method and URI, in practice)."""


@dataclass
class _NonceUse:
    issued_at: float
    highest_nc: int = 0
    no_qop_responses: set[str] = field(default_factory=set)


class NonceManager:
    """Mints nonces and refuses their replay (sans-IO: ``now`` is passed in).

    A nonce is base64url(timestamp | random | HMAC-SHA256(secret, timestamp | random)[:15]):
    44 characters from a comma-free, quote-free alphabet. Its integrity and age are checked
    without state; only nonces used in an accepted request are tracked, for replay detection:

    - with qop, the nonce count must strictly increase per nonce (RFC 7616 section 3.4);
    - without qop (RFC 2069, pyVoIP) a nonce may be reused within its lifetime, but the same
      response twice (same method and URI, since nothing else varies) is a replay. A client that
      reuses a nonce for an identical re-REGISTER thus gets a ``stale=true`` challenge and
      recomputes with a fresh nonce.

    Memory is bounded: expired entries are swept, and past ``max_tracked`` the oldest-tracked
    entries are dropped while a floor remembers their issue time, so any untracked nonce issued
    at or before the floor counts as replayed (the client just retries with a fresh nonce).

    With several engine nodes sharing one ``secret``, pass wall-clock time as ``now``: nonce
    ages are compared across processes. Replay tracking stays per node.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime: float = 300.0,
        max_tracked: int = 65536,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0 or max_tracked <= 0:
            raise ValueError("lifetime and max_tracked must be positive")
        self._secret = secret
        self._lifetime = lifetime
        self._max_tracked = max_tracked
        self._random_bytes = random_bytes
        self._used: dict[str, _NonceUse] = {}
        self._floor = float("-inf")
        self._next_sweep = float("-inf")

    @property
    def lifetime(self) -> float:
        """Seconds a nonce stays fresh."""
        return self._lifetime

    @property
    def tracked(self) -> int:
        """How many used nonces are remembered for replay detection."""
        return len(self._used)

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._secret, _NONCE_TAG_LABEL + body, hashlib.sha256).digest()[
            :_NONCE_TAG_BYTES
        ]

    def issue(self, *, now: float) -> str:
        """A new nonce, stamped with ``now``."""
        rnd = self._random_bytes(_NONCE_RANDOM_BYTES)
        if len(rnd) != _NONCE_RANDOM_BYTES:
            raise ValueError("random_bytes returned the wrong length")
        body = _NONCE_TS.pack(now) + rnd
        return base64.urlsafe_b64encode(body + self._tag(body)).decode("ascii")

    def _issued_at(self, nonce: str) -> float | None:
        """The nonce's timestamp if it is ours, else None."""
        if _NONCE_TEXT.match(nonce) is None:
            return None
        raw = base64.urlsafe_b64decode(nonce)
        if len(raw) != _NONCE_RAW_BYTES:
            return None
        body, tag = raw[:-_NONCE_TAG_BYTES], raw[-_NONCE_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(body)):
            return None
        (issued_at,) = _NONCE_TS.unpack_from(body)
        return float(issued_at)

    def state(self, nonce: str, *, now: float) -> NonceState:
        """Stateless check of integrity and age."""
        issued_at = self._issued_at(nonce)
        if issued_at is None:
            return NonceState.FORGED
        # abs(): a timestamp far in the future (another node's skewed clock) is not trusted.
        if not abs(now - issued_at) <= self._lifetime:
            return NonceState.STALE
        return NonceState.FRESH

    def record_use(self, nonce: str, *, now: float, nc: int | None, response: str) -> bool:
        """Remember a use of a fresh nonce; False if it is a replay (then nothing is recorded).

        ``nc`` is the nonce count for qop requests, ``None`` for the RFC 2069 form.
        """
        issued_at = self._issued_at(nonce)
        if issued_at is None:
            return False
        self._sweep(now)
        use = self._used.get(nonce)
        if use is None:
            if issued_at <= self._floor:
                return False
            use = _NonceUse(issued_at)
        if nc is not None:
            if nc <= use.highest_nc:
                return False
            use.highest_nc = nc
        else:
            key = response.lower()
            if key in use.no_qop_responses or len(use.no_qop_responses) >= _MAX_NO_QOP_USES:
                return False
            use.no_qop_responses.add(key)
        if nonce not in self._used:
            self._used[nonce] = use
            self._evict_over_cap()
        return True

    def _sweep(self, now: float) -> None:
        # A full sweep at most four times per lifetime keeps the cost amortised O(1).
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._lifetime / 4
        expired = [n for n, u in self._used.items() if now - u.issued_at > self._lifetime]
        for n in expired:
            del self._used[n]
        if expired:
            logger.debug("swept %d expired nonces, %d tracked", len(expired), len(self._used))

    def _evict_over_cap(self) -> None:
        while len(self._used) > self._max_tracked:
            oldest = next(iter(self._used))
            self._floor = max(self._floor, self._used.pop(oldest).issued_at)
            logger.warning(
                "nonce table full (%d): evicting, floor now %r", self._max_tracked, self._floor
            )


# --------------------------------------------------------------------------------------------
# Server side: verification


class AuthResult(enum.Enum):
    """Outcome of :meth:`DigestServer.verify`. Values are grep-friendly log reasons.

    Every failure must be answered with the same 401/407 (a fresh challenge), whatever the
    reason, so a peer cannot tell an unknown user from a wrong password; only :attr:`stale`
    changes the challenge (``stale=true``), and only after the password was proven right.
    """

    OK = "ok"
    """The password is right and the nonce fresh and unused: let the request through."""

    WRONG_PASSWORD = "wrong_password"
    """Known user, wrong response."""

    UNKNOWN_USER = "unknown_user"
    """No such user (the response was still computed against a dummy password)."""

    STALE_NONCE = "stale_nonce"
    """Right password, nonce past its lifetime."""

    BAD_NONCE = "bad_nonce"
    """Right password, nonce not ours (tampered, or minted by a previous process)."""

    REPLAY = "replay"
    """Right password, but this nonce count / response was already used."""

    MALFORMED = "malformed"
    """Unparsable credentials, missing fields, unknown algorithm or qop, bad nc."""

    REALM_MISMATCH = "realm_mismatch"
    """Credentials for another realm."""

    URI_MISMATCH = "uri_mismatch"
    """digest-uri differs from the Request-URI (only when ``check_uri`` is on)."""

    @property
    def ok(self) -> bool:
        """True only for :attr:`OK`."""
        return self is AuthResult.OK

    @property
    def stale(self) -> bool:
        """The password was right: re-challenge with ``stale=true`` so the phone retries."""
        return self in (AuthResult.STALE_NONCE, AuthResult.BAD_NONCE, AuthResult.REPLAY)

    @property
    def counts_as_failure(self) -> bool:
        """Whether this outcome should feed a failure ban (a wrong guess, not a stale nonce)."""
        return not (self.ok or self.stale)


@dataclass(frozen=True)
class DigestConfig:
    """Digest authentication policy of a registrar or proxy."""

    nonce_lifetime: float = 300.0
    """Seconds a nonce stays valid; an older one gets a ``stale=true`` challenge."""

    algorithms: tuple[str, ...] = ("MD5",)
    """Algorithms challenged with (one header each, in this order; RFC 8760 wants the preferred
    first) and the only ones accepted. MD5 alone by default: baresip 1.0.0 and SIPp 3.6.1 fail
    on any other algorithm in the challenge. ``("SHA-256", "MD5")`` for newer phones."""

    qop: tuple[str, ...] = ("auth",)
    """qop options offered and accepted (``auth``, ``auth-int``)."""

    allow_no_qop: bool = True
    """Accept the RFC 2069 form (no qop) even when qop was offered: pyVoIP 1.6.8 needs it.
    It lacks the client nonce, so a chosen-plaintext attacker sees more; turn off when every
    phone does qop."""

    check_uri: bool = False
    """Compare the digest-uri with the Request-URI (scheme, user, host, port; parameters
    ignored). Off by default: pyVoIP puts the registrar's URI in its INVITE credentials."""

    max_tracked_nonces: int = 65536
    """Bound on the used-nonce table kept for replay detection."""


_URI_BASE = re.compile(r"([^;?]*)")


def _uri_key(uri: str) -> str:
    """The part of a SIP URI compared for ``check_uri``: without parameters or headers."""
    base = _URI_BASE.match(uri.strip())
    return (base.group(1) if base else uri).lower()


class DigestServer:
    """Challenges requests and verifies their credentials (sans-IO: ``now`` is passed in).

    ``secret`` keys the nonces: random per process is fine (a restart only costs phones one
    silent ``stale=true`` retry); share it between nodes behind one load balancer.
    """

    def __init__(
        self,
        secret: bytes,
        config: DigestConfig | None = None,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.config = config if config is not None else DigestConfig()
        for alg in self.config.algorithms:
            _hash_for(alg)  # fail at start-up, not at the first REGISTER
        self.nonces = NonceManager(
            secret,
            lifetime=self.config.nonce_lifetime,
            max_tracked=self.config.max_tracked_nonces,
            random_bytes=random_bytes,
        )
        # Unknown users are checked against this, so they cost the same as known ones.
        self._dummy_password = secrets.token_hex(16)
        self._dummy_ha1 = {name: fn(_b(self._dummy_password)) for name, fn in _HASHES.items()}
        self._accepted = {a.upper() for a in self.config.algorithms}

    def challenge(
        self,
        realm: str,
        *,
        now: float,
        stale: bool = False,
        algorithms: Sequence[str] | None = None,
        qop: Sequence[str] | None = None,
    ) -> list[str]:
        """Header values for a 401 ``WWW-Authenticate`` (or 407 ``Proxy-Authenticate``).

        One value per algorithm, in order, all with the same fresh nonce. ``algorithms`` and
        ``qop`` default to the config (an empty ``qop`` gives an RFC 2069 challenge).
        """
        nonce = self.nonces.issue(now=now)
        offered_qop = tuple(self.config.qop if qop is None else qop)
        algs = self.config.algorithms if algorithms is None else algorithms
        return [
            str(Challenge(realm=realm, nonce=nonce, algorithm=alg, qop=offered_qop, stale=stale))
            for alg in algs
        ]

    def verify(
        self,
        credentials: Credentials | str,
        *,
        method: str,
        realm: str,
        now: float,
        password_lookup: Callable[[str], str | None] | None = None,
        ha1_lookup: Callable[[str, str], str | None] | None = None,
        request_uri: str | None = None,
        body: bytes = b"",
    ) -> AuthResult:
        """Check credentials for a request (``method``, ``body`` for qop=auth-int).

        Exactly one of ``password_lookup(username) -> password`` or ``ha1_lookup(username,
        algorithm) -> HA1 hex`` (base algorithm name, e.g. ``SHA-256``) must be given; either
        returns None for an unknown user. ``request_uri`` is compared only with ``check_uri``.
        On OK the nonce use is recorded (so a second identical call returns REPLAY).
        """
        if (password_lookup is None) == (ha1_lookup is None):
            raise TypeError("give exactly one of password_lookup and ha1_lookup")
        if isinstance(credentials, str):
            try:
                credentials = Credentials.parse(credentials)
            except DigestError as exc:
                logger.debug("malformed credentials: %s", exc)
                return AuthResult.MALFORMED
        cred = credentials
        found = _lookup_algorithm(cred.effective_algorithm)
        if found is None or cred.effective_algorithm.upper() not in self._accepted:
            return AuthResult.MALFORMED
        fn, sess = found
        nc_int: int | None = None
        if cred.qop is None:
            if not self.config.allow_no_qop or sess:
                return AuthResult.MALFORMED
        else:
            if cred.qop not in self.config.qop or cred.cnonce is None or cred.nc is None:
                return AuthResult.MALFORMED
            if _NC_VALUE.match(cred.nc) is None:
                return AuthResult.MALFORMED
            nc_int = int(cred.nc, 16)
            if nc_int == 0:
                return AuthResult.MALFORMED
        if cred.userhash:
            return AuthResult.MALFORMED  # never offered
        if cred.realm != realm:
            return AuthResult.REALM_MISMATCH
        if (
            self.config.check_uri
            and request_uri is not None
            and _uri_key(cred.uri) != _uri_key(request_uri)
        ):
            return AuthResult.URI_MISMATCH

        base_alg = cred.effective_algorithm.upper().removesuffix(_SESS_SUFFIX)
        known = True
        if password_lookup is not None:
            password = password_lookup(cred.username)
            if password is None:
                known, password = False, self._dummy_password
            ha1 = fn(_b(f"{cred.username}:{realm}:{password}"))
        else:
            assert ha1_lookup is not None
            stored = ha1_lookup(cred.username, base_alg)
            if stored is None:
                known, stored = False, self._dummy_ha1[base_alg]
            ha1 = stored.lower()
        try:
            expected = compute_response(
                algorithm=cred.effective_algorithm,
                ha1=ha1,
                nonce=cred.nonce,
                method=method,
                uri=cred.uri,
                qop=cred.qop,
                nc=cred.nc,
                cnonce=cred.cnonce,
                body=body,
            )
        except (DigestError, UnicodeEncodeError):
            return AuthResult.MALFORMED
        matches = hmac.compare_digest(_b(expected), _b(cred.response.lower()))
        if not known:
            return AuthResult.UNKNOWN_USER
        if not matches:
            return AuthResult.WRONG_PASSWORD

        nonce_state = self.nonces.state(cred.nonce, now=now)
        if nonce_state is NonceState.FORGED:
            return AuthResult.BAD_NONCE
        if nonce_state is NonceState.STALE:
            return AuthResult.STALE_NONCE
        if not self.nonces.record_use(cred.nonce, now=now, nc=nc_int, response=cred.response):
            return AuthResult.REPLAY
        return AuthResult.OK
