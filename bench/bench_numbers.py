"""What caller ID and number rewriting cost per trunk call: reading the caller of an INVITE
(P-Asserted-Identity, Privacy, From, with libphonenumber), matching the Request-URI's DID on
E.164, and writing the number, From and identity headers of a call out.

Run: .venv/bin/python bench/bench_numbers.py [--calls 20000] [--smoke]

Pure Python on parsed messages (no sockets): the work the switchboard adds to each INVITE.
Figures only. --smoke: 500 calls, for CI.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.callerid import OutboundIdentity, inbound_caller
from telephony.numbers import NumberPlan
from telephony.sip import SipRequest, parse_message

RU = NumberPlan(country="RU", outbound_format="national")
IDENTITY = OutboundIdentity(headers=("pai", "rpid"), asserted="+74951234500")


def invite(n: int) -> SipRequest:
    text = (
        f"INVITE sip:8495123{n % 10000:04d}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{n}\r\nMax-Forwards: 70\r\n"
        'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=a1\r\n'
        f"To: <sip:8495123{n % 10000:04d}@127.0.0.1>\r\nCall-ID: c{n}@192.0.2.1\r\n"
        f"CSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:+7915{n % 10**7:07d}@carrier.example>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def per_call(work: Callable[[int], object], calls: int) -> float:
    """Microseconds of CPU per call of `work`."""
    start = time.process_time()
    for n in range(calls):
        work(n)
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--smoke", action="store_true", help="500 calls, for CI")
    args = parser.parse_args()
    calls = 500 if args.smoke else args.calls
    invites = [invite(n) for n in range(min(calls, 2000))]
    dids = [f"8495123{n % 10000:04d}" for n in range(calls)]
    numbers = [f"+7915{n % 10**7:07d}" for n in range(calls)]
    print(f"python {platform.python_version()}, {calls} calls, CPU per call:")
    rows = (
        (
            "inbound caller (PAI, Privacy, From)",
            lambda n: inbound_caller(invites[n % len(invites)], RU, trusted=True),
        ),
        ("DID to E.164 (national 8495...)", lambda n: RU.to_e164(dids[n])),
        ("dial string (E.164 to national)", lambda n: RU.dial_string(numbers[n])),
        ("From + PAI + RPID of a call out", lambda n: IDENTITY.outgoing(numbers[n], RU, "h")),
    )
    for name, work in rows:
        print(f"  {name:<38} {per_call(work, calls):8.1f} us")


if __name__ == "__main__":
    main()
