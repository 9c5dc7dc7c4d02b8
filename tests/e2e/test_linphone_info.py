"""linphone-cli (Debian's linphonec, configured to press keys as SIP INFO, as linphone does by
default) calls agent 103's baresip phone through the engine and presses 1 2 3: the engine gets
each as INFO and the callee receives every digit (as RFC 4733, which it negotiated); baresip's
4 5 6 the other way reach linphone too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sip_test_env.ports import free_port
from sip_test_env.tools import needs

from .callfloor import bridged_call, floor_engine, idle, phone

pytestmark = [pytest.mark.peers, needs("linphonec")]


def _linphonerc(path: Path, engine_port: int) -> Path:
    sip, rtp = free_port("both"), free_port("udp")
    path.write_text(
        f"""[sip]
sip_port={sip}
sip_tcp_port=0
use_info=1
use_ipv6=0
bind_address=127.0.0.1
use_rfc2833=0
default_proxy=0
register_only_when_network_is_up=0
[rtp]
audio_rtp_port={rtp}
[proxy_0]
reg_proxy=<sip:127.0.0.1:{engine_port}>
reg_identity=sip:104@127.0.0.1:{engine_port}
reg_expires=300
reg_sendregister=1
[auth_info_0]
username=104
passwd=pass104
"""
    )
    return path


async def test_linphone_info_keys_reach_a_baresip_callee(pg_url: str, tmp_path: Path) -> None:
    async with floor_engine(pg_url, tmp_path) as engine, phone("103", engine, tmp_path) as a103:
        await a103.wait_registered()
        rc = _linphonerc(tmp_path / "linphonerc", engine.sip_port)
        proc = await asyncio.create_subprocess_exec(
            "linphonec", "-c", str(rc), "-d", "0",
            stdin=asyncio.subprocess.PIPE,
            stdout=(tmp_path / "linphonec.out").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.stdin is not None

        async def say(line: str) -> None:
            assert proc.stdin is not None
            proc.stdin.write(line.encode() + b"\n")
            await proc.stdin.drain()

        try:
            # linphonec 5 leaves UDP off whatever sip_port says: open it, then register.
            await say(f"ports sip {free_port('udp')}")
            await say(
                f"register sip:104@127.0.0.1:{engine.sip_port} "
                f"sip:127.0.0.1:{engine.sip_port} pass104"
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not engine.switchboard.registrar.lookup("104", now=engine.ua.loop.time()):
                assert loop.time() < deadline, (tmp_path / "linphonec.out").read_text()[-2000:]
                await asyncio.sleep(0.1)
            await say(f"call sip:103@127.0.0.1:{engine.sip_port}")
            await a103.wait_event("CALL_INCOMING", timeout=10)
            await a103.accept()
            await a103.wait_event("CALL_ESTABLISHED", timeout=5)
            # How each key reached the engine from linphone's leg: by SIP INFO, not RFC 4733.
            leg = bridged_call(engine).a
            relay = leg.on_digit
            assert relay is not None
            methods: list[str] = []
            leg.on_digit = lambda digit, method: (methods.append(method), relay(digit, method))
            await asyncio.sleep(1.0)
            for digit in "123":
                await say(digit)
                await asyncio.sleep(0.4)
            received = ""
            for _ in range(3):
                received += (await a103.wait_event("CALL_DTMF_START", timeout=5))["param"]
            assert received == "123" and methods == ["info"] * 3
            # The other way: baresip presses 4 5 6 (RFC 4733); linphone gets them its way.
            out = tmp_path / "linphonec.out"
            await a103.send_dtmf("456")
            deadline = loop.time() + 5
            while out.read_text(errors="replace").count("Receiving tone") < 3:
                assert loop.time() < deadline, out.read_text(errors="replace")[-1500:]
                await asyncio.sleep(0.1)
            tones = [line.split("tone ")[1][0] for line in out.read_text(errors="replace")
                     .splitlines() if "Receiving tone" in line]  # fmt: skip
            assert tones == ["4", "5", "6"]
            await say("terminate")
            await a103.wait_event("CALL_CLOSED", timeout=5)
        finally:
            await say("quit")
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await idle(engine)
