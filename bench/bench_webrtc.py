"""CPU of a browser (WebRTC) leg against a plain RTP leg in the engine's media plane.

The relay process is bench_srtp.py's: a telephony UserAgent that answers each incoming call,
places a second leg back to this process in plain RTP, and bridges the two (MediaBridge). This
process plays N phones calling in, each leg sending 20 ms PCMU packets (50 pps), in two modes:
  plain RTP  both legs of every call plain RTP
  WebRTC     the incoming leg a browser's: UDP/TLS/RTP/SAVPF offer, ICE-lite check, DTLS
             handshake (the relay is the DTLS server, as with a browser), then SRTP
             (AES_CM_128_HMAC_SHA1_80) with rtcp-mux; the other leg plain RTP
This process stands in for the browsers with the engine's own WebRTC transport in the controlling
role (one nominating check, the DTLS client); it sends no consent checks (a browser sends one
every few seconds: a few hundred bytes of STUN, nothing against 50 pps of SRTP).
For each mode it measures the relay process (utime+stime from /proc/PID/stat, 100% = one core):
  setup_ms   relay CPU per call while the calls were set up (SIP, and for WebRTC the ICE check
             and the DTLS handshake: ECDHE and ECDSA)
  cpu%       over --window seconds once every call is up, and per 100 calls
  us/pkt     relay CPU per relayed packet
then the CPU of one DTLS-SRTP handshake alone (both ends, in memory, this process).
The difference of the two rows' us/pkt, times 100 packets/s per call, is what one browser leg
costs over a plain one in talk (per packet, so a phones process short of CPU that sends fewer
packets in one row does not skew it). Figures only.

Run: .venv/bin/python bench/bench_webrtc.py [--calls 100] [--window 10] [--loop uvloop|asyncio]
     [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _proc import proc_cpu_seconds
from bench_srtp import Relay, Talkers, _ua, _uri, talk

from sip_test_env.ports import free_port, free_port_range
from telephony.aio import Call
from telephony.aio.webrtc import new_certificate
from telephony.call import Answered
from telephony.rtp.dtls import DtlsCertificate, DtlsSrtp
from telephony.sip import NameAddr

MODES = (("plain RTP", "off"), ("WebRTC", "dtls"))


@dataclass
class Row:
    name: str
    calls: int
    secure: int
    setup_ms: float
    pps_in: float
    cpu: float
    rejected: int

    @property
    def cpu_per_100(self) -> float:
        return self.cpu * 100 / self.calls if self.calls else float("nan")

    @property
    def us_per_packet(self) -> float:
        return self.cpu / 100 * 1e6 / self.pps_in if self.pps_in else float("nan")


async def _up(leg: Call, relay_port: int) -> None:
    """Wait for the answer; a WebRTC leg then checks the relay and shakes hands."""
    event = await leg.next_event(30)
    if not isinstance(event, Answered):
        raise RuntimeError(f"a call was not answered: {event}")
    media = leg.media
    assert media is not None
    if media.webrtc is not None:
        remote = media.sdp.remote or ("127.0.0.1", relay_port)
        media.webrtc.connect_to(remote)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while media.webrtc.connected_at is None:
            if media.webrtc.dtls.failed or loop.time() > deadline:
                raise RuntimeError(f"DTLS did not come up: {media.webrtc.dtls.failed}")
            await asyncio.sleep(0.01)


async def _measure(name: str, mode: str, calls: int, window: float, loop: str) -> Row:
    phones_port, relay_port = free_port("both"), free_port("both")
    phones = _ua(phones_port, free_port_range(4 * calls + 8, "udp"), "off")
    await phones.start()
    talkers = Talkers(phones)

    async def answer(call: Call) -> None:
        await call.answer()
        talkers.legs.append(call)

    phones.on_incoming = answer
    relay = await Relay.start(
        relay_port, phones_port, free_port_range(4 * calls + 8, "udp"), "off", loop
    )
    try:
        cpu_start = proc_cpu_seconds(relay.proc.pid)
        callers = [
            await phones.dial(
                _uri("relay", relay_port),
                ("udp", "127.0.0.1", relay_port),
                from_=NameAddr(None, _uri("phone", phones_port), {}),
                srtp=mode,
            )
            for _ in range(calls)
        ]
        await asyncio.gather(*(_up(leg, relay_port) for leg in callers))
        talkers.legs.extend(callers)
        # Every relay leg set up (the back legs answered, bridged) before the setup CPU is read.
        while (await relay.stats())["legs"] < 2 * calls:
            await asyncio.sleep(0.05)
        setup_cpu = proc_cpu_seconds(relay.proc.pid) - cpu_start
        figures = await talk(relay, talkers, callers, window)
        return Row(
            name,
            calls,
            figures.after["secure"],
            1000 * setup_cpu / calls,
            figures.pps_in,
            figures.cpu,
            figures.after["rejected"],
        )
    finally:
        await relay.stop()
        await phones.close()


def _handshake_ms(number: int) -> float:
    """CPU milliseconds of one DTLS-SRTP handshake, client and server, in memory (what the
    relay's setup_ms holds half of, beside SIP and the ICE check)."""
    server_cert, client_cert = new_certificate(), new_certificate()

    def fingerprint(cert: DtlsCertificate) -> tuple[str, bytes]:
        alg, value = cert.fingerprint.split(" ")
        return alg, bytes.fromhex(value.replace(":", ""))

    def one() -> None:
        client = DtlsSrtp(client_cert, server=False, remote_fingerprint=fingerprint(server_cert))
        server = DtlsSrtp(server_cert, server=True, remote_fingerprint=fingerprint(client_cert))
        client.start()
        while True:
            to_server, to_client = client.datagrams_to_send(), server.datagrams_to_send()
            if not to_server and not to_client:
                break
            for datagram in to_server:
                server.receive(datagram)
            for datagram in to_client:
                client.receive(datagram)
        if client.keys is None or server.keys is None:
            raise RuntimeError("the in-memory handshake failed")

    started = time.process_time()
    for _ in range(number):
        one()
    return (time.process_time() - started) / number * 1000


async def _main(args: argparse.Namespace) -> int:
    print(f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"# {args.calls} calls, 100 packets/s into the relay per call, {args.window:g} s window, "
          f"relay on {args.loop}")  # fmt: skip
    print(f"{'mode':>10} {'calls':>6} {'webrtc':>7} {'setup_ms':>9} {'pps_in':>8} {'cpu%':>6} "
          f"{'cpu%/100calls':>14} {'us/pkt':>7} {'rejected':>9}")  # fmt: skip
    rows = []
    for name, mode in MODES:
        row = await _measure(name, mode, args.calls, args.window, args.loop)
        rows.append(row)
        print(f"{row.name:>10} {row.calls:>6} {row.secure:>7} {row.setup_ms:>9.2f} "
              f"{row.pps_in:>8.0f} {row.cpu:>6.1f} {row.cpu_per_100:>14.1f} "
              f"{row.us_per_packet:>7.1f} {row.rejected:>9}")  # fmt: skip
    plain, webrtc = rows
    # Per relayed packet, so that a phones process short of CPU (fewer packets in one row)
    # does not skew it: a call relays 100 packets/s, so us/pkt x 100 calls x 100 pps = % core.
    extra_us = webrtc.us_per_packet - plain.us_per_packet
    print(f"a browser leg adds {extra_us:.1f} us per relayed packet ({extra_us:.1f} % of a core "
          f"per 100 calls in talk) and {webrtc.setup_ms - plain.setup_ms:.2f} ms of CPU at setup "
          f"(ICE check + DTLS handshake)")  # fmt: skip
    print(f"DTLS-SRTP handshake alone (OpenSSL, both ends in this process): "
          f"{_handshake_ms(args.repeat):.2f} ms")  # fmt: skip
    if plain.pps_in == 0 or webrtc.pps_in == 0 or webrtc.secure != webrtc.calls:
        print("nothing measured: no packets relayed, or WebRTC legs not up", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the relay's event loop"
    )
    parser.add_argument("--repeat", type=int, default=200, help="in-memory handshakes timed")
    parser.add_argument("--smoke", action="store_true", help="5 calls, 1 s: a CI check")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.window, args.repeat = 5, 1.0, 5
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
