"""A fake carrier trunk for tests and demos: customers calling in from the carrier's address,
and a carrier that answers the engine's outbound calls.

The carrier lives on 127.0.0.2 so it looks like another machine than the agents' phones
(127.0.0.1): the engine tells trunk calls from agents' calls by source address.
"""

from __future__ import annotations

from pathlib import Path

from .baresip import BaresipPeer
from .sipp import SippUas, start_sipp_uas

CARRIER_IP = "127.0.0.2"


def customer(
    number: str, *, workdir: str | Path, audio_source: str | Path | None = None
) -> BaresipPeer:
    """A customer's phone behind the carrier, calling with `number` as caller ID."""
    return BaresipPeer(number, workdir=workdir, host=CARRIER_IP, audio_source=audio_source,
                       name=f"customer-{number}")  # fmt: skip


def did_uri(did: str, engine_port: int, engine_host: str = "127.0.0.1") -> str:
    """What the carrier dials to deliver a call for one of the company's numbers."""
    return f"sip:{did}@{engine_host}:{engine_port}"


def outbound_carrier(
    port: int, *, calls: int | None = None, workdir: str | Path | None = None
) -> SippUas:
    """The carrier's side of outbound calls: answers any number, holds, accepts BYE."""
    return start_sipp_uas("uas.xml", port=port, calls=calls, workdir=workdir)
