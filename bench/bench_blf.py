"""What BLF costs the engine: a sales floor where every phone has a key per colleague, so each
change of one agent's line (ringing, answered, hung up) is a NOTIFY to every colleague.

Run: .venv/bin/python bench/bench_blf.py [--agents 100] [--changes 200] [--smoke]

Pure Python on parsed messages (no sockets): accepting the SUBSCRIBEs, then for each change
of a line the fan-out (which subscriptions owe a NOTIFY) and building each NOTIFY with its
dialog-info+xml body (naming the caller while the line rings or talks), as pbx.blf_service
does before it hands them to the transaction layer.
Figures only. --smoke: 10 agents, 20 changes, for CI.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.blf import LineState, Party, Watchers
from telephony.sip import NameAddr, SipRequest, SipUri, Via, parse_message

OURS = NameAddr(None, SipUri(scheme="sip", user=None, password=None, host="127.0.0.1",
                             port=5060, params={}, headers={}), {})  # fmt: skip
VIA = Via(protocol="SIP/2.0", transport="UDP", host="127.0.0.1", port=5060,
          params={"branch": "z9hG4bK-bench"})  # fmt: skip
CYCLE = (LineState.EARLY, LineState.CONFIRMED, LineState.TERMINATED)


def subscribe(watcher: int, monitored: int) -> SipRequest:
    text = (
        f"SUBSCRIBE sip:{monitored}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{watcher}-{monitored}\r\n"
        f"From: <sip:{watcher}@127.0.0.1>;tag=w{watcher}\r\nTo: <sip:{monitored}@127.0.0.1>\r\n"
        f"Call-ID: blf-{watcher}-{monitored}\r\nCSeq: 1 SUBSCRIBE\r\n"
        f"Contact: <sip:{watcher}@127.0.0.1:5070>\r\nEvent: dialog\r\nExpires: 3600\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="10 agents, 20 changes, for CI")
    args = parser.parse_args()
    agents, changes = (10, 20) if args.smoke else (args.agents, args.changes)
    extensions = [str(1000 + n) for n in range(agents)]
    requests = [subscribe(w, int(m)) for w in range(agents) for m in extensions if int(m) != w]
    watchers = Watchers()
    start = time.process_time()
    for n, request in enumerate(requests):
        watchers.subscribe(request, watcher=str(n % agents), monitored=str(request.uri.user),
                           contact=OURS, now=0)  # fmt: skip
    subscribe_us = (time.process_time() - start) / len(requests) * 1e6
    sent = 0
    start = time.process_time()
    for n in range(changes):
        extension = extensions[n % agents]
        state = CYCLE[(n // agents) % len(CYCLE)]
        # Ringing and answered: the NOTIFY names the caller (RFC 4235 <remote>), as the engine's.
        remote = (
            None
            if state is LineState.TERMINATED
            else Party(f"sip:+1202555{n % 10000:04d}@127.0.0.1", "Customer")
        )
        for sub in watchers.changed(extension, state, "recipient", remote):
            notify = watchers.notify(sub, state, via=VIA, contact=OURS,
                                     entity=f"sip:{extension}@127.0.0.1", now=1)  # fmt: skip
            bytes(notify.body)
            sent += 1
    elapsed = time.process_time() - start
    print(f"python {platform.python_version()}, {agents} agents, {len(watchers)} subscriptions")
    print(f"  SUBSCRIBE accepted          {subscribe_us:8.1f} us")
    print(f"  NOTIFY built (fan-out)      {elapsed / max(sent, 1) * 1e6:8.1f} us")
    print(f"  one line change, all keys   {elapsed / changes * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
