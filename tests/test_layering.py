"""docs/architecture.md section 3: the dependency direction, enforced by walking imports with ast.

- nothing imports `callcenter` (the composition root);
- feature packages (pbx dialer ivr recordings crm_bridge) never import each other or sip_test_env;
- telephony imports no feature package;
- telephony.sip/.sdp/.rtp import only the stdlib (.rtp adds pylibsrtp for SRTP); .media adds
  numpy and webrtcvad; .call joins .sip and .sdp; only telephony.aio imports asyncio or socket;
- pure code (telephony outside aio) never reads the clock.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("pbx", "dialer", "ivr", "recordings", "crm_bridge")
PRODUCT = ("telephony", *FEATURES, "callcenter")
STDLIB = set(sys.stdlib_module_names)
IO_MODULES = {"asyncio", "socket", "selectors", "ssl", "socketserver", "threading", "subprocess"}
CLOCK_CALLS = {
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("datetime", "now"),
}

# What each telephony subpackage may import besides the stdlib and itself.
TELEPHONY_ALLOWED: dict[str, set[str]] = {
    "sip": set(),
    "sdp": set(),
    # pylibsrtp: libsrtp's SRTP transform (bytes in, bytes out) in telephony.rtp.srtp.
    "rtp": {"pylibsrtp"},
    # DTLS-SRTP (telephony.rtp.dtls): OpenSSL's DTLS by pyOpenSSL, the certificate by
    # cryptography; ICE-lite (telephony.rtp.ice): aioice's STUN codec.
    "rtp.dtls": {"OpenSSL", "cryptography"},
    "rtp.ice": {"aioice"},
    # audioop: the standard library up to 3.12, the audioop-lts package from 3.13 on.
    "media": {"numpy", "webrtcvad", "audioop", "telephony.rtp"},
    "call": {"telephony.sip", "telephony.sdp"},
    "numbers": {"phonenumbers"},
    "aio": {"telephony", "numpy", "uvloop"},
}


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                # A package's __init__ is its own module; a plain module drops its last part.
                is_pkg = path.name == "__init__.py"
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name, node.lineno


def _top(name: str) -> str:
    return name.split(".")[0]


def _all_modules() -> list[tuple[str, Path]]:
    return [m for pkg in (*PRODUCT, "sip_test_env") for m in _modules(pkg)]


def test_tree_is_walked() -> None:
    names = {m for m, _ in _all_modules()}
    assert "telephony" in names and "callcenter" in names and "pbx" in names


@pytest.mark.parametrize(("module", "path"), _all_modules(), ids=lambda v: str(v))
def test_import_direction(module: str, path: Path) -> None:
    own = _top(module)
    problems = []
    for name, line in _imports(module, path):
        top = _top(name)
        where = f"{path.relative_to(ROOT)}:{line} imports {name}"
        if top == "callcenter" and own != "callcenter":
            problems.append(f"{where}: nothing imports the composition root")
        if own in FEATURES and top in FEATURES and top != own:
            problems.append(f"{where}: feature packages never import each other")
        if own in PRODUCT and top in ("sip_test_env", "tests"):
            problems.append(f"{where}: product code never imports test peers")
        if own == "telephony" and top in FEATURES:
            problems.append(f"{where}: telephony imports no feature package")
        if own == "telephony":
            sub = module.split(".")[1] if "." in module else None
            if sub is None or sub == "aio":
                continue
            allowed = TELEPHONY_ALLOWED.get(sub, set())
            allowed |= TELEPHONY_ALLOWED.get(".".join(module.split(".")[1:3]), set())
            if name.startswith(f"telephony.{sub}") or name == "telephony":
                continue
            if top in IO_MODULES:
                problems.append(f"{where}: only telephony.aio does I/O")
            elif top in STDLIB:
                continue
            elif not any(name == a or name.startswith(a + ".") for a in allowed):
                problems.append(f"{where}: telephony.{sub} may import only {sorted(allowed)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "path"),
    [m for m in _modules("telephony") if not m[0].startswith("telephony.aio")],
    ids=lambda v: str(v),
)
def test_pure_code_reads_no_clock(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in CLOCK_CALLS, (
                f"{path.relative_to(ROOT)}:{node.lineno} reads the clock; pass `now` in"
            )
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            names = {a.name for a in node.names}
            assert not names & {"time", "monotonic", "perf_counter"}, (
                f"{path.relative_to(ROOT)}:{node.lineno} imports a clock"
            )


# SIP session logic lives in telephony.call (the sans-IO InviteSession); telephony.aio only
# carries its effects over sockets. These names are how session logic shows up when it leaks.
SESSION_LOGIC = frozenset({"create_request", "create_ack", "from_uas", "from_uac", "TRANSITIONS"})


@pytest.mark.parametrize(
    ("module", "path"),
    [m for m in _modules("telephony") if m[0].startswith("telephony.aio")],
    ids=lambda v: str(v),
)
def test_no_session_logic_in_aio(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text())
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} uses {name}"
        for node in ast.walk(tree)
        for name in (
            node.attr if isinstance(node, ast.Attribute) else None,
            node.id if isinstance(node, ast.Name) else None,
        )
        if name in SESSION_LOGIC
    ]
    assert not found, "session logic belongs in telephony.call:\n" + "\n".join(found)


# What each module of the composition root is. `callcenter/` is wiring, config, CLI, API and web
# (docs/architecture.md section 3); glue implements one feature's protocol with another's
# objects. A new module must say which it is here.
CALLCENTER_ROLES: dict[str, str] = {
    "callcenter": "package",
    "callcenter.cli": "cli",
    "callcenter.campaign_cli": "cli",
    "callcenter.cluster": "cli",
    "callcenter.config": "config",
    "callcenter.logging": "config",
    "callcenter.runtime": "wiring",
    "callcenter.engine": "wiring",
    "callcenter.database": "wiring",
    "callcenter.embedded_pg": "wiring",
    "callcenter.tls": "wiring",
    "callcenter.events": "web",
    "callcenter.live": "web",
    "callcenter.live_share": "web",
    "callcenter.journal": "glue",
    "callcenter.recording": "glue",
    "callcenter.dialing": "glue",
    "callcenter.ivr_glue": "glue",
    "callcenter.click_to_call": "glue",
    "callcenter.screen_pop": "glue",
    "callcenter.status_callbacks": "glue",
    "callcenter.registrations": "glue",
    "callcenter.dialogs": "glue",
    "callcenter.keepalive": "glue",
    "callcenter.forwarding": "glue",
    "callcenter.shared_presence": "glue",
}
JOINABLE = ("telephony", *FEATURES)


@pytest.mark.parametrize(("module", "path"), list(_modules("callcenter")), ids=lambda v: str(v))
def test_callcenter_holds_no_feature_module(module: str, path: Path) -> None:
    """A module of callcenter/ is API (callcenter.api) or has a role above; a glue module joins
    at least two of the product's packages. One that uses a single package is that package's
    own logic and belongs in it."""
    if module.startswith("callcenter.api"):
        return
    role = CALLCENTER_ROLES.get(module)
    assert role is not None, (
        f"{module}: say in CALLCENTER_ROLES what it is, or move it to its feature"
    )
    if role == "glue":
        joined = {_top(name) for name, _ in _imports(module, path)} & set(JOINABLE)
        assert len(joined) >= 2, f"{module} uses only {sorted(joined)}: it belongs in that package"
