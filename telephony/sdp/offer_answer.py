"""Offer/answer (RFC 3264) for the engine's one audio stream per call leg.

The engine answers with exactly one audio codec (the first offered one it supports, keeping the
offerer's preference) plus telephone-event when offered, so each leg has one payload type to
encode and decode. Streams it cannot take are rejected with port 0, as section 6 requires.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from .errors import NoCommonCodec, SdpParseError
from .model import (
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DTMF_EVENTS",
    "DEFAULT_DTMF_PAYLOAD_TYPE",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Answer",
    "Codec",
    "CodecSpec",
    "NegotiatedMedia",
    "accept_answer",
    "answer_direction",
    "create_offer",
    "is_hold",
    "negotiate",
    "plain_rtp",
    "with_direction",
]

#: Encoding name of RFC 4733 events.
TELEPHONE_EVENT: Final = "telephone-event"
#: Dynamic payload type we offer telephone-event on (the de-facto common choice).
DEFAULT_DTMF_PAYLOAD_TYPE: Final = 101
#: Events we offer: the 16 DTMF keys (RFC 4733 3.2).
DEFAULT_DTMF_EVENTS: Final = "0-15"
_DEFAULT_PTIME: Final = 20


class CodecSpec(Protocol):
    """What negotiation needs of a codec; ``telephony.media`` codecs satisfy it as well."""

    @property
    def name(self) -> str: ...

    @property
    def payload_type(self) -> int: ...

    @property
    def clock_rate(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Codec:
    """An audio codec we can negotiate."""

    #: Encoding name as in a=rtpmap ("PCMU").
    name: str
    #: Payload type used when we make the offer (static ones are fixed by RFC 3551).
    payload_type: int
    #: RTP clock rate in Hz.
    clock_rate: int = 8000


PCMU: Final = Codec("PCMU", 0)
PCMA: Final = Codec("PCMA", 8)


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of offer/answer for one leg's audio stream."""

    #: Where to send RTP (the peer's c= address; 0.0.0.0 on an old-style hold).
    remote_addr: str
    #: The peer's RTP port (RTCP is port + 1 unless a=rtcp says otherwise).
    remote_port: int
    #: Payload type of the chosen codec, as numbered by the peer.
    payload_type: int
    #: Encoding name of the chosen codec ("PCMU").
    codec_name: str
    #: RTP clock rate of the chosen codec.
    clock_rate: int
    #: Payload type of telephone-event, or None when RFC 4733 DTMF was not agreed.
    dtmf_payload_type: int | None
    #: Our direction for this stream, as written in our SDP.
    direction: Direction
    #: The peer's direction for this stream, as written in its SDP.
    remote_direction: Direction
    #: Packet time the peer wants to receive, in ms (a=ptime, else 20).
    ptime: int
    #: Index of the m= section in the description.
    media_index: int

    @property
    def sends(self) -> bool:
        """We should send RTP to the peer."""
        return self.direction.sends and not self.remote_on_null_address

    @property
    def receives(self) -> bool:
        """We expect RTP from the peer."""
        return self.direction.receives

    @property
    def remote_on_null_address(self) -> bool:
        return self.remote_addr in ("0.0.0.0", "::")

    @property
    def on_hold(self) -> bool:
        """The peer put the stream on hold (sendonly/inactive, or c=0.0.0.0)."""
        return not self.remote_direction.receives or self.remote_on_null_address


@dataclass(frozen=True, slots=True)
class Answer:
    """What :func:`negotiate` returns: the SDP to send back and what it agreed."""

    #: Our answer, one m= line per offered one.
    sdp: SessionDescription
    #: The accepted audio stream; None when the offer disabled every stream (all ports 0).
    media: NegotiatedMedia | None


def answer_direction(offered: Direction, local: Direction = Direction.SENDRECV) -> Direction:
    """Direction for an answer (RFC 3264 6.1), given what we would like (``local``).

    sendonly is answered recvonly, recvonly sendonly, inactive inactive; sendrecv gets ``local``.
    """
    return Direction.from_flags(
        sends=offered.receives and local.sends, receives=offered.sends and local.receives
    )


def is_hold(sd: SessionDescription) -> bool:
    """The description puts its first audio stream on hold (sendonly/inactive or c=0.0.0.0)."""
    m = sd.first_audio()
    if m is None:
        return False
    conn = sd.connection_for(m)
    return not sd.direction_for(m).receives or (conn is not None and conn.is_null)


def _addrtype(addr: str) -> str:
    return "IP6" if ":" in addr else "IP4"


def _session(
    local_addr: str, session_id: int, version: int, name: str, media: list[MediaDescription]
) -> SessionDescription:
    addrtype = _addrtype(local_addr)
    return SessionDescription(
        origin=Origin("-", session_id, version, "IN", addrtype, local_addr),
        session_name=name,
        connection=Connection(local_addr, addrtype),
        timing=Timing(0, 0),
        media=media,
    )


def _pick(m: MediaDescription, supported: Sequence[CodecSpec]) -> tuple[int, RtpMap] | None:
    """First payload type of the offer (offerer's preference) naming a supported codec."""
    for pt in m.formats:
        enc = m.encoding(pt)
        if enc is None or enc.channels not in (None, 1):
            continue
        for codec in supported:
            if enc.encoding.lower() == codec.name.lower() and enc.clock_rate == codec.clock_rate:
                return pt, enc
    return None


def plain_rtp(m: MediaDescription) -> bool:
    """The default stream filter of :func:`negotiate`: plain RTP (RTP/AVP)."""
    return m.proto.upper() == "RTP/AVP"


def negotiate(
    offer: SessionDescription,
    supported: Sequence[CodecSpec],
    *,
    local_addr: str,
    local_port: int,
    session_id: int,
    session_version: int | None = None,
    direction: Direction = Direction.SENDRECV,
    dtmf: bool = True,
    ptime: int = _DEFAULT_PTIME,
    session_name: str = "-",
    usable: Callable[[MediaDescription], bool] = plain_rtp,
) -> Answer:
    """Answer an offer (RFC 3264 6).

    The first audio stream that ``usable`` takes (RTP/AVP by default; SRTP policies also take
    RTP/SAVP with keys they can use) with a supported codec is accepted on ``local_port``, in
    the offered profile; every other stream is rejected with port 0. ``direction`` is what we
    would like (sendrecv, or sendonly while we hold the peer). Within one dialog keep
    ``session_id`` and pass a ``session_version`` that grows whenever the answer changes (it
    defaults to ``session_id``, fine for a first answer).

    Raises :class:`NoCommonCodec` (488) when some stream is offered but no audio stream matches
    (an offer that disables every stream gets an all-port-0 answer and ``media`` None), and
    :class:`SdpParseError` (400) when the accepted stream has no connection address.
    """
    media: list[MediaDescription] = []
    agreed: NegotiatedMedia | None = None
    offered_active = False
    for index, m in enumerate(offer.media):
        is_audio = m.kind == "audio" and m.port != 0
        offered_active = offered_active or m.port != 0
        picked = None
        if agreed is None and is_audio and usable(m):
            picked = _pick(m, supported)
        if picked is None:
            media.append(_rejected(m))
            continue
        pt, enc = picked
        conn = offer.connection_for(m)
        if conn is None:
            raise SdpParseError(f"m= line {index} has no c= address")
        _check_address(conn)
        dte = m.find_format(TELEPHONE_EVENT, enc.clock_rate) if dtmf else None
        remote_direction = offer.direction_for(m)
        ours = answer_direction(remote_direction, direction)
        accepted = MediaDescription(
            kind="audio",
            port=local_port,
            proto=m.proto,
            formats=[pt] if dte is None else [pt, dte],
            rtpmap={pt: RtpMap(enc.encoding, enc.clock_rate)},
            ptime=ptime,
            direction=ours,
        )
        if dte is not None:
            accepted.rtpmap[dte] = RtpMap(TELEPHONE_EVENT, enc.clock_rate)
            accepted.fmtp[dte] = m.fmtp.get(dte, DEFAULT_DTMF_EVENTS)
        media.append(accepted)
        agreed = NegotiatedMedia(
            remote_addr=conn.address,
            remote_port=m.port,
            payload_type=pt,
            codec_name=enc.encoding,
            clock_rate=enc.clock_rate,
            dtmf_payload_type=dte,
            direction=ours,
            remote_direction=remote_direction,
            ptime=m.ptime or _DEFAULT_PTIME,
            media_index=index,
        )
    if agreed is None and offered_active:
        offered = [f"{m.kind}:{m.encoding(pt) or pt}" for m in offer.media for pt in m.formats]
        offered += [f"{m.kind}:{tok}" for m in offer.media for tok in m.format_tokens]
        raise NoCommonCodec(f"no supported codec among offered {offered}")
    version = session_id if session_version is None else session_version
    answer = _session(local_addr, session_id, version, session_name, media)
    logger.debug("SDP answer agreed %s", agreed)
    return Answer(answer, agreed)


def _rejected(m: MediaDescription) -> MediaDescription:
    # RFC 3264 6: same media type and formats as offered, port 0.
    return MediaDescription(
        kind=m.kind,
        port=0,
        proto=m.proto,
        formats=list(m.formats),
        format_tokens=list(m.format_tokens),
    )


def create_offer(
    codecs: Sequence[CodecSpec],
    *,
    local_addr: str,
    port: int,
    session_id: int,
    version: int = 0,
    direction: Direction = Direction.SENDRECV,
    dtmf_payload_type: int | None = DEFAULT_DTMF_PAYLOAD_TYPE,
    ptime: int = _DEFAULT_PTIME,
    session_name: str = "-",
    proto: str = "RTP/AVP",
) -> SessionDescription:
    """An offer with one audio stream listing ``codecs`` in order, plus telephone-event, in
    the ``proto`` profile (RTP/SAVP for SRTP: the caller adds its a=crypto lines).

    For a re-offer in the same dialog keep ``session_id`` and pass a higher ``version``
    (or call :meth:`SessionDescription.with_next_version` on the previous offer).
    """
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    m = MediaDescription(kind="audio", port=port, proto=proto, ptime=ptime, direction=direction)
    for codec in codecs:
        m.formats.append(codec.payload_type)
        m.rtpmap[codec.payload_type] = RtpMap(codec.name, codec.clock_rate)
    if dtmf_payload_type is not None:
        m.formats.append(dtmf_payload_type)
        m.rtpmap[dtmf_payload_type] = RtpMap(TELEPHONE_EVENT, codecs[0].clock_rate)
        m.fmtp[dtmf_payload_type] = DEFAULT_DTMF_EVENTS
    return _session(local_addr, session_id, version, session_name, [m])


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia | None:
    """What an answer to our ``offer`` agreed for the first audio stream (RFC 3264 7).

    Returns None when the answerer rejected every audio stream (port 0) and raises
    :class:`NoCommonCodec` when the answer names no codec we offered.
    """
    for index, (om, am) in enumerate(zip(offer.media, answer.media, strict=False)):
        if om.kind != "audio" or am.kind != "audio" or am.port == 0 or om.port == 0:
            continue
        chosen: tuple[int, RtpMap] | None = None
        events: list[tuple[int, RtpMap]] = []
        for pt in am.formats:
            # An answer may omit rtpmap for a dynamic type it took from the offer.
            enc = am.encoding(pt) or om.encoding(pt)
            if enc is None or om.find_format(enc.encoding, enc.clock_rate) is None:
                continue
            if enc.encoding.lower() == TELEPHONE_EVENT:
                events.append((pt, enc))
            elif chosen is None and enc.encoding.upper() != "CN":
                chosen = (pt, enc)
        if chosen is None:
            raise NoCommonCodec(f"answer lists none of our codecs: {am.formats}")
        conn = answer.connection_for(am)
        if conn is None:
            raise SdpParseError(f"answer m= line {index} has no c= address")
        _check_address(conn)
        pt, enc = chosen
        dte = next((e_pt for e_pt, e in events if e.clock_rate == enc.clock_rate), None)
        remote_direction = answer.direction_for(am)
        offered = offer.direction_for(om)
        ours = Direction.from_flags(
            sends=offered.sends and remote_direction.receives,
            receives=offered.receives and remote_direction.sends,
        )
        return NegotiatedMedia(
            remote_addr=conn.address,
            remote_port=am.port,
            payload_type=pt,
            codec_name=enc.encoding,
            clock_rate=enc.clock_rate,
            dtmf_payload_type=dte,
            direction=ours,
            remote_direction=remote_direction,
            ptime=am.ptime or _DEFAULT_PTIME,
            media_index=index,
        )
    return None


def with_direction(sd: SessionDescription, direction: Direction) -> SessionDescription:
    """A re-offer of ``sd`` with every active audio stream set to ``direction``, version + 1.

    Hold is ``with_direction(last_offer, Direction.SENDONLY)`` (RFC 3264 8.4), resume is
    ``Direction.SENDRECV``.
    """
    new = sd.with_next_version()
    for m in new.media:
        if m.kind == "audio" and m.port != 0:
            m.direction = direction
    return new


def _check_address(conn: Connection) -> None:
    """The media address must be an IP literal of its c= address type: RFC 4566 allows a host
    name there, but media is never sent after a DNS lookup on what a peer wrote (it would block
    the media path and send packets wherever the name resolves)."""
    try:
        address = ipaddress.ip_address(conn.address)
    except ValueError:
        raise SdpParseError(f"c= address is not an IP address: {conn.address[:40]!r}") from None
    if conn.nettype.upper() != "IN" or conn.addrtype.upper() != f"IP{address.version}":
        raise SdpParseError(f"c= {conn.nettype} {conn.addrtype} does not match {address}")
