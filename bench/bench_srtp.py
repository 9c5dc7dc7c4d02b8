"""CPU of relaying calls with SRTP (SDES, AES_CM_128_HMAC_SHA1_80) against plain RTP.

A relay process runs the engine's media plane on its own: a telephony UserAgent that answers
each incoming call, places the second leg back to the caller's side, and bridges the two
(MediaBridge, as every engine call): each relayed packet is received, authenticated and
decrypted on one leg (libsrtp through pylibsrtp), handed across, encrypted and sent on the other.
This process plays the phones: N calls placed to the relay and answered when it calls back,
each leg sending 20 ms PCMU packets (50 pps) with the same policy, so the relay takes 100
packets/s in and sends 100 out per call. For each policy (off = plain RTP, required = SRTP) it
measures, over --window seconds once every call is up:
  pps      packets into and out of the relay's RTP sockets
  CPU      the relay process's utime+stime from /proc/PID/stat (100% = one core), and per
           100 calls
  us/pkt   relay CPU per relayed packet
then the per-packet cost of libsrtp alone (protect + unprotect, in this process). No recording
or PBX work runs in the relay: the difference between the two rows is SRTP's. Figures only.

Run: .venv/bin/python bench/bench_srtp.py [--calls 100] [--window 10] [--loop uvloop|asyncio]
     [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import struct
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _child import LineChild
from _proc import proc_cpu_seconds

from sip_test_env.ports import free_port, free_port_range
from telephony.aio import Call, EndpointConfig, UserAgent, UserAgentConfig, bridge
from telephony.call import Answered, Ended
from telephony.media import CODECS, tone_samples
from telephony.rtp.srtp import SrtpContext
from telephony.sdp.crypto import SUITES, new_master_key
from telephony.sip import NameAddr, SipUri

POLICIES = (("plain RTP", "off"), ("SRTP", "required"))


def _uri(user: str, port: int) -> SipUri:
    return SipUri(
        scheme="sip", user=user, password=None, host="127.0.0.1", port=port, params={}, headers={}
    )


def _ua(port: int, rtp: tuple[int, int], srtp: str) -> UserAgent:
    return UserAgent(
        UserAgentConfig(
            endpoint=EndpointConfig(port=port),
            rtp_ports=rtp,
            rtp_inactivity_timeout=600,
            srtp=srtp,
        )
    )


# -- the relay process ------------------------------------------------------------------------


async def _relay(args: argparse.Namespace) -> None:
    ua = _ua(args.port, (args.rtp_low, args.rtp_high), args.srtp)
    await ua.start()
    calls: list[Call] = []

    async def on_incoming(call: Call) -> None:
        call.set_srtp(args.srtp)
        out = await ua.dial(
            _uri("callee", args.phones_port),
            ("udp", "127.0.0.1", args.phones_port),
            from_=NameAddr(None, _uri("relay", args.port), {}),
        )
        while not isinstance(event := await out.next_event(30), Answered):
            if isinstance(event, Ended):
                call.reject(503)
                return
        await call.answer()
        await call.next_event(10)  # the ACK
        bridge(call, out)
        calls.extend((call, out))

    ua.on_incoming = on_incoming
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(message: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    while line := (await reader.readline()).decode().strip():
        if line == "stats":
            totals = ua.ports.totals()
            rejected = sum(
                c.media.rtp.srtp.rejected
                for c in calls
                if c.media is not None and c.media.rtp.srtp is not None
            )
            secure = sum(1 for c in calls if c.media is not None and c.media.secure)
            reply(
                {
                    "in": totals.packets_in,
                    "out": totals.packets_out,
                    "legs": len(calls),
                    "secure": secure,
                    "rejected": rejected,
                }
            )
        elif line == "quit":
            break
    for call in list(ua.calls.values()):
        await call.hangup()
    await ua.close()


class Relay(LineChild):
    exited = "the relay process exited"

    @classmethod
    async def start(
        cls, port: int, phones_port: int, rtp: tuple[int, int], srtp: str, loop: str
    ) -> Relay:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--child",
            "--port", str(port), "--phones-port", str(phones_port),
            "--rtp-low", str(rtp[0]), "--rtp-high", str(rtp[1]), "--srtp", srtp, "--loop", loop,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        relay = cls(proc)
        await asyncio.wait_for(relay._read(), 30)
        return relay


# -- the phones (this process) ----------------------------------------------------------------


class Talkers:
    """Every leg sends one PCMU packet per 20 ms tick (a precomputed tone: no encoding here)."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        self.legs: list[Call] = []
        self._state: dict[int, tuple[int, int, int]] = {}
        self._payload = CODECS["PCMU"].encode(tone_samples([440.0], 0.02, level_dbfs=-12.0))
        self._token: int | None = None

    def start(self) -> None:
        self._token = self.ua.clock.subscribe(self._tick)

    def stop(self) -> None:
        if self._token is not None:
            self.ua.clock.unsubscribe(self._token)

    def _tick(self, _frame: int) -> None:
        for leg in self.legs:
            media = leg.media
            if media is None:
                continue
            ssrc, seq, ts = self._state.get(id(leg)) or (secrets.randbits(32), 0, 0)
            header = struct.pack("!BBHII", 0x80, 0, seq, ts, ssrc)
            media.rtp.send(header + self._payload)
            self._state[id(leg)] = (ssrc, (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF)


@dataclass
class Window:
    """What the relay did over a measurement window."""

    after: dict[str, int]
    """Its counters at the end."""
    pps_in: float
    pps_out: float
    cpu: float
    """% of one core."""


async def talk(relay: Relay, talkers: Talkers, callers: list[Call], window: float) -> Window:
    """Every leg talks; measure the relay over `window` seconds once the streams flow; then
    hang the calls up."""
    talkers.start()
    await asyncio.sleep(1.0)  # every stream latched and flowing
    before, at = await relay.stats(), time.monotonic()
    cpu_before = proc_cpu_seconds(relay.proc.pid)
    await asyncio.sleep(window)  # the measurement window itself
    after, cpu_after = await relay.stats(), proc_cpu_seconds(relay.proc.pid)
    elapsed = time.monotonic() - at
    talkers.stop()
    for leg in callers:
        await leg.hangup()
    return Window(
        after,
        (after["in"] - before["in"]) / elapsed,
        (after["out"] - before["out"]) / elapsed,
        100 * (cpu_after - cpu_before) / elapsed,
    )


@dataclass
class Row:
    name: str
    calls: int
    secure: int
    pps_in: float
    pps_out: float
    cpu: float
    rejected: int

    @property
    def cpu_per_100(self) -> float:
        return self.cpu * 100 / self.calls if self.calls else float("nan")

    @property
    def us_per_packet(self) -> float:
        packets = self.pps_in  # each packet in is relayed out once
        return self.cpu / 100 * 1e6 / packets if packets else float("nan")


async def _measure(name: str, srtp: str, calls: int, window: float, loop: str) -> Row:
    phones_port, relay_port = free_port("both"), free_port("both")
    phones = _ua(phones_port, free_port_range(4 * calls + 8, "udp"), srtp)
    await phones.start()
    talkers = Talkers(phones)

    async def answer(call: Call) -> None:
        call.set_srtp(srtp)
        await call.answer()
        talkers.legs.append(call)

    phones.on_incoming = answer
    relay_rtp = free_port_range(4 * calls + 8, "udp")
    relay = await Relay.start(relay_port, phones_port, relay_rtp, srtp, loop)
    try:
        callers = []
        for _ in range(calls):
            leg = await phones.dial(
                _uri("relay", relay_port),
                ("udp", "127.0.0.1", relay_port),
                from_=NameAddr(None, _uri("phone", phones_port), {}),
                srtp=srtp,
            )
            callers.append(leg)
        for leg in callers:
            event = await leg.next_event(30)
            if not isinstance(event, Answered):
                raise RuntimeError(f"a call was not answered: {event}")
            talkers.legs.append(leg)
        window_figures = await talk(relay, talkers, callers, window)
        after = window_figures.after
        return Row(
            name,
            calls,
            after["secure"] // 2,
            window_figures.pps_in,
            window_figures.pps_out,
            window_figures.cpu,
            after["rejected"],
        )
    finally:
        await relay.stop()
        await phones.close()


def _libsrtp_cost(number: int) -> dict[str, float]:
    """Microseconds per packet of protect + unprotect of one 172-byte PCMU packet, per suite."""
    packet = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + bytes(160)
    return {suite: _suite_cost(suite, packet, number) for suite in SUITES}


def _suite_cost(suite: str, packet: bytes, number: int) -> float:
    a_key, b_key = new_master_key(), new_master_key()
    tx, rx = SrtpContext(suite, a_key, b_key), SrtpContext(suite, b_key, a_key)
    seq = 0

    def one() -> None:
        nonlocal seq
        seq = (seq + 1) & 0xFFFF
        plain = packet[:2] + seq.to_bytes(2, "big") + packet[4:]
        rx.unprotect(tx.protect(plain) or b"")

    return timeit.timeit(one, number=number) / number * 1e6


async def _main(args: argparse.Namespace) -> int:
    print(f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"# {args.calls} calls, 100 packets/s into the relay per call, {args.window:g} s window, "
          f"relay on {args.loop}")  # fmt: skip
    print(f"{'mode':>10} {'calls':>6} {'srtp':>5} {'pps_in':>8} {'pps_out':>8} {'cpu%':>6} "
          f"{'cpu%/100calls':>14} {'us/pkt':>7} {'rejected':>9}")  # fmt: skip
    rows = []
    for name, srtp in POLICIES:
        row = await _measure(name, srtp, args.calls, args.window, args.loop)
        rows.append(row)
        print(f"{row.name:>10} {row.calls:>6} {row.secure:>5} {row.pps_in:>8.0f} "
              f"{row.pps_out:>8.0f} {row.cpu:>6.1f} {row.cpu_per_100:>14.1f} "
              f"{row.us_per_packet:>7.1f} {row.rejected:>9}")  # fmt: skip
    plain, secure = rows
    print(f"SRTP adds {secure.cpu_per_100 - plain.cpu_per_100:.1f} % of a core per 100 calls "
          f"({secure.us_per_packet - plain.us_per_packet:.1f} us per relayed packet)")  # fmt: skip
    for suite, cost in _libsrtp_cost(args.repeat).items():
        print(f"libsrtp {suite}: {cost:.2f} us per packet (protect + unprotect)")
    if plain.pps_in == 0 or secure.pps_in == 0 or secure.secure != secure.calls:
        print("nothing measured: no packets relayed, or SRTP legs not secure", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=20000, help="libsrtp micro-bench packets")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the relay's event loop"
    )
    parser.add_argument("--smoke", action="store_true", help="10 calls, 1 s: a CI check")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phones-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rtp-low", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rtp-high", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--srtp", default="off", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(_relay(args))
        else:
            asyncio.run(_relay(args))
        return 0
    if args.smoke:
        args.calls, args.window, args.repeat = 10, 1.0, 2000
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
