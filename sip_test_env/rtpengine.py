"""A real rtpengine (Debian rtpengine-daemon) relaying media in userspace only, driven by a real
Kamailio (its rtpengine module, the ng protocol) in front of it, for benchmarks: the field's
media proxy under the same SIP and RTP load as the engine.

    async with RtpengineRelay(workdir, uas=("127.0.0.1", uas_port), ports=(40000, 44000)) as r:
        r.proxy.port           # UDP: send INVITEs here; they go on to the UAS with the SDP
                               # rewritten to rtpengine's ports (offer/answer), BYE deletes
        await r.metrics()      # packets relayed, sessions (its Prometheus /metrics)
        r.pid                  # the rtpengine daemon (all its threads)

rtpengine runs with `--table=-1`: no kernel forwarding (the module is not loaded here anyway),
every packet goes through its userspace threads, as the engine's do. Its calls are deleted at
once on BYE (`--delete-delay=0`), so a run can follow another on the same ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from telephony.aio.tasks import Started

from .kamailio import KamailioError, KamailioProcess, kamailio_missing, module_path
from .lifecycle import end_process_group
from .ports import free_port

__all__ = ["RTPENGINE", "RtpengineError", "RtpengineMetrics", "RtpengineRelay", "rtpengine_missing"]

RTPENGINE = "rtpengine"


class RtpengineError(RuntimeError):
    """rtpengine (or the Kamailio in front of it) is missing or did not start."""


def rtpengine_missing() -> str | None:
    """Why rtpengine behind Kamailio cannot run here (the install hint), or None."""
    if shutil.which(RTPENGINE) is None:
        return (
            "rtpengine not installed (sip_test_env/install-peers.sh: "
            "apt-get install rtpengine-daemon)"
        )
    if (reason := kamailio_missing()) is not None:
        return reason
    modules = module_path()
    if modules is None or not Path(modules, "rtpengine.so").exists():
        return "kamailio's rtpengine module not found (Debian kamailio ships rtpengine.so)"
    return None


class RtpengineProxy(KamailioProcess):
    """Kamailio as a stateful proxy that anchors every call's media on rtpengine: the INVITE's
    offer and the 200's answer go through `rtpengine_offer`/`rtpengine_answer`, BYE, CANCEL and
    failures through `rtpengine_delete`; every INVITE goes to the one UAS."""

    shm_mb = 128  # a transaction and an rtpengine call per call, a thousand calls at once

    def __init__(
        self, workdir: str | Path, *, ng: tuple[str, int], uas: tuple[str, int], host: str
    ) -> None:
        super().__init__(workdir, host=host, name="kamailio-rtpengine")
        self.ng = ng
        self.uas = uas

    def config_text(self) -> str:
        modules = module_path()
        if modules is None:
            raise KamailioError("kamailio modules not found")
        ng_host, ng_port = self.ng
        uas_host, uas_port = self.uas
        return f"""#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:{self.host}:{self.port}
mpath="{modules}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "rtpengine.so"

modparam("rr", "enable_full_lr", 1)
modparam("rtpengine", "rtpengine_sock", "udp:{ng_host}:{ng_port}")
modparam("rtpengine", "rtpengine_tout_ms", 2000)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{
                rtpengine_delete();
            }}
            route(RELAY);
        }}
        if (is_method("ACK") && t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            rtpengine_delete();
            route(RELAY);
        }}
        exit;
    }}
    if (!is_method("INVITE")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    if (t_check_trans()) {{
        exit;
    }}
    record_route();
    if (!rtpengine_offer("replace-origin replace-session-connection")) {{
        sl_send_reply("503", "Media Relay Unavailable");
        exit;
    }}
    $ru = "sip:" + $rU + "@{uas_host}:{uas_port}";
    t_on_reply("ANSWER");
    t_on_failure("FAILED");
    route(RELAY);
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

onreply_route[ANSWER] {{
    if (has_body("application/sdp")) {{
        rtpengine_answer("replace-origin replace-session-connection");
    }}
}}

failure_route[FAILED] {{
    rtpengine_delete();
}}
"""


@dataclass(frozen=True)
class RtpengineMetrics:
    """Totals from rtpengine's /metrics (Prometheus text)."""

    sessions: int
    """Calls it holds now."""
    packets: int
    """Packets relayed in userspace since it started."""
    errors: int
    """Packets it received but could not relay."""


class RtpengineRelay(Started):
    """The rtpengine daemon (userspace only) and the Kamailio that drives it."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        uas: tuple[str, int],
        ports: tuple[int, int],
        host: str = "127.0.0.1",
        threads: int | None = None,
    ) -> None:
        self.dir = Path(workdir) / "rtpengine"
        self.host = host
        self.ports = ports
        self.threads = threads if threads is not None else (os.cpu_count() or 1)
        """rtpengine's --num-threads (its default: one per core)."""
        self.ng_port = free_port("udp", host=host)
        self.http_port = free_port("tcp", host=host)
        self.proxy = RtpengineProxy(workdir, ng=(host, self.ng_port), uas=uas, host=host)
        self.log_path = self.dir / "rtpengine.log"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RtpengineError("rtpengine is not running")
        return self._proc.pid

    def command(self) -> list[str]:
        low, high = self.ports
        return [
            shutil.which(RTPENGINE) or RTPENGINE,
            "--config-file=none",  # not the package's /etc/rtpengine/rtpengine.conf
            "--foreground",
            "--log-stderr",
            "--log-level=4",
            "--table=-1",  # no kernel forwarding: userspace only
            f"--interface={self.host}",
            f"--listen-ng={self.host}:{self.ng_port}",
            f"--listen-http={self.host}:{self.http_port}",
            f"--port-min={low}",
            f"--port-max={high}",
            f"--num-threads={self.threads}",
            "--delete-delay=0",
            "--timeout=120",
            f"--pidfile={self.dir / 'rtpengine.pid'}",
        ]

    async def start(self, timeout: float = 15.0) -> None:
        if (reason := rtpengine_missing()) is not None:
            raise RtpengineError(reason)
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._proc.returncode is not None:
                raise RtpengineError(f"rtpengine exited ({self._proc.returncode}):\n{self.log()}")
            with contextlib.suppress(OSError):
                await self.metrics()
                break
            if loop.time() > deadline:
                raise RtpengineError(f"rtpengine did not answer in {timeout} s:\n{self.log()}")
            await asyncio.sleep(0.1)
        await self.proxy.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    async def metrics(self) -> RtpengineMetrics:
        url = f"http://{self.host}:{self.http_port}/metrics"

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
                return response.read().decode()

        text = await asyncio.to_thread(fetch)
        values: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                label = sample.labels.get("type", "")
                values[(sample.name, label)] = sample.value
        return RtpengineMetrics(
            sessions=int(values.get(("rtpengine_sessions", "own"), 0)),
            packets=int(values.get(("rtpengine_packets_total", "userspace"), 0)),
            errors=int(values.get(("rtpengine_packet_errors_total", "userspace"), 0)),
        )

    async def stop(self) -> None:
        await self.proxy.stop()
        if self._proc is not None:
            await end_process_group(self._proc)
