"""Offer/answer for one leg's audio stream (RFC 3264), sans-IO: which codec, which address, on
hold or not, and SRTP keys by SDES (RFC 4568). The leg's media session applies what was agreed
to its RTP socket; the INVITE session decides when an offer or an answer is made or taken.

SRTP policy per leg (Asterisk's `media_encryption` and `media_encryption_optimistic` are the
model):

- ``off``: we offer RTP/AVP without keys; an offer's RTP/AVP stream is answered in plain RTP
  (its a=crypto lines ignored), an RTP/SAVP-only offer gets 488.
- ``optional``: we offer RTP/AVP *with* a=crypto (best-effort SRTP, as baresip's `mediaenc srtp`
  and Asterisk's optimistic mode do): a peer that answers with a key gets SRTP, one that ignores
  the keys plain RTP. An offer is answered in SRTP when it carries a key we can use (RTP/SAVP,
  or RTP/AVP with a=crypto), else in plain RTP.
- ``required``: we offer RTP/SAVP with a=crypto; an offer without a usable key gets 488 (Warning
  302), an answer without one fails the call.

We offer AES_CM_128_HMAC_SHA1_80 (tag 1) and AES_CM_128_HMAC_SHA1_32 (tag 2), each with its own
key, and answer with the first offered line we can use, our key for that suite.

WebRTC (a browser's UDP/TLS/RTP/SAVPF stream with ICE credentials and a DTLS fingerprint,
telephony.sdp.webrtc) is answered under any policy when the leg has `ice` (our ICE credentials
and certificate fingerprint): the keys come from the DTLS handshake on the media path, not from
SDP, so `keys` stays None and `dtls` says what the far end's DTLS endpoint is. The policy
``dtls`` makes our own offers WebRTC ones (a leg to a browser phone).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final, Literal, get_args

from telephony.sdp import (
    PCMA,
    PCMU,
    Answer,
    Attribute,
    Codec,
    MediaDescription,
    NegotiatedMedia,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    accept_answer,
    create_offer,
    negotiate,
)
from telephony.sdp.crypto import SUITES, CryptoAttribute, SrtpError, SrtpKeys, new_master_key
from telephony.sdp.webrtc import (
    LocalIce,
    RemoteDtls,
    answer_attributes,
    is_dtls,
    offer_attributes,
    remote_dtls,
)

from .session import OfferRejected

__all__ = [
    "LEG_POLICIES",
    "SRTP_POLICIES",
    "SUPPORTED",
    "TELEPHONE_EVENT_PT",
    "OfferAnswer",
    "SrtpPolicy",
    "check_offer",
]

SrtpPolicy = Literal["off", "optional", "required"]
SRTP_POLICIES: Final[tuple[str, ...]] = get_args(SrtpPolicy)
"""What accounts and trunks choose from."""
LEG_POLICIES: Final[tuple[str, ...]] = (*SRTP_POLICIES, "dtls")
"""What a leg may have: also ``dtls``, which the user agent gives a leg to a browser phone
(registered over WebSocket): WebRTC offers, DTLS-SRTP."""

#: What the engine speaks, in its own order of preference.
SUPPORTED: dict[str, Codec] = {"PCMU": PCMU, "PCMA": PCMA}
#: Payload type of telephone-event (RFC 4733) in our offers.
TELEPHONE_EVENT_PT = 101


_NO_AUDIO = (304, "Media type not available")
_NO_CODEC = (305, "Incompatible media format")
_MALFORMED = (399, "Malformed session description")
_NO_SRTP = (302, "Incompatible transport protocol")


def _usable_crypto(m: MediaDescription) -> CryptoAttribute | None:
    """The first a=crypto line of a stream we can use (RFC 4568 7.1.1: the offerer's order)."""
    for attr in m.attributes:
        if attr.name == "crypto" and attr.value is not None:
            try:
                return CryptoAttribute.parse(attr.value)
            except SrtpError:
                continue
    return None


def _stream_filter(
    policy: str, offer: SessionDescription | None = None
) -> Callable[[MediaDescription], bool]:
    """Which offered streams `policy` may accept (telephony.sdp.negotiate's `usable`); with
    the `offer`, also DTLS-SRTP streams whose ICE and fingerprint are usable."""
    if policy == "dtls":
        policy = "optional"  # a WebRTC leg's SDES or plain offer: as best-effort SRTP

    def usable(m: MediaDescription) -> bool:
        if offer is not None and is_dtls(m):
            try:
                remote_dtls(offer, m)
            except SdpError:
                return False
            return True
        proto = m.proto.upper()
        if proto not in ("RTP/AVP", "RTP/SAVP"):
            return False
        if policy == "off":
            return proto == "RTP/AVP"
        if policy == "optional" and proto == "RTP/AVP":
            return True
        return _usable_crypto(m) is not None

    return usable


def _answer(
    body: bytes,
    codecs: list[Codec],
    *,
    local_host: str,
    port: int,
    session_id: int,
    version: int,
    srtp: str = "off",
    webrtc: bool = True,
) -> tuple[Answer, SessionDescription]:
    def attempt(policy: str) -> Answer:
        return negotiate(
            offer,
            codecs,
            local_addr=local_host,
            local_port=port,
            session_id=session_id,
            session_version=version,
            usable=_stream_filter(policy, offer if webrtc else None),
        )

    try:
        offer = SessionDescription.parse(body)
        answer = attempt(srtp)
    except NoCommonCodec as exc:
        if srtp != "optional" and _codecs_would_do(attempt):
            # The codecs would do; the stream's protection would not.
            reason = "SRTP required" if srtp == "required" else "SRTP not enabled"
            raise OfferRejected(f"{reason}: no acceptable audio stream", warning=_NO_SRTP) from exc
        raise OfferRejected(str(exc), warning=_NO_CODEC) from exc
    except SdpError as exc:
        raise OfferRejected(str(exc), warning=_MALFORMED) from exc
    if answer.media is None:
        raise OfferRejected("no acceptable audio stream in the offer", warning=_NO_AUDIO)
    return answer, offer


def _codecs_would_do(attempt: Callable[[str], Answer]) -> bool:
    """Whether the offer would be answered under the `optional` policy (plain or SRTP)."""
    try:
        return attempt("optional").media is not None
    except SdpError:
        return False


def check_offer(body: bytes, *, codecs: list[str] | None = None, srtp: str = "optional") -> None:
    """Raise OfferRejected unless an answer to this offer would carry one of `codecs` (all we
    speak by default): the SDP parses and offers an audio stream we can take under the SRTP
    policy `srtp` (by default any: plain RTP or SRTP with usable keys)."""
    _answer(
        body,
        OfferAnswer.codecs(codecs),
        local_host="127.0.0.1",
        port=9,
        session_id=0,
        version=0,
        srtp=srtp,
    )


class OfferAnswer:
    """The SDP state of one leg: our last offer or answer, and what was agreed."""

    def __init__(
        self, *, local_host: str, local_port: int, srtp: str = "off", ice: LocalIce | None = None
    ) -> None:
        if srtp not in LEG_POLICIES:
            raise ValueError(f"srtp must be one of {', '.join(LEG_POLICIES)}, not {srtp!r}")
        self.local_host = local_host
        self.local_port = local_port
        self.srtp = srtp
        """The leg's SRTP policy: off, optional or required (see the module docstring)."""
        self.keys: SrtpKeys | None = None
        """What SDES agreed (None: plain RTP, or DTLS-SRTP whose keys the handshake makes)."""
        self.ice = ice
        """Our ICE credentials and DTLS fingerprint: None, no WebRTC on this leg."""
        self.dtls: RemoteDtls | None = None
        """The far end's ICE and DTLS parameters once a WebRTC stream is agreed."""
        self._crypto: list[CryptoAttribute] = []
        """Our a=crypto lines, one key per suite, made once per leg and kept across re-offers
        (a new key would restart the SRTP indices under the same stream)."""
        self.codec_name = "PCMU"
        self.codec_pt = 0
        self.remote_dte_pt: int | None = None
        """Payload type of telephone-event in the far end's SDP (what it sends and expects)."""
        self.held = False
        """The far end's last description put the stream on hold (sendonly/inactive/0.0.0.0)."""
        self.remote: tuple[str, int] | None = None
        """Where the far end wants our RTP (None while on a null address or port 0)."""
        self._session_id = secrets.randbelow(2**31)
        self._version = 0
        self._local: SessionDescription | None = None
        self._offer: SessionDescription | None = None

    @staticmethod
    def codecs(names: list[str] | None) -> list[Codec]:
        return [SUPPORTED[n] for n in (names or list(SUPPORTED)) if n in SUPPORTED]

    def _our_crypto(self) -> list[CryptoAttribute]:
        if not self._crypto:
            self._crypto = [
                CryptoAttribute(tag, suite, new_master_key())
                for tag, suite in enumerate(SUITES, start=1)
            ]
        return self._crypto

    def make_offer(self, *, codecs: list[str] | None = None) -> bytes:
        self._version += 1
        self._local = self._offer = create_offer(
            self.codecs(codecs),
            local_addr=self.local_host,
            port=self.local_port,
            session_id=self._session_id,
            version=self._version,
            dtmf_payload_type=TELEPHONE_EVENT_PT,
            proto="RTP/SAVP" if self.srtp == "required" else "RTP/AVP",
        )
        if self.srtp == "dtls" or self.dtls is not None:
            if self.ice is None:
                raise OfferRejected("a WebRTC offer needs the leg's ICE credentials")
            offer_attributes(self._local, self._local.media[0], self.ice)
        elif self.srtp != "off":
            offered = self._our_crypto()
            if self.keys is not None:
                # A re-offer keeps to the suite agreed (RFC 4568 7.1.4 allows a change; we
                # never need one).
                offered = [c for c in offered if c.suite == self.keys.suite]
            self._local.media[0].attributes.extend(Attribute("crypto", c.value()) for c in offered)
        return bytes(self._local)

    def accept_offer(self, body: bytes, *, codecs: list[str] | None = None) -> None:
        """Answer the far end's offer (initial INVITE or re-INVITE) with one of `codecs`;
        raises OfferRejected (488) when nothing in it is acceptable."""
        answer, offer = _answer(
            body,
            self.codecs(codecs),
            local_host=self.local_host,
            port=self.local_port,
            session_id=self._session_id,
            version=self._version + 1,
            srtp=self.srtp,
            webrtc=self.ice is not None,
        )
        assert answer.media is not None
        keys = None
        offered = offer.media[answer.media.media_index]
        if is_dtls(offered):
            assert self.ice is not None
            remote = remote_dtls(offer, offered)
            answer_attributes(
                answer.sdp, answer.sdp.media[answer.media.media_index], self.ice, remote
            )
            self._version += 1
            self._local = answer.sdp
            self.keys = None
            self.dtls = remote
            self._agree(answer.media)
            return
        if self.srtp != "off":
            theirs = _usable_crypto(offer.media[answer.media.media_index])
            if theirs is not None:
                ours = next(c for c in self._our_crypto() if c.suite == theirs.suite)
                line = CryptoAttribute(theirs.tag, ours.suite, ours.key)
                answer.sdp.media[answer.media.media_index].attributes.append(
                    Attribute("crypto", line.value())
                )
                keys = SrtpKeys(ours.suite, local=ours.key, remote=theirs.key)
        self._version += 1
        self._local = answer.sdp
        self.keys = keys
        self._agree(answer.media)

    def accept_answer(self, body: bytes) -> None:
        """The far end's answer to our last offer; raises OfferRejected."""
        if self._offer is None:
            raise OfferRejected("an answer without our offer")
        try:
            sdp = SessionDescription.parse(body)
            agreed = accept_answer(self._offer, sdp)
        except SdpError as exc:
            raise OfferRejected(str(exc)) from exc
        if agreed is None:
            raise OfferRejected("answer rejected the audio stream")
        keys = None
        answered = sdp.media[agreed.media_index]
        if self.srtp == "dtls" or self.dtls is not None:
            if not is_dtls(answered):
                raise OfferRejected("our WebRTC offer was answered without DTLS-SRTP")
            try:
                self.dtls = remote_dtls(sdp, answered)
            except SdpError as exc:
                raise OfferRejected(str(exc)) from exc
            self.keys = None
            self._agree(agreed)
            return
        if self.srtp != "off":
            theirs = _usable_crypto(answered)
            ours = next((c for c in self._our_crypto() if theirs and c.tag == theirs.tag), None)
            if theirs is not None and ours is not None and ours.suite == theirs.suite:
                keys = SrtpKeys(ours.suite, local=ours.key, remote=theirs.key)
            elif self.srtp == "required":
                raise OfferRejected("SRTP required: the answer has no key for our offer")
        elif sdp.media[agreed.media_index].proto.upper() == "RTP/SAVP":
            raise OfferRejected("the answer switched our plain RTP offer to RTP/SAVP")
        self.keys = keys
        self._agree(agreed)

    def _agree(self, agreed: NegotiatedMedia) -> None:
        self.codec_name, self.codec_pt = agreed.codec_name.upper(), agreed.payload_type
        self.remote_dte_pt = agreed.dtmf_payload_type
        if self.dtls is not None:
            # ICE finds the address (c= is only a default, often 0.0.0.0 port 9, kept in
            # `remote` for reference): on hold is what the direction says.
            self.held = not agreed.remote_direction.receives
        else:
            self.held = agreed.on_hold
        if not agreed.remote_on_null_address and agreed.remote_port:
            self.remote = (agreed.remote_addr, agreed.remote_port)

    def local_sdp(self) -> bytes:
        if self._local is None:
            raise OfferRejected("no local description yet")
        return bytes(self._local)
