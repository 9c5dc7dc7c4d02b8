"""A real Kamailio standing in for a SIP provider, for tests: registrar (usrloc in memory) with
digest auth (401 to REGISTER), a proxy that demands proxy auth (407) on every new INVITE and
routes it by location lookup, record-routing itself.

Accounts live in an htable filled at start (no database): `users` maps a username to its
password. A customer's phone and the engine both register here; the customer calls the
engine's account (Kamailio finds the engine's Contact), the engine calls the customer's.

    async with KamailioProvider(tmp_path, users={"15550100": "trunk-pass"}) as provider:
        provider.port  # UDP on provider.host (127.0.0.3: "another machine")

`kill()` ends it with SIGKILL (a provider gone without a word); `algorithm` picks the digest
algorithm of its challenges (MD5, SHA-256).
"""

from __future__ import annotations

import asyncio
import glob
import shutil
import signal
from pathlib import Path

from telephony.aio.probe import answers_options
from telephony.aio.tasks import Started

from .lifecycle import end_process_group
from .ports import free_port

__all__ = [
    "KAMAILIO",
    "REALM",
    "KamailioError",
    "KamailioProcess",
    "KamailioProvider",
    "kamailio_missing",
    "module_path",
]

KAMAILIO = "kamailio"
REALM = "provider.test"
PROVIDER_HOST = "127.0.0.3"


class KamailioError(RuntimeError):
    """Kamailio is not installed, refused its configuration, or did not start."""


def kamailio_missing() -> str | None:
    """Why Kamailio cannot run here (the install hint), or None."""
    if shutil.which(KAMAILIO) is None and not Path("/usr/sbin/kamailio").exists():
        return "kamailio not installed (sip_test_env/install-peers.sh: apt-get install kamailio)"
    if module_path() is None:
        return "kamailio modules not found"
    return None


def _binary() -> str:
    return shutil.which(KAMAILIO) or "/usr/sbin/kamailio"


def module_path() -> str | None:
    for path in [*glob.glob("/usr/lib/*/kamailio/modules"), "/usr/lib/kamailio/modules"]:
        if Path(path, "registrar.so").exists():
            return path
    return None


def _quote(text: str) -> str:
    if any(c in text for c in '"\\\n\r$'):
        raise ValueError(f"unsupported character in {text!r}")
    return f'"{text}"'


class KamailioProcess(Started):
    """One Kamailio in the foreground, in its own process group, run from the configuration
    `config_text()` of a subclass gives (listening on UDP host:port, answering an OPTIONS ping
    with no user part: that is how start() knows it is up). Its log is kamailio.log in its
    directory."""

    shm_mb = 32
    """Its shared memory (-m), in MB."""

    def __init__(
        self, workdir: str | Path, *, host: str, port: int | None = None, name: str = "kamailio"
    ) -> None:
        self.dir = Path(workdir) / name
        self.host = host
        self.port = port if port is not None else free_port("udp", host=host)
        self.log_path = self.dir / "kamailio.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: object = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The main process (the leader of its process group), while it runs."""
        return self._proc.pid if self._proc is not None else None

    def config_text(self) -> str:
        raise NotImplementedError

    async def start(self, timeout: float = 10.0) -> None:
        if (reason := kamailio_missing()) is not None:
            raise KamailioError(reason)
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "kamailio.cfg"
        cfg.write_text(self.config_text())
        self._log_file = self.log_path.open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            _binary(),
            "-f", str(cfg),
            "-DD", "-E",
            "-m", str(self.shm_mb), "-M", "8",
            "-Y", str(self.dir),
            "-P", str(self.dir / "kamailio.pid"),
            "-w", str(self.dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,  # type: ignore[arg-type]
            stderr=self._log_file,  # type: ignore[arg-type]
            start_new_session=True,
        )  # fmt: skip
        await self._wait_listening(timeout)

    async def _wait_listening(self, timeout: float) -> None:
        """Up once it answers an OPTIONS ping on its port."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                raise KamailioError(f"kamailio exited ({self._proc.returncode}):\n{self.log()}")
            if await answers_options(self.host, self.port):
                return
            await asyncio.sleep(0.1)
        raise KamailioError(f"kamailio did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    async def kill(self) -> None:
        """SIGKILL the whole process group: the provider vanishes without a word."""
        await self._end((signal.SIGKILL,))

    async def stop(self) -> None:
        await self._end((signal.SIGTERM, signal.SIGKILL))

    async def _end(self, signals: tuple[int, ...]) -> None:
        if self._proc is not None:
            await end_process_group(self._proc, signals=signals)
        if self._proc is None or self._proc.returncode is not None:
            self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None


class KamailioProvider(KamailioProcess):
    def __init__(
        self,
        workdir: str | Path,
        *,
        users: dict[str, str],
        host: str = PROVIDER_HOST,
        port: int | None = None,
        algorithm: str = "MD5",
        name: str = "kamailio",
    ) -> None:
        super().__init__(workdir, host=host, port=port, name=name)
        self.users = dict(users)
        self.algorithm = algorithm

    def config_text(self) -> str:
        modules = module_path()
        if modules is None:
            raise KamailioError("kamailio modules not found")
        seeds = "\n".join(
            f"    $sht(users=>{_quote(user)[1:-1]}) = {_quote(password)};"
            for user, password in self.users.items()
        )
        return f"""#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=1
disable_tcp=yes
auto_aliases=no
listen=udp:{self.host}:{self.port}
alias="{REALM}"
mpath="{modules}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "htable.so"
loadmodule "kex.so"
loadmodule "corex.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
modparam("registrar", "max_expires", 3600)
modparam("auth", "algorithm", "{self.algorithm}")
modparam("auth", "nonce_expire", 300)
modparam("htable", "htable", "users=>size=4;")
modparam("rr", "enable_full_lr", 1)

event_route[htable:mod-init] {{
{seeds}
}}

request_route {{
    xlog("L_INFO", "$rm $ru from $si:$sp\\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            route(RELAY);
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                route(RELAY);
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    t_check_trans();
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    if (is_method("REGISTER")) {{
        if ($au == $null || $sht(users=>$au) == $null
                || !pv_www_authenticate("{REALM}", "$sht(users=>$au)", "0")) {{
            www_challenge("{REALM}", "1");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        if ($au == $null || $sht(users=>$au) == $null
                || !pv_proxy_authenticate("{REALM}", "$sht(users=>$au)", "0")) {{
            proxy_challenge("{REALM}", "1");
            exit;
        }}
        consume_credentials();
        record_route();
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    route(RELAY);
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"""
