"""The engine's configuration: a TOML file read into dataclasses, validated with line numbers.

Errors name the file, the line and the reason (`ConfigError`); the CLI prints them and exits 2.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_bridge import DEFAULT_ADAPTERS, CrmEndpoint, OAuthClient, RetryPolicy, endpoint_problems
from ivr import FlowError, load_flow
from pbx.blf import BlfGroup
from pbx.callerid import ANONYMOUS, OutboundIdentity
from pbx.forwarding import Forwarding, ForwardingError
from pbx.monitor import MonitorSettings
from pbx.pickup import PickupGroup
from pbx.queue import QUEUE_STRATEGIES, RESPONSIBLE, QueueConfig, QueueMember, VoicemailBox
from pbx.routing import RING_STRATEGIES, Did, OpeningHours, RingGroup, Trunk
from telephony.aio.addresses import DEFAULT_LOCAL_NETWORKS, is_ip, parse_networks
from telephony.call.offer_answer import SRTP_POLICIES
from telephony.numbers import NumberPlan, region_of_country_code
from telephony.sip import OverloadConfig

logger = logging.getLogger(__name__)

ROLES = ("agent", "supervisor")
TRANSPORTS = ("udp", "tcp", "tls")
"""How the engine reaches a trunk's `outbound` address."""
_ENDPOINT_KEYS = {
    "name",
    "kind",
    "url",
    "secret",
    "old_secrets",
    "legacy_signature",
    "timeout",
    "events",
    "user_map",
    "recording_link",
    "source",
    "oauth",
    "rate_limit",
    "burst",
    "recording_format",
}
_EXTENSION = re.compile(r"^[0-9]{2,8}$")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_port: int | None = None) -> HostPort:
        """HOST:PORT, [IPV6]:PORT, or (with `default_port`) an address alone: "0.0.0.0",
        "[::1]", or "::" (the only IPv6 address taken without brackets: "::1:5060" is an
        address too, so a port after an unbracketed IPv6 address could never be told apart)."""
        if default_port is not None and (
            text == "::"
            or (":" not in text and is_ip(text))
            or (text.startswith("[") and text.endswith("]") and is_ip(text[1:-1]))
        ):
            return cls(text.strip("[]"), default_port)
        host, sep, port = text.rpartition(":")
        if (
            not sep
            or not host
            or not port.isdigit()
            or not 0 < int(port) < 65536
            or (":" in host and not (host.startswith("[") and host.endswith("]")))
        ):
            expected = "HOST:PORT or [IPV6]:PORT" + (" or an address" if default_port else "")
            raise ValueError(f"expected {expected}, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_PHONE_NUMBER = re.compile(r"^\+?[0-9]{7,15}$")
_FORWARD_KEYS = {
    "dnd": "dnd",
    "forward_always": "always",
    "forward_busy": "busy",
    "forward_no_answer": "no_answer",
    "forward_no_answer_after": "no_answer_after",
}
"""An account's DND and forwarding keys, and the pbx.forwarding.Forwarding field of each."""


@dataclass(frozen=True)
class Account:
    extension: str
    """The extension number; also the SIP user name and digest username."""
    password: str
    """The digest password."""
    display_name: str = ""
    """Shown as caller name to the callee."""
    role: str = "agent"
    """`agent` or `supervisor`."""
    static_contact: str | None = None
    """A SIP URI that never expires, for phones (or test UAS) that do not REGISTER."""
    max_calls: int = 1
    """Calls the extension may be in at once; a further call gets 486 Busy Here."""
    team: tuple[str, ...] = ()
    """Supervisors only: the agents this supervisor may listen to, whisper to and barge in on."""
    daily_plan: int = 0
    """Calls the agent should make or take per working day (the dashboard's plan; 0: none)."""
    session_timers: bool = True
    """RFC 4028 session timers on this phone's calls (false for a phone that misbehaves)."""
    srtp: str = "off"
    """SRTP (SDES) on this phone's calls: "off", "optional" (offers keys, takes plain RTP too)
    or "required" (a plain RTP offer gets 488); telephony.call.offer_answer says more."""
    forwarding: Forwarding = field(default_factory=Forwarding)
    """DND and call forwarding at start-up (keys dnd, forward_always, forward_busy,
    forward_no_answer, forward_no_answer_after); the phone's feature codes and the API change
    them while the engine runs."""


@dataclass(frozen=True)
class SipSettings:
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 5060))
    """Where SIP listens, on UDP and TCP."""
    realm: str = "callcenter"
    """The digest realm."""
    ring_timeout: float = 30.0
    """Seconds a callee may ring before the caller gets 480."""
    rtp_inactivity_timeout: float = 30.0
    """Seconds without RTP from a leg of an answered call before the engine hangs up (BYE)."""
    rtp_ports: tuple[int, int] = (20000, 29999)
    """Range of UDP ports for the engine's RTP legs (even ports used, RTCP on odd)."""
    t1: float = 0.5
    """RFC 3261 T1; T2 and T4 keep their defaults."""
    nonce_lifetime: float = 300.0
    """Seconds a digest nonce stays valid."""
    max_registration: int = 3600
    """Longest binding lifetime granted to a REGISTER."""
    min_registration: int = 60
    """Shorter requested expiries get 423 Interval Too Brief."""
    digest_algorithms: tuple[str, ...] = ("MD5",)
    """Digest algorithms challenged with, one header each in this order. MD5 only by default:
    baresip 1.0.0 fails a registration whose challenges name anything else, and SIPp 3.6.1
    reads only the first. ["SHA-256", "MD5"] gives RFC 8760 phones the stronger one."""
    music_on_hold: Path | None = None
    """WAV played (looped) to the other party while one side of a call holds it; None:
    silence."""
    session_expires: int = 1800
    """RFC 4028 session interval the engine asks for and grants at most, seconds."""
    min_se: int = 90
    """Shorter session intervals are refused with 422 (RFC 4028 says no less than 90; a
    smaller value is for tests)."""
    external_address: str | None = None
    """The public address of a 1:1 NAT (or port forwarding of the SIP port and RTP range, same
    numbers) in front of the engine: advertised in Via, Contact and SDP to every peer outside
    `networks`. None: no NAT."""
    networks: tuple[str, ...] = DEFAULT_LOCAL_NETWORKS
    """Local CIDRs: their peers see the local address even when `external_address` is set."""
    cluster: bool = False
    """This node is one of several behind a proxy (deploy/kamailio, scripts/cluster) on one
    database: it reads the other nodes' bindings (and follows their changes), so it rings
    phones that registered through any node, and it books agents in the shared
    `agent_bookings` table before ringing them, so no agent is booked twice across nodes.
    Off: its own bindings and its own count of calls only."""
    cluster_lease: float = 30.0
    """Seconds a cluster node's agent bookings and its liveness row outlive its last renewal
    (renewed each third of it): a killed node's agents are free, and its dialer attempts in
    flight closed by a surviving node, this long after it died."""
    trusted_proxies: tuple[str, ...] = ()
    """IP addresses of proxies in front of the engine (deploy/kamailio): a request from one
    is blamed on the hop before it (its Via) when authentication fails, so a ban never locks
    out the proxy and every phone behind it."""
    keepalive_interval: float = 0.0
    """Seconds between OPTIONS pings to each registered phone (NAT bindings stay open, a
    phone that stops answering is marked unreachable and not rung); 0: no pings."""
    overload: OverloadConfig = field(default_factory=OverloadConfig)
    """When the engine runs behind (event-loop lag): new INVITEs get 503 with Retry-After
    above `overload_shed_ms`, are dropped unread above `overload_drop_ms`."""
    tls_listen: HostPort | None = None
    """Where SIP over TLS listens (e.g. 127.0.0.1:5061); None: no TLS listener."""
    tls_certificate: Path | None = None
    """PEM certificate chain of the TLS listener (`callcenter tls-selfsigned` makes one)."""
    tls_key: Path | None = None
    """PEM private key of `tls_certificate`."""
    tls_verify: bool = True
    """Check the certificate of a TLS peer we connect to (providers, phones): chain and host
    name. false accepts any certificate (a test bench only)."""
    tls_ca_file: Path | None = None
    """CA certificates (PEM) trusted for `tls_verify`; None: the system's store."""


@dataclass(frozen=True)
class SecuritySettings:
    max_auth_failures: int = 10
    """Failed authentications from one source IP within `window` that trigger a ban."""
    window: float = 60.0
    """Seconds of the sliding window for failures."""
    ban_seconds: float = 600.0
    """How long a banned source IP is ignored."""


@dataclass(frozen=True)
class CrmSettings:
    default_country_code: str = "1"
    """Country code of national numbers when normalising phones to E.164."""
    callback_due_minutes: float = 15.0
    """A missed call's callback task is due this long after the call."""
    node: str = ""
    """This engine's name among nodes sharing one database (default: the host name)."""
    endpoints: tuple[CrmEndpoint, ...] = ()
    """External CRMs the outbox delivers to."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    manual_policy: Mapping[str, str] = field(
        default_factory=lambda: {"agent": "block", "manager": "warn", "admin": "warn"}
    )
    """Click-to-call and manual dialing of a number on a DNC list or outside its calling hours,
    by API key role: "block" (refused, 403), "warn" (placed, with the reasons) or "off"."""
    manual_hours: tuple[str, str] = ("09:00", "21:00")
    """Calling hours in the called number's local time for manual calls outside a campaign
    (a campaign's or lead's call uses the campaign's window)."""
    manual_tz: str = "UTC"
    """Zone of numbers whose zone is unknown (or spans too wide), for manual calls."""
    follow_up_minutes: float | None = None
    """Every this many minutes, open a follow-up task for each contact waiting for us with no
    open task (the rule "no open contact without a task"); None: only list and count them."""
    outbox_retention_days: int | None = 30
    """Delivered CRM events older than this are deleted from the outbox (each node checks
    hourly); None keeps them forever. The newest remote ids of each task or call stay."""
    dead_letter_retention_days: int | None = None
    """Dead-lettered events older than this are deleted too; None (default) keeps them for an
    operator to replay."""
    link_secret: str = ""
    """Key of signed recording links (GET /recordings/{id}.{format}?expires=&signature=);
    empty: no signed links."""
    """Delivery retries, backoff and dead-letter age."""


@dataclass(frozen=True)
class RecordingSettings:
    enabled: bool = True
    """Record every answered call (routes may opt out)."""
    directory: Path | None = None
    """Where recordings go, in YYYY/MM/DD folders; default: <data_dir>/recordings."""
    retention_days: int | None = 90
    """Recordings older than this are deleted; None keeps them forever."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    """Who holds the key (shown in logs, never the key)."""
    sha256: str
    """Hex SHA-256 of the key: the key itself is not kept in memory."""
    role: str
    """admin, manager, supervisor or agent."""
    extension: str | None = None
    """An agent key's own extension: it acts for that agent only (its event stream, presence,
    click-to-call, dispositions of its calls). None: for any agent (a CRM's key)."""


LOG_FORMATS = ("text", "json")
API_ROLES = ("admin", "manager", "supervisor", "agent")
TRUNK_NUMBERING_KEYS = frozenset(
    {
        "country",
        "outbound_format",
        "strip_prefix",
        "dial_prefix",
        "identity_headers",
        "asserted_identity",
        "withhold_caller_id",
        "trust_identity",
    }
)
"""[[trunks]] keys of number rewriting and caller ID (telephony.numbers, pbx.callerid)."""

TOP_LEVEL_TABLES = {
    "sip",
    "http",
    "database",
    "security",
    "accounts",
    "trunks",
    "dids",
    "ring_groups",
    "queues",
    "voicemail",
    "presence",
    "api_keys",
    "recordings",
    "crm",
    "pickup_groups",
    "blf_groups",
    "monitor",
    "ivr",
    "log",
}


@dataclass(frozen=True)
class IvrSettings:
    flows_dir: Path | None = None
    """Folder of flow files (NAME.toml or NAME.json); a DID routes to one as `ivr:NAME`."""
    flows: tuple[tuple[str, Path], ...] = ()
    """(name, file) of every flow found there, checked when the config is read."""
    prompt_cache: Path | None = None
    """Where prompts converted to 8 kHz (and spoken by espeak-ng) are kept; default
    <data_dir>/prompts."""
    tts: bool = True
    """Speak `{ text = "..." }` prompts with espeak-ng (a flow with text prompts fails to
    load when it is missing)."""


@dataclass(frozen=True)
class PresenceSettings:
    wrap_up_seconds: float = 10.0
    """After a call an agent is in wrap-up this long before ringing again."""


@dataclass(frozen=True)
class Config:
    accounts: tuple[Account, ...]
    """Extensions that may register and call."""
    sip: SipSettings = field(default_factory=SipSettings)
    http_listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 8080))
    """Where the REST API and dashboard listen."""
    http_tls: tuple[Path, Path] | None = None
    """[http] tls_certificate and tls_key: the HTTP listener speaks HTTPS (and the browser
    phone's SIP WebSocket WSS). Browsers give a page the microphone only in a secure context,
    so an agent page served from anywhere but localhost needs it."""
    metrics_public: bool = False
    """[http] metrics_public: GET /metrics without a key, from loopback (127.0.0.1, ::1) only;
    otherwise it needs an admin key."""
    log_format: str = "text"
    """[log] format: "text" (one readable line per record) or "json" (one object per line)."""
    database_url: str | None = None
    """PostgreSQL URL; None starts the embedded server in `data_dir`."""
    data_dir: Path = Path("var")
    """Embedded PostgreSQL, recordings and other state."""
    security: SecuritySettings = field(default_factory=SecuritySettings)
    trunks: tuple[Trunk, ...] = ()
    dids: tuple[Did, ...] = ()
    ring_groups: tuple[RingGroup, ...] = ()
    queues: tuple[QueueConfig, ...] = ()
    """Waiting queues (ACD); a DID or an IVR transfer routes to one as `queue:NAME`."""
    voicemail: tuple[VoicemailBox, ...] = ()
    """Greetings of the voicemail boxes (`voicemail:EXT` routes and queue overflows)."""
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    api_keys: tuple[ApiKey, ...] = ()
    recordings: RecordingSettings = field(default_factory=RecordingSettings)
    crm: CrmSettings = field(default_factory=CrmSettings)
    pickup_groups: tuple[PickupGroup, ...] = ()
    blf_groups: tuple[BlfGroup, ...] = ()
    """Who may watch whose line (BLF); none: every extension every other."""
    """Agents who may pick up each other's ringing calls (*8, **EXT); one may be in several."""
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    ivr: IvrSettings = field(default_factory=IvrSettings)
    """IVR flows for DIDs (and broadcasts)."""
    """Supervisor listen / whisper / barge."""
    source: str = "<defaults>"
    """The file this came from, for messages."""

    def account(self, extension: str) -> Account | None:
        for account in self.accounts:
            if account.extension == extension:
                return account
        return None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raises ConfigError with the line and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror}") from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(source, int(match.group(1)) if match else None, str(exc)) from exc
    return _Reader(text, source).config(data)


class _Reader:
    """Turns parsed TOML into Config, locating the line of every value it rejects."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source
        self._links: tuple[str, float] = ("", 30 * 86400.0)
        """[crm] link_secret and link TTL, set before the endpoints are read."""
        # Relative file names in the config (prompts) are relative to the config file.
        self.base = (
            Path(source).resolve().parent if source and not source.startswith("<") else Path.cwd()
        )

    def fail(
        self, reason: str, *, table: str | None, key: str | None, index: int = 0
    ) -> ConfigError:
        return ConfigError(self.source, self._line_of(table, key, index), reason)

    def _line_of(self, table: str | None, key: str | None, index: int) -> int | None:
        """Best-effort line of `key` inside the index-th occurrence of [table] / [[table]]."""
        start = 0
        if table:
            header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
            seen = -1
            for number, line in enumerate(self.lines):
                if header.match(line):
                    seen += 1
                    if seen == index:
                        start = number
                        break
            else:
                return None
        if key is None:
            return start + 1
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number in range(start, len(self.lines)):
            if number > start and table and self.lines[number].lstrip().startswith("["):
                break
            if key_re.match(self.lines[number]):
                return number + 1
        return start + 1 if table else None

    def _check_keys(
        self, data: dict[str, Any], allowed: set[str], table: str | None, index: int = 0
    ) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r}", table=table, key=key, index=index)

    def _hostport(
        self, value: Any, table: str | None, key: str, *, default_port: int | None = None
    ) -> HostPort:
        try:
            return HostPort.parse(str(value), default_port=default_port)
        except ValueError as exc:
            raise self.fail(str(exc), table=table, key=key) from exc

    def _number(
        self, data: dict[str, Any], key: str, default: float, table: str, *, minimum: float
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(f"{key} must be a number >= {minimum}", table=table, key=key)
        return float(value)

    def _flag(self, item: dict[str, Any], key: str, what: str, table: str, index: int) -> bool:
        """A true/false setting of an array table's entry (true when absent)."""
        value = item.get(key, True)
        if not isinstance(value, bool):
            raise self.fail(
                f"{what}: {key} must be true or false", table=table, key=key, index=index
            )
        return value

    def config(self, data: dict[str, Any]) -> Config:
        self._check_keys(data, TOP_LEVEL_TABLES, None)
        sip = self.sip(data.get("sip", {}))
        http = data.get("http", {})
        self._check_keys(http, {"listen", "metrics_public", "tls_certificate", "tls_key"}, "http")
        http_listen = self._hostport(http.get("listen", "127.0.0.1:8080"), "http", "listen")
        http_files = self._certificate(http, "http")
        if len(http_files) == 1:
            missing = ({"tls_certificate", "tls_key"} - set(http_files)).pop()
            raise self.fail(
                f"HTTPS needs tls_certificate and tls_key: {missing} is missing",
                table="http",
                key=next(iter(http_files)),
            )
        http_tls = (http_files["tls_certificate"], http_files["tls_key"]) if http_files else None
        metrics_public = http.get("metrics_public", False)
        if not isinstance(metrics_public, bool):
            raise self.fail(
                "metrics_public must be true or false", table="http", key="metrics_public"
            )
        log = data.get("log", {})
        self._check_keys(log, {"format"}, "log")
        log_format = log.get("format", "text")
        if log_format not in LOG_FORMATS:
            raise self.fail(
                f"format must be one of {', '.join(LOG_FORMATS)}", table="log", key="format"
            )
        database = data.get("database", {})
        self._check_keys(database, {"url", "data_dir"}, "database")
        url = database.get("url") or None
        security = data.get("security", {})
        self._check_keys(security, {"max_auth_failures", "window", "ban_seconds"}, "security")
        sec = SecuritySettings(
            max_auth_failures=int(
                self._number(security, "max_auth_failures", 10, "security", minimum=1)
            ),
            window=self._number(security, "window", 60.0, "security", minimum=1),
            ban_seconds=self._number(security, "ban_seconds", 600.0, "security", minimum=0),
        )
        accounts = self.accounts(data.get("accounts", []))
        known = {a.extension for a in accounts}
        for index, account in enumerate(accounts):
            unknown_team = [t for t in account.team if t not in known]
            if unknown_team:
                raise self.fail(
                    f"account {account.extension}: team names unknown extensions "
                    + ", ".join(unknown_team),
                    table="accounts",
                    key="team",
                    index=index,
                )
        crm = self.crm(data.get("crm", {}))
        trunks = self.trunks(
            data.get("trunks", []), default_region=region_of_country_code(crm.default_country_code)
        )
        clash = {t.name for t in trunks} & {a.extension for a in accounts}
        if clash:
            raise self.fail(
                f"trunk name {sorted(clash)[0]} is also an extension", table=None, key="trunks"
            )
        groups = self.ring_groups(data.get("ring_groups", []), {a.extension for a in accounts})
        queues = self.queues(
            data.get("queues", []),
            extensions={a.extension for a in accounts},
            groups={g.name for g in groups},
        )
        dids = self.dids(
            data.get("dids", []),
            trunks={t.name: t for t in trunks},
            groups={g.name for g in groups},
            extensions={a.extension for a in accounts},
            queues={q.name for q in queues},
        )
        pickup_groups = self.pickup_groups(
            data.get("pickup_groups", []), {a.extension for a in accounts}
        )
        monitor = data.get("monitor", {})
        self._check_keys(monitor, {"beep"}, "monitor")
        if not isinstance(monitor.get("beep", False), bool):
            raise self.fail("beep must be true or false", table="monitor", key="beep")
        ivr = self.ivr(data.get("ivr", {}))
        names = {name for name, _ in ivr.flows}
        for index, did in enumerate(dids):
            kind, _, flow = did.route.partition(":")
            if kind == "ivr" and flow not in names:
                raise self.fail(
                    f"DID {did.number}: no IVR flow {flow!r}"
                    + (
                        f" in {ivr.flows_dir}" if ivr.flows_dir else " ([ivr] flows_dir is not set)"
                    ),
                    table="dids",
                    key="route",
                    index=index,
                )
        presence = data.get("presence", {})
        self._check_keys(presence, {"wrap_up_seconds"}, "presence")
        wrap_up = self._number(presence, "wrap_up_seconds", 10.0, "presence", minimum=0)
        return Config(
            crm=crm,
            recordings=self.recordings(data.get("recordings", {})),
            api_keys=self.api_keys(data.get("api_keys", []), {a.extension for a in accounts}),
            trunks=trunks,
            dids=dids,
            ring_groups=groups,
            queues=queues,
            voicemail=self.voicemail(data.get("voicemail", []), {a.extension for a in accounts}),
            pickup_groups=pickup_groups,
            blf_groups=self.blf_groups(data.get("blf_groups", []), {a.extension for a in accounts}),
            monitor=MonitorSettings(beep=monitor.get("beep", False)),
            ivr=ivr,
            presence=PresenceSettings(wrap_up_seconds=wrap_up),
            accounts=accounts,
            sip=sip,
            http_listen=http_listen,
            http_tls=http_tls,
            metrics_public=metrics_public,
            log_format=log_format,
            database_url=url,
            data_dir=Path(database.get("data_dir", "var")),
            security=sec,
            source=self.source,
        )

    def sip(self, data: dict[str, Any]) -> SipSettings:
        allowed = {
            "listen",
            "realm",
            "ring_timeout",
            "rtp_inactivity_timeout",
            "rtp_ports",
            "t1",
            "nonce_lifetime",
            "max_registration",
            "min_registration",
            "digest_algorithms",
            "music_on_hold",
            "session_expires",
            "min_se",
            "external_address",
            "networks",
            "keepalive_interval",
            "cluster",
            "cluster_lease",
            "trusted_proxies",
            "overload_shed_ms",
            "overload_drop_ms",
            "overload_retry_after",
            "tls_listen",
            "tls_certificate",
            "tls_key",
            "tls_verify",
            "tls_ca_file",
        }
        self._check_keys(data, allowed, "sip")
        external = data.get("external_address")
        if external is not None and not is_ip(str(external).strip("[]")):
            raise self.fail(
                "external_address must be an IP address (the NAT's public one)",
                table="sip",
                key="external_address",
            )
        networks = data.get("networks", list(DEFAULT_LOCAL_NETWORKS))
        try:
            if not isinstance(networks, list):
                raise ValueError("networks must be a list of CIDRs")
            parse_networks(networks)
        except ValueError as exc:
            raise self.fail(str(exc), table="sip", key="networks") from exc
        min_se = self._number(data, "min_se", 90, "sip", minimum=1)
        session_expires = self._number(data, "session_expires", 1800, "sip", minimum=min_se)
        tls = self.tls(data)
        music = data.get("music_on_hold")
        music_path = (
            self._existing_file(music, "music_on_hold", table="sip", key="music_on_hold")
            if music is not None
            else None
        )
        ports = data.get("rtp_ports", "20000-29999")
        match = re.fullmatch(r"(\d+)-(\d+)", str(ports))
        if not match or not 1024 <= int(match.group(1)) < int(match.group(2)) <= 65535:
            raise self.fail(
                "rtp_ports must be LOW-HIGH within 1024-65535", table="sip", key="rtp_ports"
            )
        realm = data.get("realm", "callcenter")
        if not isinstance(realm, str) or not realm or '"' in realm:
            raise self.fail(
                "realm must be a non-empty string without quotes", table="sip", key="realm"
            )
        algorithms = data.get("digest_algorithms", ["MD5"])
        if (
            not isinstance(algorithms, list)
            or not algorithms
            or any(a not in ("SHA-256", "MD5") for a in algorithms)
        ):
            raise self.fail(
                'digest_algorithms must be a list of "SHA-256" and/or "MD5"',
                table="sip",
                key="digest_algorithms",
            )
        proxies = data.get("trusted_proxies", [])
        if not isinstance(proxies, list) or not all(
            isinstance(p, str) and is_ip(p.strip("[]")) for p in proxies
        ):
            raise self.fail(
                "trusted_proxies must be a list of IP addresses", table="sip", key="trusted_proxies"
            )
        shared = data.get("cluster", False)
        if not isinstance(shared, bool):
            raise self.fail(
                "cluster must be true or false",
                table="sip",
                key="cluster",
            )
        return SipSettings(
            **tls,
            cluster=shared,
            cluster_lease=self._number(data, "cluster_lease", 30.0, "sip", minimum=1),
            trusted_proxies=tuple(p.strip("[]") for p in proxies),
            music_on_hold=music_path,
            digest_algorithms=tuple(algorithms),
            listen=self._hostport(
                data.get("listen", "127.0.0.1:5060"), "sip", "listen", default_port=5060
            ),
            external_address=str(external).strip("[]") if external is not None else None,
            networks=tuple(str(n) for n in networks),
            keepalive_interval=self._number(data, "keepalive_interval", 0.0, "sip", minimum=0),
            overload=self._overload(data),
            realm=realm,
            ring_timeout=self._number(data, "ring_timeout", 30.0, "sip", minimum=1),
            rtp_inactivity_timeout=self._number(
                data, "rtp_inactivity_timeout", 30.0, "sip", minimum=1
            ),
            rtp_ports=(int(match.group(1)), int(match.group(2))),
            t1=self._number(data, "t1", 0.5, "sip", minimum=0.01),
            nonce_lifetime=self._number(data, "nonce_lifetime", 300.0, "sip", minimum=5),
            max_registration=int(self._number(data, "max_registration", 3600, "sip", minimum=60)),
            min_registration=int(self._number(data, "min_registration", 60, "sip", minimum=1)),
            session_expires=int(session_expires),
            min_se=int(min_se),
        )

    def _overload(self, data: dict[str, Any]) -> OverloadConfig:
        shed = self._number(data, "overload_shed_ms", 200.0, "sip", minimum=10)
        drop = self._number(data, "overload_drop_ms", 1000.0, "sip", minimum=20)
        retry = self._number(data, "overload_retry_after", 5, "sip", minimum=1)
        if drop <= shed:
            raise self.fail(
                "overload_drop_ms must be above overload_shed_ms",
                table="sip",
                key="overload_drop_ms",
            )
        return OverloadConfig(shed_lag=shed / 1000, drop_lag=drop / 1000, retry_after=int(retry))

    def tls(self, data: dict[str, Any]) -> dict[str, Any]:
        """[sip] tls_*: the listener's address, certificate and key, and peer checking."""
        files = self._certificate(data, "sip")
        if data.get("tls_ca_file") is not None:
            files["tls_ca_file"] = self._existing_file(
                data["tls_ca_file"], "tls_ca_file", table="sip", key="tls_ca_file"
            )
        listen = data.get("tls_listen")
        if listen is not None and not {"tls_certificate", "tls_key"} <= set(files):
            raise self.fail(
                "tls_listen needs tls_certificate and tls_key", table="sip", key="tls_listen"
            )
        verify = data.get("tls_verify", True)
        if not isinstance(verify, bool):
            raise self.fail("tls_verify must be true or false", table="sip", key="tls_verify")
        tls_listen = self._hostport(listen, "sip", "tls_listen") if listen else None
        sip_host = str(data.get("listen", "127.0.0.1:5060")).rpartition(":")[0].strip("[]")
        if tls_listen is not None and tls_listen.host != sip_host:
            raise self.fail(
                f"tls_listen must be on the SIP listen address {sip_host}",
                table="sip",
                key="tls_listen",
            )
        return {
            "tls_listen": tls_listen,
            "tls_verify": verify,
            **files,
        }

    def _certificate(self, data: dict[str, Any], table: str) -> dict[str, Path]:
        """A table's tls_certificate and tls_key as existing files; when both are given they
        must load together (the key is the certificate's)."""
        files = {
            key: self._existing_file(data[key], key, table=table, key=key)
            for key in ("tls_certificate", "tls_key")
            if data.get(key) is not None
        }
        if len(files) == 2:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    files["tls_certificate"], files["tls_key"]
                )
            except ssl.SSLError as exc:
                raise self.fail(
                    f"tls_certificate and tls_key do not load: {exc.reason or exc}",
                    table=table,
                    key="tls_key",
                ) from exc
        return files

    def _srtp(self, item: dict[str, Any], what: str, table: str, index: int) -> str:
        value = item.get("srtp", "off")
        if value not in SRTP_POLICIES:
            raise self.fail(
                f"{what}: srtp must be one of {', '.join(SRTP_POLICIES)}",
                table=table,
                key="srtp",
                index=index,
            )
        return str(value)

    def _existing_file(
        self, value: object, what: str, *, table: str, key: str, index: int = 0
    ) -> Path:
        """A file named in the config (relative to the config's folder); it must exist."""
        path = Path(str(value))
        if not path.is_absolute():
            path = (self.base / path).resolve()
        if not path.is_file():
            raise self.fail(f"{what} {value} does not exist", table=table, key=key, index=index)
        return path

    def accounts(self, items: Any) -> tuple[Account, ...]:
        if not isinstance(items, list):
            raise self.fail(
                "accounts must be an array of tables [[accounts]]", table=None, key="accounts"
            )
        seen: set[str] = set()
        result = []
        allowed = {
            "extension",
            "password",
            "display_name",
            "role",
            "static_contact",
            "max_calls",
            "team",
            "daily_plan",
            "session_timers",
            "srtp",
            *_FORWARD_KEYS,
        }
        for index, item in enumerate(items):
            self._check_keys(item, allowed, "accounts", index)
            extension = str(item.get("extension", ""))
            if not _EXTENSION.match(extension):
                raise self.fail(
                    f"extension must be 2-8 digits, got {extension!r}",
                    table="accounts",
                    key="extension",
                    index=index,
                )
            if extension in seen:
                raise self.fail(
                    f"extension {extension} is defined twice",
                    table="accounts",
                    key="extension",
                    index=index,
                )
            seen.add(extension)
            password = item.get("password")
            if not isinstance(password, str) or len(password) < 4:
                raise self.fail(
                    f"account {extension}: password must be a string of at least 4 characters",
                    table="accounts",
                    key="password",
                    index=index,
                )
            role = item.get("role", "agent")
            if role not in ROLES:
                raise self.fail(
                    f"account {extension}: role must be one of {', '.join(ROLES)}, got {role!r}",
                    table="accounts",
                    key="role",
                    index=index,
                )
            static = item.get("static_contact")
            if static is not None and not str(static).startswith(("sip:", "sips:")):
                raise self.fail(
                    f"account {extension}: static_contact must be a sip: or sips: URI",
                    table="accounts",
                    key="static_contact",
                    index=index,
                )
            max_calls = item.get("max_calls", 1)
            if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
                raise self.fail(
                    f"account {extension}: max_calls must be a whole number >= 1",
                    table="accounts",
                    key="max_calls",
                    index=index,
                )
            team = item.get("team", [])
            if not isinstance(team, list) or not all(isinstance(t, str | int) for t in team):
                raise self.fail(
                    f"account {extension}: team must be a list of extensions",
                    table="accounts",
                    key="team",
                    index=index,
                )
            daily_plan = item.get("daily_plan", 0)
            if isinstance(daily_plan, bool) or not isinstance(daily_plan, int) or daily_plan < 0:
                raise self.fail(
                    f"account {extension}: daily_plan must be a whole number >= 0",
                    table="accounts",
                    key="daily_plan",
                    index=index,
                )
            timers = self._flag(item, "session_timers", f"account {extension}", "accounts", index)
            given = {field: item[key] for key, field in _FORWARD_KEYS.items() if key in item}
            for key, field_name in _FORWARD_KEYS.items():
                if key in item:
                    try:
                        Forwarding().updated({field_name: item[key]})
                    except ForwardingError as exc:
                        raise self.fail(
                            f"account {extension}: {key}: {exc}",
                            table="accounts",
                            key=key,
                            index=index,
                        ) from None
            forwarding = Forwarding().updated(given)
            if team and role != "supervisor":
                raise self.fail(
                    f"account {extension}: only a supervisor has a team",
                    table="accounts",
                    key="team",
                    index=index,
                )
            result.append(
                Account(
                    team=tuple(str(t) for t in team),
                    daily_plan=daily_plan,
                    max_calls=max_calls,
                    extension=extension,
                    password=password,
                    display_name=str(item.get("display_name", "")),
                    role=role,
                    static_contact=static,
                    session_timers=timers,
                    srtp=self._srtp(item, f"account {extension}", "accounts", index),
                    forwarding=forwarding,
                )
            )
        for index, account in enumerate(result):
            fwd = account.forwarding
            for key, target in (
                ("forward_always", fwd.always),
                ("forward_busy", fwd.busy),
                ("forward_no_answer", fwd.no_answer),
            ):
                if target is not None and (target == account.extension or (
                    target not in seen and not _PHONE_NUMBER.match(target)
                )):  # fmt: skip
                    raise self.fail(
                        f"account {account.extension}: {key} must be another extension "
                        f"or a phone number of 7-15 digits, not {target!r}",
                        table="accounts",
                        key=key,
                        index=index,
                    )
        return tuple(result)

    def pickup_groups(self, items: Any, extensions: set[str]) -> tuple[PickupGroup, ...]:
        result, seen = [], set[str]()
        for index, item in enumerate(self._table_list(items, "pickup_groups")):
            self._check_keys(item, {"name", "members"}, "pickup_groups", index)
            name = self._name(item, "name", "pickup_groups", index, seen)
            members = item.get("members")
            unknown = (
                [m for m in members if str(m) not in extensions]
                if isinstance(members, list)
                else []
            )
            if not isinstance(members, list) or len(members) < 2 or unknown:
                raise self.fail(
                    f"pickup group {name}: members must be a list of at least two extensions"
                    + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""),
                    table="pickup_groups",
                    key="members",
                    index=index,
                )
            result.append(PickupGroup(name, tuple(str(m) for m in members)))
        return tuple(result)

    def blf_groups(self, items: Any, extensions: set[str]) -> tuple[BlfGroup, ...]:
        result, seen = [], set[str]()
        for index, item in enumerate(self._table_list(items, "blf_groups")):
            self._check_keys(item, {"name", "members", "watchers"}, "blf_groups", index)
            name = self._name(item, "name", "blf_groups", index, seen)
            lists = []
            for key in ("members", "watchers"):
                value = item.get(key, [] if key == "watchers" else None)
                if (
                    not isinstance(value, list)
                    or (key == "members" and not value)
                    or any(str(v) not in extensions for v in value)
                ):
                    raise self.fail(
                        f"BLF group {name}: {key} must be a list of extensions"
                        + (" (at least one)" if key == "members" else ""),
                        table="blf_groups",
                        key=key,
                        index=index,
                    )
                lists.append(tuple(str(v) for v in value))
            result.append(BlfGroup(name, lists[0], lists[1]))
        return tuple(result)

    def _table_list(self, items: Any, table: str) -> list[dict[str, Any]]:
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self.fail(
                f"{table} must be an array of tables [[{table}]]", table=None, key=table
            )
        return items

    def _name(self, item: dict[str, Any], key: str, table: str, index: int, seen: set[str]) -> str:
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{table}: {key} is required", table=table, key=key, index=index)
        if value in seen:
            raise self.fail(
                f"{table}: {value!r} is defined twice", table=table, key=key, index=index
            )
        seen.add(value)
        return value

    def trunks(self, items: Any, *, default_region: str) -> tuple[Trunk, ...]:
        result, seen = [], set[str]()
        for index, item in enumerate(self._table_list(items, "trunks")):
            self._check_keys(
                item,
                {
                    "name",
                    "allow_from",
                    "outbound",
                    "caller_id",
                    "password",
                    "cps",
                    "session_timers",
                    "transport",
                    "srtp",
                    *_PROVIDER_KEYS,
                }
                | TRUNK_NUMBERING_KEYS,
                "trunks",
                index,
            )
            name = self._name(item, "name", "trunks", index, seen)
            allow = item.get("allow_from", [])
            if not isinstance(allow, list) or not all(is_ip(a) for a in allow):
                raise self.fail(
                    f"trunk {name}: allow_from must be a list of IP addresses",
                    table="trunks",
                    key="allow_from",
                    index=index,
                )
            outbound = item.get("outbound")
            password = item.get("password")
            if password is not None and (not isinstance(password, str) or len(password) < 8):
                raise self.fail(
                    f"trunk {name}: password must be a string of at least 8 characters",
                    table="trunks",
                    key="password",
                    index=index,
                )
            timers = self._flag(item, "session_timers", f"trunk {name}", "trunks", index)
            cps = item.get("cps", 10.0)
            if isinstance(cps, bool) or not isinstance(cps, int | float) or not 0 < cps <= 1000:
                raise self.fail(
                    f"trunk {name}: cps must be a number of calls per second within (0, 1000]",
                    table="trunks",
                    key="cps",
                    index=index,
                )
            transport = item.get("transport", "udp")
            if transport not in TRANSPORTS:
                raise self.fail(
                    f"trunk {name}: transport must be one of {', '.join(TRANSPORTS)}",
                    table="trunks",
                    key="transport",
                    index=index,
                )
            result.append(
                Trunk(
                    name=name,
                    transport=transport,
                    srtp=self._srtp(item, f"trunk {name}", "trunks", index),
                    cps=float(cps),
                    allow_from=tuple(allow),
                    outbound=_address(self._hostport(outbound, "trunks", "outbound"))
                    if outbound
                    else None,
                    password=password,
                    session_timers=timers,
                    **self._trunk_numbering(item, name, index, default_region),
                    **self._provider(item, name, index),
                )
            )
        return tuple(result)

    def _trunk_numbering(
        self, item: dict[str, Any], name: str, index: int, default_region: str
    ) -> dict[str, Any]:
        """A trunk's number rewriting and caller ID presentation (TRUNK_NUMBERING_KEYS)."""

        def fail(reason: str, key: str) -> ConfigError:
            return self.fail(f"trunk {name}: {reason}", table="trunks", key=key, index=index)

        for key in ("country", "outbound_format", "strip_prefix", "dial_prefix"):
            if key in item and not isinstance(item[key], str):
                raise fail(f"{key} must be a string", key)
        try:
            plan = NumberPlan(
                country=str(item.get("country", default_region)).upper(),
                outbound_format=item.get("outbound_format", "e164"),
                strip_prefix=item.get("strip_prefix", ""),
                dial_prefix=item.get("dial_prefix", ""),
            )
        except ValueError as exc:
            key = next(
                (k for k in ("outbound_format", "strip_prefix", "dial_prefix") if k in str(exc)),
                "country",
            )
            raise fail(str(exc), key) from exc
        headers = item.get("identity_headers", [])
        if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
            raise fail(
                'identity_headers must be a list such as ["pai", "rpid"]', "identity_headers"
            )
        withhold = item.get("withhold_caller_id", False)
        if not isinstance(withhold, bool):
            raise fail("withhold_caller_id must be true or false", "withhold_caller_id")
        trust = item.get("trust_identity", True)
        if not isinstance(trust, bool):
            raise fail("trust_identity must be true or false", "trust_identity")
        numbers: dict[str, str] = {}
        for key in ("caller_id", "asserted_identity"):
            value = item.get(key)
            if value is None or value == "" or value == ANONYMOUS:
                continue
            try:
                numbers[key] = plan.to_e164(str(value))
            except ValueError as exc:
                raise fail(f"{key}: {exc}", key) from exc
        try:
            identity = OutboundIdentity(
                headers=tuple(h.lower() for h in headers),
                asserted=numbers.get("asserted_identity", ""),
                withhold=withhold,
            )
        except ValueError as exc:
            raise fail(str(exc), "identity_headers") from exc
        caller_id = numbers.get("caller_id", str(item.get("caller_id", "")))
        return {
            "numbers": plan,
            "identity": identity,
            "caller_id": caller_id,
            "trust_identity": trust,
        }

    def _provider(self, item: dict[str, Any], name: str, index: int) -> dict[str, Any]:
        """The keys of a provider trunk (registration, auth, failover, channels, qualify)."""

        def fail(key: str, reason: str) -> ConfigError:
            return self.fail(f"trunk {name}: {reason}", table="trunks", key=key, index=index)

        found: dict[str, Any] = {}
        for key in ("registrar", "outbound_proxy"):
            if key in item:
                found[key] = _address(self._hostport(item[key], "trunks", key))
        for key in ("username", "secret", "realm", "domain"):
            if key in item:
                if not isinstance(item[key], str) or not item[key]:
                    raise fail(key, f"{key} must be a non-empty string")
                found[key] = item[key]
        register = item.get("register", False)
        if not isinstance(register, bool):
            raise fail("register", "register must be true or false")
        found["register"] = register
        for key, low, high in (("expires", 5, 86400), ("priority", -1000, 1000),
                               ("channels", 0, 100000)):  # fmt: skip
            value = item.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise fail(key, f"{key} must be a whole number within [{low}, {high}]")
            found[key] = value
        qualify = item.get("qualify", 0)
        if (
            isinstance(qualify, bool)
            or not isinstance(qualify, int | float)
            or not (qualify == 0 or 1 <= qualify <= 3600)
        ):
            raise fail("qualify", "qualify must be 0 (off) or seconds within [1, 3600]")
        found["qualify"] = float(qualify)
        if register:
            for key in ("registrar", "username", "secret"):
                if key not in found:
                    raise fail(key, f"register = true needs {key}")
        if "secret" in found and "username" not in found:
            raise fail("username", "secret needs username")
        if found.get("outbound_proxy") and not (found.get("registrar") or item.get("outbound")):
            raise fail("outbound_proxy", "outbound_proxy needs registrar or outbound")
        return found

    def ring_groups(self, items: Any, extensions: set[str]) -> tuple[RingGroup, ...]:
        result, seen = [], set[str]()
        allowed = {
            "name",
            "members",
            "strategy",
            "member_timeout",
            "ring_timeout",
            "owner",
            "auto_reply",
            "hours",
            "timezone",
        }
        for index, item in enumerate(self._table_list(items, "ring_groups")):
            self._check_keys(item, allowed, "ring_groups", index)
            name = self._name(item, "name", "ring_groups", index, seen)
            members = item.get("members", [])
            unknown = (
                [m for m in members if str(m) not in extensions]
                if isinstance(members, list)
                else []
            )
            if not isinstance(members, list) or not members or unknown:
                raise self.fail(
                    f"ring group {name}: members must be a non-empty list of extensions"
                    + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else ""),
                    table="ring_groups",
                    key="members",
                    index=index,
                )
            strategy = item.get("strategy", "ringall")
            if strategy not in RING_STRATEGIES:
                raise self.fail(
                    f"ring group {name}: strategy must be one of {', '.join(RING_STRATEGIES)}",
                    table="ring_groups",
                    key="strategy",
                    index=index,
                )
            owner = item.get("owner")
            if owner is not None and str(owner) not in extensions:
                raise self.fail(
                    f"ring group {name}: owner {owner} is no extension",
                    table="ring_groups",
                    key="owner",
                    index=index,
                )
            prompt = item.get("auto_reply")
            if prompt is not None:
                prompt = self._existing_file(
                    prompt,
                    f"ring group {name}: auto_reply prompt",
                    table="ring_groups",
                    key="auto_reply",
                    index=index,
                )
            hours = None
            if item.get("hours") is not None:
                try:
                    hours = OpeningHours.parse(str(item["hours"]), str(item.get("timezone", "UTC")))
                except ValueError as exc:
                    raise self.fail(
                        f"ring group {name}: {exc}", table="ring_groups", key="hours", index=index
                    ) from exc
            result.append(
                RingGroup(
                    name=name,
                    members=tuple(str(m) for m in members),
                    strategy=strategy,
                    member_timeout=self._number(
                        item, "member_timeout", 15.0, "ring_groups", minimum=1
                    ),
                    ring_timeout=self._number(item, "ring_timeout", 30.0, "ring_groups", minimum=1),
                    owner=str(owner) if owner is not None else None,
                    auto_reply=prompt,
                    hours=hours,
                )
            )
        return tuple(result)

    def voicemail(self, items: Any, extensions: set[str]) -> tuple[VoicemailBox, ...]:
        result, seen = [], set[str]()
        for index, item in enumerate(self._table_list(items, "voicemail")):
            self._check_keys(item, {"owner", "greeting", "max_seconds"}, "voicemail", index)
            owner = self._name(item, "owner", "voicemail", index, seen)
            if owner not in extensions:
                raise self.fail(f"voicemail {owner}: owner is no extension", table="voicemail",
                                key="owner", index=index)  # fmt: skip
            greeting = item.get("greeting")
            if greeting is not None and str(greeting).endswith(".wav"):
                what = f"voicemail {owner}: greeting"
                greeting = self._existing_file(
                    greeting, what, table="voicemail", key="greeting", index=index
                )
            longest = item.get("max_seconds", 120)
            if isinstance(longest, bool) or not isinstance(longest, int | float) or longest < 5:
                raise self.fail(f"voicemail {owner}: max_seconds must be a number >= 5",
                                table="voicemail", key="max_seconds", index=index)  # fmt: skip
            result.append(VoicemailBox(owner, str(greeting) if greeting else None, float(longest)))
        return tuple(result)

    def queues(
        self, items: Any, *, extensions: set[str], groups: set[str]
    ) -> tuple[QueueConfig, ...]:
        result, seen = [], set[str]()
        allowed = {
            "name", "members", "strategy", "member_timeout", "wrap_up", "max_wait",
            "max_length", "overflow", "announce_every", "service_level", "callback_digit",
            "owner", "music", "greeting", "voicemail_greeting", "when_empty",
        }  # fmt: skip
        entries = self._table_list(items, "queues")
        names = {str(item.get("name")) for item in entries if isinstance(item, dict)}

        def fail(index: int, key: str, reason: str) -> ConfigError:
            return self.fail(reason, table="queues", key=key, index=index)

        for index, item in enumerate(entries):
            self._check_keys(item, allowed, "queues", index)
            name = self._name(item, "name", "queues", index, seen)
            raw = item.get("members", [])
            members: list[QueueMember] = []
            if not isinstance(raw, list) or not raw:
                raise fail(index, "members", f"queue {name}: members must be a non-empty list")
            for member in raw:
                if isinstance(member, dict):
                    extension, penalty = str(member.get("extension")), member.get("penalty", 0)
                    extra = set(member) - {"extension", "penalty"}
                    if extra:
                        raise fail(index, "members", f"queue {name}: member keys are extension"
                                   f" and penalty, not {sorted(extra)[0]}")  # fmt: skip
                else:
                    extension, penalty = str(member), 0
                if extension not in extensions:
                    raise fail(index, "members", f"queue {name}: member {extension} is no "
                               "extension")  # fmt: skip
                if isinstance(penalty, bool) or not isinstance(penalty, int) or penalty < 0:
                    raise fail(index, "members", f"queue {name}: penalty of {extension} must be"
                               " a whole number >= 0")  # fmt: skip
                members.append(QueueMember(extension, penalty))
            if len({m.extension for m in members}) != len(members):
                raise fail(index, "members", f"queue {name}: a member is listed twice")
            strategy = item.get("strategy", "longest-idle")
            if strategy not in QUEUE_STRATEGIES:
                raise fail(index, "strategy", f"queue {name}: strategy must be one of "
                           + ", ".join(QUEUE_STRATEGIES))  # fmt: skip
            owner = item.get("owner")
            if owner is not None and str(owner) not in extensions and owner != RESPONSIBLE:
                raise fail(index, "owner", f"queue {name}: owner {owner} is no extension"
                           f" (nor {RESPONSIBLE!r})")  # fmt: skip
            overflow = str(item.get("overflow", "callback"))
            kind, _, target = overflow.partition(":")
            valid = (
                overflow in ("callback", "voicemail")
                or (kind == "queue" and target in names and target != name)
                or (kind == "ringgroup" and target in groups)
                or (kind in ("agent", "voicemail") and target in extensions)
            )
            if not valid:
                raise fail(index, "overflow", f"queue {name}: overflow must be callback, "
                           "queue:OTHER, ringgroup:NAME, agent:EXT, voicemail:EXT of this "
                           "config or voicemail (the queue's own box), "
                           f"got {overflow!r}")  # fmt: skip
            digit = str(item.get("callback_digit", "1"))
            if digit not in ("", *"0123456789*#"):
                raise fail(index, "callback_digit", f"queue {name}: callback_digit must be one"
                           " DTMF digit or empty")  # fmt: skip
            music = item.get("music")
            if music is not None:
                music = str(self._existing_file(music, f"queue {name}: music", table="queues",
                                                key="music", index=index))  # fmt: skip
            when_empty = item.get("when_empty", "wait")
            if when_empty not in ("wait", "overflow"):
                raise fail(index, "when_empty", f"queue {name}: when_empty must be wait or"
                           f" overflow, got {when_empty!r}")  # fmt: skip
            greeting, box_greeting = (
                self._queue_prompt(item.get(key), f"queue {name}: {key}", key, index)
                for key in ("greeting", "voicemail_greeting")
            )

            def number(
                key: str,
                default: float,
                minimum: float,
                index: int = index,
                item: dict[str, Any] = item,
                name: str = name,
            ) -> float:
                value = item.get(key, default)
                if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                    raise fail(index, key, f"queue {name}: {key} must be a number >= {minimum}")
                return float(value)

            max_length = number("max_length", 0, 0)
            if max_length != int(max_length):
                raise fail(index, "max_length", f"queue {name}: max_length must be whole")
            result.append(
                QueueConfig(
                    name=name,
                    members=tuple(members),
                    strategy=strategy,
                    member_timeout=number("member_timeout", 15.0, 1),
                    wrap_up=number("wrap_up", 10.0, 0),
                    max_wait=number("max_wait", 300.0, 0),
                    max_length=int(max_length),
                    overflow=overflow,
                    announce_every=number("announce_every", 30.0, 0),
                    service_level=number("service_level", 20.0, 1),
                    callback_digit=digit,
                    owner=str(owner) if owner is not None else None,
                    music=music,
                    greeting=greeting,
                    voicemail_greeting=box_greeting,
                    when_empty=when_empty,
                )
            )
        return tuple(result)

    def _queue_prompt(self, value: object, what: str, key: str, index: int) -> str | None:
        """A queue's prompt: a WAV that must exist, or a text for espeak-ng."""
        if value is None:
            return None
        if str(value).endswith(".wav"):
            return str(self._existing_file(value, what, table="queues", key=key, index=index))
        return str(value)

    def dids(
        self,
        items: Any,
        *,
        trunks: dict[str, Trunk],
        groups: set[str],
        extensions: set[str],
        queues: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> tuple[Did, ...]:
        result, seen = [], set[str]()
        for index, item in enumerate(self._table_list(items, "dids")):
            self._check_keys(item, {"number", "trunk", "route", "label", "record"}, "dids", index)
            written = self._name(item, "number", "dids", index, set())
            trunk = item.get("trunk")
            if trunk not in trunks:
                raise self.fail(
                    f"DID {written}: trunk {trunk!r} is not defined",
                    table="dids",
                    key="trunk",
                    index=index,
                )
            # Matched on E.164 whatever format the carrier sends: read in the trunk's country.
            try:
                number = trunks[trunk].numbers.to_e164(written)
            except ValueError as exc:
                raise self.fail(
                    f"DID {written}: {exc}", table="dids", key="number", index=index
                ) from exc
            if number in seen:
                raise self.fail(
                    f"dids: {written!r} is defined twice"
                    + (f" (as {number})" if number != written else ""),
                    table="dids",
                    key="number",
                    index=index,
                )
            seen.add(number)
            route = str(item.get("route", ""))
            kind, _, target = route.partition(":")
            valid = (
                (kind == "ringgroup" and target in groups)
                or (kind == "agent" and target in extensions)
                or (kind == "ivr" and bool(target))
                or (kind == "queue" and target in queues)
                or (kind == "voicemail" and target in extensions)
            )
            if not valid:
                raise self.fail(
                    f"DID {number}: route must be ringgroup:NAME, agent:EXT, ivr:FLOW, "
                    f"queue:NAME or voicemail:EXT of this config, got {route!r}",
                    table="dids",
                    key="route",
                    index=index,
                )
            record = item.get("record", True)
            if not isinstance(record, bool):
                raise self.fail(
                    f"DID {number}: record must be true or false",
                    table="dids",
                    key="record",
                    index=index,
                )
            result.append(
                Did(
                    number=number,
                    trunk=str(trunk),
                    route=route,
                    label=str(item.get("label", "")),
                    record=record,
                )
            )
        return tuple(result)

    def ivr(self, data: dict[str, Any]) -> IvrSettings:
        self._check_keys(data, {"flows_dir", "prompt_cache", "tts"}, "ivr")
        tts = data.get("tts", True)
        if not isinstance(tts, bool):
            raise self.fail("tts must be true or false", table="ivr", key="tts")
        flows_dir = data.get("flows_dir")
        flows: tuple[tuple[str, Path], ...] = ()
        directory = None
        if flows_dir is not None:
            directory = (self.base / str(flows_dir)).resolve()
            if not directory.is_dir():
                raise self.fail(
                    f"flows_dir {flows_dir} is not a folder", table="ivr", key="flows_dir"
                )
            flows = _ivr_flows(directory)
        cache = data.get("prompt_cache")
        return IvrSettings(
            flows_dir=directory,
            flows=flows,
            prompt_cache=(self.base / str(cache)).resolve() if cache else None,
            tts=tts,
        )

    def crm(self, data: dict[str, Any]) -> CrmSettings:
        self._check_keys(
            data,
            {
                "default_country_code",
                "callback_due_minutes",
                "node",
                "endpoints",
                "retry",
                "link_secret",
                "link_ttl_days",
                "follow_up_minutes",
                "outbox_retention_days",
                "dead_letter_retention_days",
                "manual_policy",
                "manual_hours",
                "manual_tz",
            },
            "crm",
        )
        manual_policy = {"agent": "block", "manager": "warn", "admin": "warn"}
        given = data.get("manual_policy", {})
        if not isinstance(given, dict) or any(
            role not in ("admin", "manager", "supervisor", "agent")
            or value not in ("block", "warn", "off")
            for role, value in given.items()
        ):
            raise self.fail(
                "manual_policy maps roles (admin, manager, supervisor, agent) to"
                ' "block", "warn" or "off"',
                table="crm",
                key="manual_policy",
            )
        manual_policy.update(given)
        hours = data.get("manual_hours", "09:00-21:00")
        hours_match = re.fullmatch(r"([0-2][0-9]:[0-5][0-9])-([0-2][0-9]:[0-5][0-9])", str(hours))
        if hours_match is None:
            raise self.fail(
                'manual_hours must look like "09:00-21:00"', table="crm", key="manual_hours"
            )
        manual_tz = str(data.get("manual_tz", "UTC"))
        try:
            ZoneInfo(manual_tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(
                f"unknown time zone {manual_tz!r}", table="crm", key="manual_tz"
            ) from None
        link_secret = data.get("link_secret", "")
        if not isinstance(link_secret, str) or ("link_secret" in data and len(link_secret) < 16):
            raise self.fail(
                "link_secret must be a string of at least 16 characters",
                table="crm",
                key="link_secret",
            )
        self._links = (
            link_secret,
            86400 * self._number(data, "link_ttl_days", 30.0, "crm", minimum=0.00001),
        )
        country = str(data.get("default_country_code", "1"))
        if not country.isdigit() or not 1 <= len(country) <= 3:
            raise self.fail(
                "default_country_code must be 1-3 digits", table="crm", key="default_country_code"
            )
        endpoints, seen = [], set[str]()
        for index, item in enumerate(self._table_list(data.get("endpoints", []), "crm.endpoints")):
            endpoints.append(self._crm_endpoint(item, index, seen))
        retry = data.get("retry", {})
        self._check_keys(retry, {"base_delay", "max_delay", "max_age_hours"}, "crm.retry")
        policy = RetryPolicy(
            base_delay=self._number(retry, "base_delay", 1.0, "crm.retry", minimum=0.01),
            max_delay=self._number(retry, "max_delay", 300.0, "crm.retry", minimum=0.01),
            max_age=3600 * self._number(retry, "max_age_hours", 72.0, "crm.retry", minimum=0.001),
        )
        return CrmSettings(
            default_country_code=country,
            callback_due_minutes=self._number(data, "callback_due_minutes", 15.0, "crm", minimum=0),
            node=str(data.get("node", "")),
            endpoints=tuple(endpoints),
            retry=policy,
            link_secret=self._links[0],
            manual_policy=manual_policy,
            manual_hours=(hours_match.group(1), hours_match.group(2)),
            manual_tz=manual_tz,
            follow_up_minutes=(
                None
                if "follow_up_minutes" not in data
                else self._number(data, "follow_up_minutes", 0, "crm", minimum=1)
            ),
            outbox_retention_days=self._days(data, "outbox_retention_days", 30, "crm"),
            dead_letter_retention_days=self._days(data, "dead_letter_retention_days", None, "crm"),
        )

    def _crm_endpoint(self, item: dict[str, Any], index: int, seen: set[str]) -> CrmEndpoint:
        table = "crm.endpoints"
        self._check_keys(item, _ENDPOINT_KEYS, table, index)
        name = self._name(item, "name", table, index, seen)
        kind, url = item.get("kind"), item.get("url")

        def fail(reason: str, key: str) -> ConfigError:
            return self.fail(f"CRM endpoint {name}: {reason}", table=table, key=key, index=index)

        if kind not in DEFAULT_ADAPTERS:
            raise fail(f"kind must be one of {', '.join(DEFAULT_ADAPTERS)}", "kind")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise fail("url must be an http(s) URL", "url")
        for key in ("secret", "recording_link", "source"):
            if key in item and not isinstance(item[key], str):
                raise fail(f"{key} must be a string", key)
        if "secret" in item and not item["secret"].strip():
            raise fail("secret is empty (leave the key out for an unsigned webhook)", "secret")
        events = item.get("events")
        if events is not None and (
            not isinstance(events, list) or not all(isinstance(e, str) for e in events)
        ):
            raise fail("events must be a list of event names", "events")
        old = item.get("old_secrets", [])
        if not isinstance(old, list) or not all(isinstance(x, str) for x in old):
            raise fail("old_secrets must be a list of strings", "old_secrets")
        try:
            user_map = {str(k): int(v) for k, v in dict(item.get("user_map", {})).items()}
        except (TypeError, ValueError):
            raise fail("user_map maps extensions to CRM user ids (integers)", "user_map") from None
        oauth = None
        if "oauth" in item:
            raw = item["oauth"]
            keys = {"client_id", "client_secret", "redirect_uri", "token_url"}
            if not isinstance(raw, dict) or set(raw) - keys:
                raise fail(f"oauth is a table of {', '.join(sorted(keys))}", "oauth")
            oauth = OAuthClient(
                client_id=str(raw.get("client_id", "")),
                client_secret=str(raw.get("client_secret", "")),
                redirect_uri=str(raw.get("redirect_uri", "")),
                token_url=raw.get("token_url"),
            )
        rate = item.get("rate_limit")
        burst = item.get("burst")
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or burst < 1
        ):
            raise fail("burst must be a positive integer", "burst")
        endpoint = CrmEndpoint(
            name=name,
            kind=str(kind),
            url=url,
            secret=str(item.get("secret", "")),
            timeout=self._number(item, "timeout", 10.0, table, minimum=0.1),
            events=frozenset(events) if events is not None else None,
            user_map=user_map,
            recording_link=item.get("recording_link"),
            source=str(item.get("source", "callcenter")),
            old_secrets=tuple(old),
            legacy_signature=bool(item.get("legacy_signature", True)),
            oauth=oauth,
            rate_limit=None
            if rate is None
            else self._number(item, "rate_limit", 1, table, minimum=0.01),
            burst=burst,
            recording_format=str(item.get("recording_format", "wav")),
            link_secret=self._links[0],
            link_ttl=self._links[1],
        )
        problems = endpoint_problems(endpoint, DEFAULT_ADAPTERS)
        if problems:
            key, reason = problems[0]
            raise self.fail(reason, table=table, key=key, index=index)
        return endpoint

    def recordings(self, data: dict[str, Any]) -> RecordingSettings:
        self._check_keys(data, {"enabled", "directory", "retention_days"}, "recordings")
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise self.fail("enabled must be true or false", table="recordings", key="enabled")
        days = self._days(data, "retention_days", 90, "recordings")
        directory = data.get("directory")
        return RecordingSettings(
            enabled=enabled,
            directory=(self.base / str(directory)).resolve() if directory else None,
            retention_days=days,
        )

    def _days(self, data: dict[str, Any], key: str, default: int | None, table: str) -> int | None:
        """A retention in whole days (>= 1), or None (absent with no default): keep forever."""
        days = data.get(key, default)
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
            raise self.fail(f"{key} must be a whole number >= 1", table=table, key=key)
        return days if days is None else int(days)

    def api_keys(self, items: Any, extensions: set[str]) -> tuple[ApiKey, ...]:
        result, seen = [], set[str]()
        for index, item in enumerate(self._table_list(items, "api_keys")):
            self._check_keys(
                item, {"name", "key", "key_sha256", "role", "extension"}, "api_keys", index
            )
            name = self._name(item, "name", "api_keys", index, seen)
            key, digest = item.get("key"), item.get("key_sha256")
            if (key is None) == (digest is None):
                raise self.fail(
                    f"API key {name}: give exactly one of key or key_sha256",
                    table="api_keys",
                    key="key",
                    index=index,
                )
            if key is not None:
                if not isinstance(key, str) or len(key) < 12:
                    raise self.fail(
                        f"API key {name}: key must be a string of at least 12 characters",
                        table="api_keys",
                        key="key",
                        index=index,
                    )
                digest = hashlib.sha256(key.encode()).hexdigest()
            elif not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise self.fail(
                    f"API key {name}: key_sha256 must be 64 lowercase hex digits",
                    table="api_keys",
                    key="key_sha256",
                    index=index,
                )
            role = item.get("role")
            if role not in API_ROLES:
                raise self.fail(
                    f"API key {name}: role must be one of {', '.join(API_ROLES)}",
                    table="api_keys",
                    key="role",
                    index=index,
                )
            extension = item.get("extension")
            if extension is not None and (role != "agent" or str(extension) not in extensions):
                raise self.fail(
                    f"API key {name}: extension must be one of the accounts, on an agent key",
                    table="api_keys",
                    key="extension",
                    index=index,
                )
            result.append(
                ApiKey(
                    name=name,
                    sha256=str(digest),
                    role=str(role),
                    extension=str(extension) if extension is not None else None,
                )
            )
        return tuple(result)


def _ivr_flows(directory: Path) -> tuple[tuple[str, Path], ...]:
    """Every flow file in `directory`, each loaded once to refuse a bad one with its line."""
    flows: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in (".toml", ".json") or not path.is_file():
            continue
        if path.stem in flows:
            raise ConfigError(str(path), None, f"flow {path.stem!r} is defined twice")
        try:
            load_flow(path)
        except FlowError as exc:
            raise ConfigError(exc.path, exc.line, exc.reason) from exc
        flows[path.stem] = path
    return tuple(flows.items())


_PROVIDER_KEYS = (
    "register",
    "username",
    "secret",
    "realm",
    "registrar",
    "domain",
    "outbound_proxy",
    "expires",
    "priority",
    "channels",
    "qualify",
)


def _address(hostport: HostPort) -> tuple[str, int]:
    return (hostport.host, hostport.port)
