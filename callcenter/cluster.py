"""Kamailio in front of N engine nodes on one machine (deploy/kamailio): one PostgreSQL (an
external URL, or the embedded server started here), node i on its own SIP, HTTP and RTP ports
and its own data directory, Kamailio dispatching to them. One engine is one process, so one
core; this is how one box uses all of them.

    scripts/cluster --nodes 2 --listen 127.0.0.1:5060 --config callcenter.example.toml

Phones and trunks talk to the `--listen` address only. Node i listens on
`first-node-port + i` (SIP), `first-http-port + i` (HTTP), and RTP ports
`rtp-base + i * rtp-span` onwards; it is named `<name-prefix><i+1>` in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony.aio.probe import answers_options
from telephony.aio.tasks import Started

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SERVING = "callcenter serving"
"""The line a node logs once it answers (callcenter.cli.serve)."""


class ClusterError(RuntimeError):
    """Kamailio or a node would not start."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    host: str
    sip_port: int
    http_port: int
    rtp_ports: tuple[int, int]

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.host}:{self.sip_port}"


def plan_nodes(
    count: int,
    *,
    host: str = "127.0.0.1",
    first_sip_port: int = 5071,
    first_http_port: int = 8081,
    rtp_base: int = 20000,
    rtp_span: int = 5000,
    name_prefix: str = "node",
) -> list[NodeSpec]:
    """The ports and names of `count` nodes (distinct ranges, none overlapping)."""
    if count < 1:
        raise ValueError("a cluster needs at least one node")
    if rtp_base + count * rtp_span > 65535:
        raise ValueError(f"{count} RTP ranges of {rtp_span} ports do not fit above {rtp_base}")
    return [
        NodeSpec(
            f"{name_prefix}{i + 1}",
            host,
            first_sip_port + i,
            first_http_port + i,
            (rtp_base + i * rtp_span, rtp_base + (i + 1) * rtp_span - 1),
        )
        for i in range(count)
    ]


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
    )


def kamailio_modules() -> str | None:
    """Kamailio's module directory (Debian puts it under the multiarch lib directory)."""
    for path in [*glob.glob("/usr/lib/*/kamailio/modules"), "/usr/lib/kamailio/modules"]:
        if Path(path, "dispatcher.so").exists() and Path(path, "path.so").exists():
            return path
    return None


class NodeProcess:
    """`callcenter serve` for one node, logging to `<workdir>/<name>/engine.log`."""

    def __init__(
        self, spec: NodeSpec, config: Path, database_url: str, workdir: Path, *, proxy: str
    ) -> None:
        self.spec = spec
        self.dir = workdir / spec.name
        self.log_path = self.dir / "engine.log"
        self.args = [
            sys.executable, "-m", "callcenter.cli", "serve", "--config", str(config),
            "--database-url", database_url, "--data-dir", str(self.dir),
            "--sip-listen", f"{spec.host}:{spec.sip_port}",
            "--http-listen", f"{spec.host}:{spec.http_port}",
            "--rtp-ports", f"{spec.rtp_ports[0]}-{spec.rtp_ports[1]}",
            "--node", spec.name, "--cluster", "--trusted-proxy", proxy,
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    async def start(self, timeout: float = 60.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        seen = self.log(tail=10**9).count(SERVING)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.log(tail=10**9).count(SERVING) == seen:
            if self.proc.returncode is not None:
                raise ClusterError(
                    f"{self.spec.name} exited ({self.proc.returncode}):\n{self.log()}"
                )
            if loop.time() > deadline:
                raise ClusterError(f"{self.spec.name} did not start in {timeout} s:\n{self.log()}")
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL: the node vanishes mid-whatever (a crash)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            logger.warning("%s did not stop in %s s: killed", self.spec.name, timeout)
            await self.kill()


KAMAILIO_SHM_MB = 512
"""Kamailio's shared memory (transactions, dialogs' Record-Route state, the dispatcher).
64 MB ran out at 300 call setups/s through two nodes (tm's "out of mem", every new INVITE and
some BYEs answered 500); a transaction lives up to fr_timer and its wait timer after the final
reply, so the memory follows the rate times those seconds."""


class KamailioProcess:
    """Kamailio with deploy/kamailio/kamailio.cfg, dispatching to `nodes`."""

    def __init__(self, host: str, port: int, nodes: list[NodeSpec], workdir: Path) -> None:
        self.host, self.port = host, port
        self.dir = workdir / "kamailio"
        self.log_path = self.dir / "kamailio.log"
        self.ctl_socket = self.dir / "kamailio.ctl"
        """`kamcmd -s unix:<this> dispatcher.list` shows the nodes' state."""
        self.nodes = nodes
        self.proc: asyncio.subprocess.Process | None = None

    def dispatcher_list(self) -> str:
        return "".join(f"1 {node.sip_uri}\n" for node in self.nodes)

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    async def start(self, timeout: float = 15.0) -> None:
        binary, modules = kamailio_binary(), kamailio_modules()
        if binary is None or modules is None:
            raise ClusterError("kamailio is not installed (apt-get install kamailio)")
        self.dir.mkdir(parents=True, exist_ok=True)
        dispatcher = self.dir / "dispatcher.list"
        dispatcher.write_text(self.dispatcher_list())
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                binary, "-f", str(KAMAILIO_CFG), "-DD", "-E", "-L", modules,
                "-A", f"SIP_LISTEN=udp:{self.host}:{self.port}",
                "-A", f'DISPATCHER_LIST="{dispatcher}"',
                "-A", f'CTL_SOCKET="unix:{self.ctl_socket}"',
                "-m", str(KAMAILIO_SHM_MB), "-M", "8",
                "-Y", str(self.dir), "-P", str(self.dir / "kamailio.pid"), "-w", str(self.dir),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await answers_options(self.host, self.port):
            if self.proc.returncode is not None:
                raise ClusterError(f"kamailio exited ({self.proc.returncode}):\n{self.log()}")
            if loop.time() > deadline:
                raise ClusterError(f"kamailio did not answer in {timeout} s:\n{self.log()}")
            await asyncio.sleep(0.1)

    async def states(self) -> dict[str, str]:
        """The dispatcher's flags per node URI (kamcmd dispatcher.list): "AP" active (and
        probed), "IP" inactive, "TP" trying (a probe missed)."""
        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        proc = await asyncio.create_subprocess_exec(
            kamcmd, "-s", f"unix:{self.ctl_socket}", "dispatcher.list",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ClusterError(f"kamcmd dispatcher.list: {err.decode(errors='replace')}")
        states: dict[str, str] = {}
        uri = None
        for line in out.decode(errors="replace").splitlines():
            key, _, value = line.strip().partition(": ")
            if key == "URI":
                uri = value
            elif key == "FLAGS" and uri is not None:
                states[uri] = value
        return states

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # its children (one per worker) too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
                return


class Cluster(Started):
    """Kamailio at `host:port` and one node per spec, on `database_url` (or an embedded
    PostgreSQL in `workdir/pgdata`)."""

    def __init__(
        self,
        config: Path,
        nodes: list[NodeSpec],
        *,
        workdir: Path,
        host: str = "127.0.0.1",
        port: int = 5060,
        database_url: str | None = None,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.database_url = database_url
        self._pg: Any = None
        self.nodes: list[NodeProcess] = []
        self.specs = nodes
        self.kamailio = KamailioProcess(host, port, nodes, workdir)

    @property
    def address(self) -> str:
        return f"{self.kamailio.host}:{self.kamailio.port}"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            from . import embedded_pg

            self._pg = await asyncio.to_thread(embedded_pg.start, self.workdir / "pgdata")
            self.database_url = str(self._pg.get_uri())
        # The first node migrates the schema alone; the others then start side by side.
        self.nodes = [
            NodeProcess(
                spec, self.config, self.database_url, self.workdir, proxy=self.kamailio.host
            )
            for spec in self.specs
        ]
        await self.nodes[0].start()
        await asyncio.gather(*(node.start() for node in self.nodes[1:]))
        await self.kamailio.start()
        logger.info(
            "cluster: kamailio on %s dispatching to %s",
            self.address,
            ", ".join(f"{n.spec.name} ({n.spec.host}:{n.spec.sip_port})" for n in self.nodes),
        )

    async def stop(self) -> None:
        await self.kamailio.stop()
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)
        if self._pg is not None:
            from . import embedded_pg

            await asyncio.to_thread(embedded_pg.stop, self._pg)
            self._pg = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster",
        description="Run Kamailio (deploy/kamailio) in front of N engine nodes on this machine "
        "until SIGINT/SIGTERM.",
    )
    parser.add_argument("--config", default="callcenter.example.toml", help="every node's config")
    parser.add_argument("--nodes", type=int, default=os.cpu_count() or 2, help="default: cores")
    parser.add_argument("--listen", default="127.0.0.1:5060", help="Kamailio's UDP address")
    parser.add_argument("--node-host", default="127.0.0.1", help="the nodes' address")
    parser.add_argument("--first-node-port", type=int, default=5071)
    parser.add_argument("--first-http-port", type=int, default=8081)
    parser.add_argument("--rtp-base", type=int, default=20000)
    parser.add_argument("--rtp-span", type=int, default=5000, help="RTP ports per node")
    parser.add_argument("--database-url", help="external PostgreSQL (default: embedded)")
    parser.add_argument("--data-dir", default="var/cluster", help="logs, recordings, pgdata")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    try:
        specs = plan_nodes(
            args.nodes,
            host=args.node_host,
            first_sip_port=args.first_node_port,
            first_http_port=args.first_http_port,
            rtp_base=args.rtp_base,
            rtp_span=args.rtp_span,
        )
        listen_port = int(port)
    except ValueError as exc:
        parser.error(str(exc))
    cluster = Cluster(
        Path(args.config),
        specs,
        workdir=Path(args.data_dir).resolve(),
        host=host,
        port=listen_port,
        database_url=args.database_url,
    )

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await cluster.start()
        except ClusterError as exc:
            await cluster.stop()
            print(f"cluster: {exc}", file=sys.stderr)
            return 1
        for node in cluster.nodes:
            print(f"{node.spec.name}: SIP {node.spec.host}:{node.spec.sip_port}, "
                  f"HTTP {node.spec.host}:{node.spec.http_port}, log {node.log_path}")  # fmt: skip
        print(f"kamailio: {cluster.address} (log {cluster.kamailio.log_path})", flush=True)
        await stop.wait()
        await cluster.stop()
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
