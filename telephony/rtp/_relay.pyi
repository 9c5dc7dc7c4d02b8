"""The native RTP relay of bridged legs (telephony/rtp/_relay.c)."""

from collections.abc import Callable

Address = tuple[str, int] | tuple[str, int, int, int]

class Port:
    """One leg's RTP socket, read natively; relays to an engaged peer."""

    fd: int
    engaged: bool
    ssrc: int
    max_seq: int
    cycles: int
    received: int
    jitter: float
    transit: float
    has_transit: int
    clock_rate: int
    packets_in: int
    packets_out: int
    last_received: float
    packets_sent: int
    octets_sent: int
    last_sent_at: float
    relayed_natively: int
    send_errors: int
    pcm_dropped: int
    rw_active: int
    rw_source: int
    rw_seq_offset: int
    rw_ts_offset: int
    rw_last_in_seq: int
    rw_out_seq: int
    rw_out_ts: int
    rw_ssrc: int
    rw_packets: int
    rw_octets: int
    def __init__(
        self, fd: int, family: int, on_datagram: Callable[[bytes, tuple[str, int]], None]
    ) -> None: ...
    def readable(self) -> None: ...
    def engage(
        self,
        peer: Port,
        source: Address,
        destination: Address,
        codec_pt: int,
        law: int,
        sink: bytearray | None,
        sink_max: int,
    ) -> None: ...
    def disengage(self) -> None: ...
    def take_last_sent(self) -> bytes | None: ...
    def take_relayed(self) -> bytes | None: ...
    def close(self) -> None: ...

def decode(payload: bytes, law: int, /) -> bytes: ...
