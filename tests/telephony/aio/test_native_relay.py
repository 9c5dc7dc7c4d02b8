"""The native relay (telephony.rtp._relay) of two bridged legs, on real sockets: it takes over
a plain G.711 call's packets, and whatever it cannot take (a key press, another source, a new
SSRC, a listener that wants frames) comes back to Python with the counters Python would have
kept; the recorder's audio is the same sample for sample."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import cast

import numpy as np
import pytest

from telephony.aio import MediaClock, MediaSession
from telephony.aio.media_session import MediaBridge
from telephony.aio.rtp import RtpEndpoint, RtpPortPool
from telephony.media import CODECS, tone_samples
from telephony.rtp import StreamRewriter, _relay
from telephony.rtp.rtcp import ReceiverReport, SenderReport, parse_rtcp

_HEADER = struct.Struct("!BBHII")


class Phone(asyncio.DatagramProtocol):
    """A far end on loopback: sends RTP to its leg's port, keeps what comes back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.heard: list[bytes] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.heard.append(data)
        for count, waiter in list(self._waiters):
            if len(self.heard) >= count and not waiter.done():
                waiter.set_result(None)

    async def until_heard(self, count: int) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        if len(self.heard) >= count:
            waiter.set_result(None)
        await asyncio.wait_for(waiter, 5)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, packet: bytes, to: int) -> None:
        assert self.transport is not None
        self.transport.sendto(packet, ("127.0.0.1", to))


def audio(seq: int, *, ssrc: int = 0x1234, pt: int = 0, payload: bytes | None = None) -> bytes:
    if payload is None:
        payload = bytes((seq * 7 + i) & 0xFF for i in range(160))
    return _HEADER.pack(0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def event(seq: int, digit: int, *, end: bool, ssrc: int = 0x1234) -> bytes:
    """RFC 4733 telephone-event (payload type 101) for `digit`, 400 samples long so far."""
    flags = 0x80 if end else 0
    return _HEADER.pack(0x80, 101, seq, 99 * 160, ssrc) + bytes([digit, flags | 10, 1, 144])


def offer(port: int) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    ).encode()


class Call:
    """Two legs bridged, each facing a phone."""

    def __init__(self, *, prompt_to_b: bool = False) -> None:
        self.digits: list[str] = []
        self.prompt_to_b = prompt_to_b
        """Leg B hears one packet of our own audio before the bridge (an IVR's prompt), so
        what it is relayed continues our stream (StreamRewriter)."""

    async def __aenter__(self) -> Call:
        loop = asyncio.get_running_loop()
        self.pool = RtpPortPool("127.0.0.1", 41000, 41100)
        self.clock = MediaClock(loop)
        self.phones: list[Phone] = []
        self.legs: list[MediaSession] = []
        for _ in range(2):
            _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
            rtp = await self.pool.open()
            leg = MediaSession(rtp, local_host="127.0.0.1", clock=self.clock,
                               on_dtmf=lambda digit, how: self.digits.append(digit))  # fmt: skip
            leg.accept_offer(offer(phone.port))
            self.phones.append(phone)
            self.legs.append(leg)
        if self.prompt_to_b:
            self.legs[1].send_payload(b"\xff" * 160, 160, marker=True)
            await self.phones[1].until_heard(1)
        self.bridge = MediaBridge(self.legs[0], self.legs[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bridge.close()
        for leg, phone in zip(self.legs, self.phones, strict=True):
            self.pool.release(leg.rtp)
            assert phone.transport is not None
            phone.transport.close()

    def port(self, leg: int) -> int:
        return self.legs[leg].rtp.port

    def native(self, leg: int) -> int:
        transport = self.legs[leg].rtp.transport
        assert transport is not None
        return transport.port.relayed_natively


async def talk(call: Call, first: int, last: int) -> None:
    """Phone A sends audio `first`..`last` (sequence numbers, one each), phone B hears it; the
    loop runs every 20 packets so they arrive in batches, as a call's do."""
    a, b = call.phones
    for seq in range(first, last + 1):
        a.send(audio(seq), call.port(0))
        if seq % 20 == 0:
            await b.until_heard(seq)
    await b.until_heard(last)


async def test_a_plain_call_is_relayed_natively_with_the_counters_python_keeps() -> None:
    async with Call() as call:
        a, b = call.phones
        for seq in range(1, 201):
            a.send(audio(seq), call.port(0))
            if seq % 20 == 0:
                await b.until_heard(seq)  # the loop runs: the packets go in batches
        await b.until_heard(200)
        assert b.heard == [audio(seq) for seq in range(1, 201)]
        assert call.native(0) >= 150, "the native relay took the call over"
        leg_a, leg_b = call.legs
        assert leg_a.rtp.native_to is leg_b.rtp
        # What Python reads while the relay is native is what it would have counted.
        # The first packet is the source's probation (RFC 3550 A.1): expected from the second.
        assert (leg_a.rtp.packets_in, leg_a.rtp.packets_expected, leg_a.rtp.packets_lost) == (
            200,
            199,
            0,
        )
        assert leg_a.rtp.rtcp_session.source is not None
        assert leg_a.rtp.rtcp_session.source.extended_max_seq == 200
        assert leg_b.rtp.packets_out == 200
        assert leg_b.relayed is not None and _HEADER.unpack_from(leg_b.relayed)[2] == 200
        session = leg_b.rtp.rtcp_session
        assert (session.packets_sent, session.octets_sent) == (200, 200 * 160)
        report = parse_rtcp(session.report(asyncio.get_running_loop().time() + 10, 0.0))[0]
        assert isinstance(report, SenderReport)
        assert (report.ssrc, report.packet_count, report.octet_count) == (0x1234, 200, 32000)
        # B sent nothing yet: its leg reports reception of nothing, A's sender counts nothing.
        assert isinstance(parse_rtcp(leg_a.rtp.rtcp_session.report(1e9, 0.0))[0], ReceiverReport)


async def test_a_key_press_comes_back_to_python_and_the_relay_goes_native_again() -> None:
    async with Call() as call:
        a, b = call.phones
        await talk(call, 1, 60)
        before = call.native(0)
        assert before > 0
        for seq, end in ((61, False), (62, False), (63, True), (64, True)):
            a.send(event(seq, 5, end=end), call.port(0))
        await b.until_heard(64)
        assert call.digits == ["5"]
        assert call.legs[0].rtp.native_to is None, "the event stopped the native relay"
        await talk(call, 65, 164)
        assert call.native(0) > before, "native again after the key press"
        assert [_HEADER.unpack_from(p)[2] for p in b.heard] == list(range(1, 165))
        assert call.legs[0].rtp.packets_expected + 1 == call.legs[0].rtp.packets_in == 164


async def test_another_source_is_not_relayed_while_the_phone_talks() -> None:
    """RTP injection: a packet from another port while the latched phone is live is dropped
    by Python, which the native relay hands it to."""
    async with Call() as call:
        b = call.phones[1]
        await talk(call, 1, 40)
        assert call.native(0) > 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            intruder.sendto(audio(41, payload=b"\xee" * 160), ("127.0.0.1", call.port(0)))
        await talk(call, 41, 80)
        assert all(p[12:] != b"\xee" * 160 for p in b.heard)
        assert call.legs[0].rtp.packets_in == 80


async def test_a_new_ssrc_is_counted_as_python_counts_it() -> None:
    async with Call() as call:
        a, b = call.phones
        await talk(call, 1, 40)
        for seq in range(500, 540):  # the phone restarted its stream
            a.send(audio(seq, ssrc=0x9999), call.port(0))
        await b.until_heard(80)
        source = call.legs[0].rtp.rtcp_session.source
        assert source is not None and source.ssrc == 0x9999
        assert call.legs[0].rtp.packets_expected == 39 + 39  # each source's first is probation
        assert call.legs[0].rtp.packets_in == 80


async def test_the_recorder_hears_every_sample_native_or_not() -> None:
    """A recorder's buffer (`record_into`) gets the audio decoded natively, in order, after
    what Python decoded before the relay went native; a frame listener (a supervisor) stops
    the native relay and hears the rest, and the buffer goes on."""
    async with Call() as call:
        a, b = call.phones
        heard = bytearray()
        call.legs[0].record_into(heard, 10**6)
        sent: list[bytes] = []
        for seq in range(1, 121):
            packet = audio(seq)
            sent.append(packet[12:])
            a.send(packet, call.port(0))
            if seq % 20 == 0:
                await b.until_heard(seq)
        assert call.native(0) > 0
        frames: list[np.ndarray] = []
        call.legs[0].listen(frames.append)
        assert call.legs[0].rtp.native_to is None
        for seq in range(121, 141):
            packet = audio(seq)
            sent.append(packet[12:])
            a.send(packet, call.port(0))
        await b.until_heard(140)
        assert bytes(heard) == b"".join(CODECS["PCMU"].decode_bytes(p) for p in sent)
        assert len(frames) == 20


async def test_a_full_recorder_buffer_keeps_the_newest_audio() -> None:
    """The native relay bounds the buffer as the recorder's push does (its ticks stalled)."""
    async with Call() as call:
        heard = bytearray()
        call.legs[0].record_into(heard, 1600)
        await talk(call, 1, 100)
        assert call.native(0) > 0
        newest = b"".join(CODECS["PCMU"].decode_bytes(audio(seq)[12:]) for seq in range(96, 101))
        assert bytes(heard) == newest


async def test_a_recorder_detached_gets_nothing_more() -> None:
    """An opt-out pauses the recording: the undo stops the native relay's appends too."""
    async with Call() as call:
        heard = bytearray()
        undo = call.legs[0].record_into(heard, 10**6)
        await talk(call, 1, 60)
        assert call.native(0) > 0
        undo()
        kept = len(heard)
        await talk(call, 61, 120)
        assert len(heard) == kept == 60 * 320
        assert call.native(0) > 60, "native again, with nothing to append to"


async def test_a_pcm_listener_keeps_the_relay_in_python() -> None:
    async with Call() as call:
        pcm: list[bytes] = []
        call.legs[0].listen_pcm(pcm.append)
        await talk(call, 1, 60)
        assert call.native(0) == 0 and len(pcm) == 60


async def test_a_stream_that_continues_our_prompt_is_renumbered_natively() -> None:
    """The leg that heard our prompt gets the other phone's audio as the continuation of our
    stream, natively too: every packet, through a key press that hands the relay back to
    Python and back, is what Python's StreamRewriter makes of it."""
    async with Call(prompt_to_b=True) as call:
        a, b = call.phones
        prompt = b.heard[0]
        _, _, seq, timestamp, ssrc = _HEADER.unpack_from(prompt)
        reference = StreamRewriter(ssrc=ssrc, sequence_number=(seq + 1) & 0xFFFF,
                                   timestamp=(timestamp + 160) & 0xFFFFFFFF)  # fmt: skip
        sent = [audio(n) for n in range(1, 61)]
        sent += [event(n, 5, end=n > 62) for n in range(61, 65)]
        sent += [audio(n) for n in range(65, 141)]
        for index, packet in enumerate(sent, start=1):
            a.send(packet, call.port(0))
            if index % 20 == 0:
                await b.until_heard(1 + index)
        await b.until_heard(1 + len(sent))
        assert call.native(0) > 100, "renumbered natively"
        assert b.heard[1:] == [reference.rewrite(packet) for packet in sent]
        splice = call.legs[1]._splice
        assert splice is not None
        call.legs[0].rtp.stop_native()  # the counters come back into Python's rewriter
        assert (splice.last_sequence_number, splice.packet_count) == (
            reference.last_sequence_number,
            reference.packet_count,
        )


def test_the_native_decoder_is_g711_as_audioop_decodes_it() -> None:
    codes = bytes(range(256))
    assert _relay.decode(codes, 0) == CODECS["PCMU"].decode_bytes(codes)
    assert _relay.decode(codes, 1) == CODECS["PCMA"].decode_bytes(codes)
    tone = tone_samples([1000.0], 0.02, level_dbfs=-6.0)
    assert np.array_equal(
        np.frombuffer(_relay.decode(CODECS["PCMA"].encode(tone), 1), dtype=np.int16),
        CODECS["PCMA"].decode(CODECS["PCMA"].encode(tone)),
    )


async def test_a_port_refuses_what_it_cannot_take() -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one:
        port = _relay.Port(one.fileno(), socket.AF_INET, lambda data, addr: None)
        with pytest.raises(ValueError, match="family"):
            _relay.Port(one.fileno(), socket.AF_UNIX, lambda data, addr: None)
        with pytest.raises(ValueError, match="itself"):
            port.engage(port, ("127.0.0.1", 1), ("127.0.0.1", 2), 0, 0, None, 0)
        other = _relay.Port(one.fileno(), socket.AF_INET, lambda data, addr: None)
        with pytest.raises(ValueError, match="IPv4"):
            port.engage(other, ("::1", 1), ("127.0.0.1", 2), 0, 0, None, 0)
        with pytest.raises(TypeError, match="bytearray"):
            port.engage(other, ("127.0.0.1", 1), ("127.0.0.1", 2), 0, 0, b"", 0)
        with pytest.raises(ValueError, match="even"):
            port.engage(other, ("127.0.0.1", 1), ("127.0.0.1", 2), 0, 0, bytearray(), 3)
        other.close()
        with pytest.raises(ValueError, match="closed"):
            port.engage(other, ("127.0.0.1", 1), ("127.0.0.1", 2), 0, 0, None, 0)
        assert not port.engaged
    endpoint = RtpEndpoint(40000, loop, "test@127.0.0.1")  # no socket: never native
    assert not endpoint.relay_natively(endpoint, codec_pt=0, law=0)
