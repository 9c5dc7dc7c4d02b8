"""Media of one leg: SDP offer/answer state, the leg's RTP port, and relaying to a bridged leg.

Relaying stays on the packet path without decoding when both legs use the same codec (the usual
case: the B2BUA offers the callee the caller's codecs); only RFC 4733 packets are parsed, to
report digits and to renumber their payload type for the other leg.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections.abc import Callable
from typing import TypeVar

from telephony.call import Dtmf, offer_answer
from telephony.call.offer_answer import SUPPORTED, OfferAnswer
from telephony.call.session import OfferRejected
from telephony.media import CODECS, FRAME_SAMPLES, Frame, FrameSource
from telephony.rtp import DtmfReceiver, DtmfSender, RtpError, RtpPacket, StreamRewriter
from telephony.rtp.dtls import DtlsCertificate
from telephony.sdp.webrtc import LocalIce

from .clock import MediaClock
from .rtp import RtpEndpoint
from .webrtc import WebRtcTransport

logger = logging.getLogger(__name__)

_RTP_HEADER = struct.Struct("!BBHII")
_LAWS = {"PCMU": 0, "PCMA": 1}
"""The codecs the native relay decodes for listeners (telephony.rtp._relay)."""
_NATIVE_EVERY = 16
"""Relayed packets between two tries to hand a leg's relay to the native port."""
_T = TypeVar("_T")


class MediaError(OfferRejected):
    """An SDP we cannot accept; `status_code` is the SIP answer (488 Not Acceptable Here) and
    `warning` its RFC 3261 20.43 Warning code and text (telephony.call.OfferRejected)."""


def check_offer(body: bytes, *, codecs: list[str] | None = None, srtp: str = "optional") -> None:
    """Raise MediaError unless an answer to this offer would carry one of `codecs` (all we
    speak by default): the SDP parses and offers an audio stream we can take under the SRTP
    policy `srtp` (by default: plain RTP or SRTP with usable keys)."""
    try:
        offer_answer.check_offer(body, codecs=codecs, srtp=srtp)
    except OfferRejected as exc:
        raise MediaError(str(exc), warning=exc.warning) from exc


class MediaSession:
    def __init__(
        self,
        rtp: RtpEndpoint,
        *,
        local_host: str,
        on_dtmf: Callable[[str, str], None],
        clock: MediaClock,
        srtp: str = "off",
        certificate: DtlsCertificate | None = None,
    ) -> None:
        self.rtp = rtp
        self.local_host = local_host
        self._on_dtmf = on_dtmf
        self._certificate = certificate
        ice = None
        if certificate is not None:
            # RFC 8839 5.4: ufrag 4+ and pwd 22+ ice-chars (hex is a subset), fresh per leg.
            ice = LocalIce(secrets.token_hex(4), secrets.token_hex(16), certificate.fingerprint)
        self.sdp = OfferAnswer(local_host=local_host, local_port=rtp.port, srtp=srtp, ice=ice)
        rtp.srtp_required = srtp in ("required", "dtls")
        self.webrtc: WebRtcTransport | None = None
        """ICE-lite and DTLS-SRTP of this leg once a WebRTC stream was agreed."""
        self.connected_at: float | None = None
        self._peer: MediaSession | None = None
        self._dtmf = DtmfReceiver()
        self._clock = clock
        # Our own outgoing stream, for audio the engine produces (prompts, tones).
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._playing: dict[asyncio.Future[None], int] = {}
        self._relayed: bytes | None = None
        self.sent_own = False
        """We sent this leg audio of our own (prompts, tones, a mix) since the relay last
        continued our stream."""
        self._splice: StreamRewriter | None = None
        """Renumbers the relayed stream to continue the one we sent before it (prompts, music
        on hold): one SSRC, sequence numbers and timestamps that go on, a marker at the switch."""
        self._listeners: list[Callable[[Frame], None]] = []
        """Get the decoded audio the far end sends (recording, AMD, in-band DTMF, monitors)."""
        self._pcm_listeners: list[Callable[[bytes], None]] = []
        """The same audio as 16-bit PCM bytes in native byte order."""
        self._sinks: list[tuple[bytearray, int]] = []
        """Buffers the same PCM bytes are appended to, each with the bytes it may hold (a
        recorder's side: the native relay appends to one itself)."""
        self._native_wait = _NATIVE_EVERY
        """Packets to relay in Python before trying the native relay again."""
        rtp.on_packet = self._on_packet
        rtp.on_native_stop = self._native_stopped

    @property
    def peer(self) -> MediaSession | None:
        """The leg this one's audio is relayed to (a bridge sets both directions)."""
        return self._peer

    @peer.setter
    def peer(self, peer: MediaSession | None) -> None:
        if peer is not self._peer:
            self.rtp.stop_native()
        self._peer = peer

    @property
    def relayed(self) -> bytes | None:
        """The last packet relayed to this leg (at least its 12-byte fixed header)."""
        if self.rtp.native_from is not None:
            header = self.rtp.take_relayed()
            if header is not None:
                self._relayed = header
        return self._relayed

    # -- offer / answer (telephony.call.OfferAnswer; what is agreed goes to the socket) -----

    @property
    def codec_name(self) -> str:
        return self.sdp.codec_name

    @property
    def codec_pt(self) -> int:
        return self.sdp.codec_pt

    @property
    def remote_dte_pt(self) -> int | None:
        """Payload type of telephone-event in the far end's SDP (what it sends and expects)."""
        return self.sdp.remote_dte_pt

    @property
    def held(self) -> bool:
        return self.sdp.held

    def make_offer(self, *, codecs: list[str] | None = None) -> bytes:
        return self.sdp.make_offer(codecs=codecs)

    def accept_offer(self, body: bytes, *, codecs: list[str] | None = None) -> None:
        """Answer the far end's offer (initial INVITE or re-INVITE) with one of `codecs`."""
        self._negotiated(self.sdp.accept_offer, body, codecs=codecs)

    def accept_answer(self, body: bytes) -> None:
        """The far end's answer to our last offer."""
        self._negotiated(self.sdp.accept_answer, body)

    def _negotiated(self, step: Callable[..., None], *args: object, **kwargs: object) -> None:
        self.rtp.stop_all_native()  # the codec or the far end may change
        try:
            step(*args, **kwargs)
        except OfferRejected as exc:
            raise MediaError(str(exc), warning=exc.warning) from exc
        if self.sdp.dtls is not None:
            self._use_webrtc()
            return
        if self.sdp.remote is not None:
            self.rtp.set_remote(self.sdp.remote)
        self.rtp.set_srtp(self.sdp.keys)

    def _use_webrtc(self) -> None:
        remote, ice = self.sdp.dtls, self.sdp.ice
        assert remote is not None and ice is not None and self._certificate is not None
        if self.webrtc is not None:
            if self.webrtc.same_association(remote):
                return  # a re-offer (hold, resume): the association goes on
            # An ICE restart or a new certificate: not supported mid-call, keep what works.
            logger.warning("WebRTC leg on port %d: ICE/DTLS changed in a re-offer", self.rtp.port)
            return
        self.webrtc = WebRtcTransport(
            self.rtp,
            self._certificate,
            local_ufrag=ice.ufrag,
            local_pwd=ice.pwd,
            remote=remote,
            on_failure=lambda why: logger.warning("WebRTC leg on port %d: %s", self.rtp.port, why),
        )

    @property
    def secure(self) -> bool:
        """The leg's media is SRTP (keys agreed by SDES, or DTLS-SRTP)."""
        return self.sdp.keys is not None or self.sdp.dtls is not None

    def local_sdp(self) -> bytes:
        try:
            return self.sdp.local_sdp()
        except OfferRejected as exc:
            raise MediaError(str(exc)) from exc

    # -- audio we produce ----------------------------------------------------------------------

    def play(self, source: FrameSource) -> asyncio.Future[None]:
        """Send `source` to the far end, one frame per media-clock tick; done when it ends."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        first = True

        def tick(_frame: int) -> None:
            nonlocal first
            samples = source.next_frame()
            if samples is None:
                self._stop(done)
                return
            self.send_frame(samples, marker=first)
            first = False

        self._playing[done] = self._clock.subscribe(tick)
        done.add_done_callback(lambda fut: self._stop(fut))
        return done

    def send_frame(self, samples: Frame, *, marker: bool = False) -> None:
        """Send one frame of our own audio now (the caller paces it on the media clock)."""
        self.send_payload(CODECS[self.codec_name].encode(samples), len(samples), marker=marker)

    def send_payload(self, payload: bytes, samples: int, *, marker: bool = False) -> None:
        """Send one frame already encoded in this leg's codec (a `Playout` encodes a frame
        once for every leg that hears it); `samples` advances the RTP timestamp."""
        header = _RTP_HEADER.pack(
            0x80, (0x80 if marker else 0) | self.codec_pt, self._seq, self._timestamp, self._ssrc
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF
        self.sent_own = True
        self.rtp.send(header + payload)

    def splice_relay(self) -> None:
        """Relay to this leg again after sending our own audio (music on hold): the relayed
        packets continue our stream's SSRC, sequence numbers and timestamps from here on, so
        the phone's jitter buffer takes them (one header rewrite per packet for the rest of
        the call)."""
        if self.rtp.native_from is not None:
            self.rtp.native_from.stop_native()  # packets relayed to us get rewritten from now on
        self._splice = StreamRewriter(
            ssrc=self._ssrc, sequence_number=self._seq, timestamp=self._timestamp
        )
        self.sent_own = False

    def continue_relayed_stream(self) -> None:
        """Send our own audio as the continuation of the stream relayed so far (its SSRC, next
        sequence number and timestamp): phones whose jitter buffer ignores an SSRC change
        (baresip 1.0) would drop a new stream whose numbers lie behind the old one."""
        if self.rtp.native_from is not None:
            self.rtp.native_from.stop_native()  # our own packets continue from here
        relayed = self._relayed
        if relayed is None:
            return
        _, _, seq, timestamp, ssrc = _RTP_HEADER.unpack_from(relayed)
        self._ssrc, self._seq = ssrc, (seq + 1) & 0xFFFF
        self._timestamp = (timestamp + FRAME_SAMPLES) & 0xFFFFFFFF

    def send_dtmf(self, digit: str, *, duration_ms: int = 100) -> asyncio.Future[None]:
        """Press `digit` as RFC 4733 telephone-events, one packet per media-clock tick (the far
        end must have offered telephone-event); done after the end packets."""
        if self.remote_dte_pt is None:
            raise MediaError("the far end did not offer telephone-event")
        sender = DtmfSender(
            digit,
            payload_type=self.remote_dte_pt,
            ssrc=self._ssrc,
            timestamp=self._timestamp,
            duration_ms=duration_ms,
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def tick(_frame: int) -> None:
            packet = sender.next_packet(self._seq)
            if packet is None:
                # The audio clock moves on by the time the press took.
                self._timestamp = (self._timestamp + sender.duration_samples) & 0xFFFFFFFF
                self._stop(done)
                return
            self._seq = (self._seq + 1) & 0xFFFF
            self.sent_own = True
            self.rtp.send(bytes(packet))

        self._playing[done] = self._clock.subscribe(tick)
        done.add_done_callback(lambda fut: self._stop(fut))
        return done

    def relay_dtmf(self, digit: str) -> asyncio.Future[None]:
        """Press `digit` as RFC 4733 events inside the stream relayed to this leg (a key the
        other party sent as SIP INFO): the events continue the relayed stream's numbering, the
        relay pauses while they go out and resumes spliced after them."""
        source = self.peer
        paused = source is not None and source.peer is self
        if paused:
            assert source is not None
            source.peer = None
        self.continue_relayed_stream()
        done = self.send_dtmf(digit)

        def resume(_: asyncio.Future[None]) -> None:
            self.splice_relay()
            if paused and source is not None and source.peer is None and self.peer is source:
                source.peer = self

        done.add_done_callback(resume)
        return done

    def _stop(self, playing: asyncio.Future[None]) -> None:
        token = self._playing.pop(playing, None)
        if token is not None:
            self._clock.unsubscribe(token)
        if not playing.done():
            playing.set_result(None)

    def listen(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Hand every decoded frame from the far end to `listener` too; returns the undo."""
        self.rtp.stop_native()  # frames go to Python listeners packet by packet
        return _attach(self._listeners, listener)

    def listen_pcm(self, listener: Callable[[bytes], None]) -> Callable[[], None]:
        """Like listen(), the frames as 16-bit linear PCM bytes in native byte order: for a
        listener that wants bytes anyway (the recorder), decoded without numpy's fixed cost
        per packet; returns the undo."""
        self.rtp.stop_native()  # the native relay decodes only for listeners it started with
        return _attach(self._pcm_listeners, listener)

    def record_into(self, buffer: bytearray, max_bytes: int) -> Callable[[], None]:
        """Append the far end's audio as 16-bit PCM bytes in native byte order to `buffer`,
        dropping its oldest bytes beyond `max_bytes` (a recorder's side: the native relay
        appends to it without Python); returns the undo."""
        self.rtp.stop_native()
        detach = _attach(self._sinks, (buffer, max_bytes - max_bytes % 2))

        def undo() -> None:
            self.rtp.stop_native()  # the native port appends to the sink it started with
            detach()

        return undo

    def unbridge(self) -> None:
        """Stop relaying to and from the bridged leg (this leg is going away)."""
        if self.peer is not None and self.peer.peer is self:
            self.peer.peer = None
        self.peer = None

    def stop_playing(self) -> None:
        for playing in list(self._playing):
            self._stop(playing)

    # -- packet path --------------------------------------------------------------------------

    def _on_packet(self, data: bytes) -> None:
        if len(data) < 12:
            return
        pt = data[1] & 0x7F
        peer = self.peer
        sdp = self.sdp  # what offer/answer agreed (its attributes, not our properties: per packet)
        if pt == sdp.remote_dte_pt:
            self._on_event_packet(data)
            if peer is not None and peer.remote_dte_pt is not None:
                if peer.remote_dte_pt != pt:
                    data = data[:1] + bytes([(data[1] & 0x80) | peer.remote_dte_pt]) + data[2:]
                if peer._splice is not None:
                    data = peer._splice.rewrite(data)
                peer._relayed = data
                peer.rtp.send(data)
            return
        if pt != sdp.codec_pt:
            return  # comfort noise or a codec nobody negotiated
        if self._listeners or self._pcm_listeners or self._sinks:
            self._hear(data)
        if peer is None:
            return
        if peer.sdp.codec_pt != pt:
            data = _transcode(data, self.codec_name, peer.codec_name, peer.codec_pt)
        if peer._splice is not None:
            data = peer._splice.rewrite(data)
        peer._relayed = data
        peer.rtp.send(data)
        self._native_wait -= 1
        if self._native_wait <= 0:
            self._native_wait = _NATIVE_EVERY
            self._relay_natively(peer)

    # -- the native relay (telephony.rtp._relay) ------------------------------------------------

    def _relay_natively(self, peer: MediaSession) -> None:
        """Hand the relay of this leg's audio to `peer` to the native port when nothing here
        needs the packets one by one: no frame listeners, renumbering into the peer only in
        its steady state (one source, fixed offsets, carried on by the port), one
        G.711 codec on both legs, at most one PCM sink (a recorder's side; no PCM listener).
        Anything else the native port meets comes back to Python,
        which stops it (telephony/aio/rtp.py); the next packets try again."""
        law = _LAWS.get(self.sdp.codec_name)
        if law is None or self._listeners or self._pcm_listeners or len(self._sinks) > 1:
            return
        splice = peer._splice
        if (splice is not None and not splice.steady) or peer.sdp.codec_pt != self.sdp.codec_pt:
            return
        sink, max_bytes = self._sinks[0] if self._sinks else (None, 0)
        if not self.rtp.relay_natively(peer.rtp, codec_pt=self.sdp.codec_pt, law=law, sink=sink,
                                       sink_max=max_bytes):  # fmt: skip
            return
        out = peer.rtp.transport
        assert out is not None  # relay_natively checked
        port = out.port
        port.rw_active = splice is not None
        if splice is not None:
            (port.rw_source, port.rw_seq_offset, port.rw_ts_offset, port.rw_last_in_seq,
             port.rw_out_seq, port.rw_out_ts) = splice.offsets()  # fmt: skip
            port.rw_ssrc, port.rw_packets = splice.ssrc, splice.packet_count
            port.rw_octets = splice.octet_count

    def _native_stopped(self, to: RtpEndpoint) -> None:
        peer = self._peer
        if peer is None or peer.rtp is not to or to.transport is None:
            return
        header = to.take_relayed()
        if header is not None:
            peer._relayed = header
        port = to.transport.port
        if port.rw_active:
            port.rw_active = False
            if peer._splice is not None:
                peer._splice.went_on(last_in_seq=port.rw_last_in_seq, out_seq=port.rw_out_seq,
                                     out_ts=port.rw_out_ts, packets=port.rw_packets,
                                     octets=port.rw_octets)  # fmt: skip

    def _hear(self, data: bytes) -> None:
        """Decode the audio of a packet for the listeners, once per form they take."""
        if data[0] == 0x80:  # version 2, no padding, extension or CSRCs: the usual packet
            payload = data[12:]
        else:
            start, end = _payload_bounds(data)
            payload = data[start:end]
        codec = CODECS[self.sdp.codec_name]
        if self._pcm_listeners or self._sinks:
            linear = codec.decode_bytes(payload)
            for pcm_listener in self._pcm_listeners:
                pcm_listener(linear)
            for sink, max_bytes in self._sinks:
                sink += linear
                if len(sink) > max_bytes:
                    del sink[: len(sink) - max_bytes]
        if self._listeners:
            pcm = codec.decode(payload)
            for listener in self._listeners:
                listener(pcm)

    def _on_event_packet(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        digit = self._dtmf.feed(packet)
        if digit is not None:
            self._on_dtmf(digit, "rfc4733")


def _attach(items: list[_T], item: _T) -> Callable[[], None]:
    """Add `item` (a listener, a sink) to `items`; the undo, which removes that very object
    (two sinks whose bytes are equal are still two sinks)."""
    items.append(item)

    def stop() -> None:
        for index, each in enumerate(items):
            if each is item:
                del items[index]
                return

    return stop


def _payload_bounds(data: bytes) -> tuple[int, int]:
    """Where an RTP packet's payload starts and ends (CSRCs, header extension, padding)."""
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= start + 4:  # header extension: 4 bytes + length words
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = len(data)
    if data[0] & 0x20 and end > start:  # padding: the last octet counts it
        end -= data[-1]
    return min(start, len(data)), max(min(start, len(data)), end)


def _transcode(data: bytes, source: str, target: str, target_pt: int) -> bytes:
    """G.711 mu-law <-> A-law for legs that negotiated different codecs (rare; costs a decode)."""
    start, end = _payload_bounds(data)
    payload = CODECS[target].encode(CODECS[source].decode(data[start:end]))
    return data[:1] + bytes([(data[1] & 0x80) | target_pt]) + data[2:start] + payload


class MediaBridge:
    """Two legs relaying RTP to each other until closed."""

    def __init__(self, a: MediaSession, b: MediaSession) -> None:
        self.a, self.b = a, b
        for session in (a, b):
            # A leg that heard our prompts (an IVR before a transfer) gets the other phone's
            # audio as the continuation of that stream: some phones drop a new one.
            if session.sent_own:
                session.splice_relay()
        a.peer, b.peer = b, a

    def close(self) -> None:
        if self.a.peer is self.b:
            self.a.unbridge()


__all__ = [
    "SUPPORTED",
    "Dtmf",
    "MediaBridge",
    "MediaError",
    "MediaSession",
    "check_offer",
]
