"""Offer/answer for one leg's audio stream (RFC 3264), sans-IO: which codec, which address, on
hold or not. The leg's media session applies what was agreed to its RTP socket; the INVITE
session decides when an offer or an answer is made or taken."""

from __future__ import annotations

import secrets

from telephony.sdp import (
    PCMA,
    PCMU,
    Answer,
    Codec,
    NegotiatedMedia,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    accept_answer,
    create_offer,
    negotiate,
)

from .session import OfferRejected

__all__ = ["SUPPORTED", "TELEPHONE_EVENT_PT", "OfferAnswer", "check_offer"]

#: What the engine speaks, in its own order of preference.
SUPPORTED: dict[str, Codec] = {"PCMU": PCMU, "PCMA": PCMA}
#: Payload type of telephone-event (RFC 4733) in our offers.
TELEPHONE_EVENT_PT = 101


_NO_AUDIO = (304, "Media type not available")
_NO_CODEC = (305, "Incompatible media format")
_MALFORMED = (399, "Malformed session description")


def _answer(
    body: bytes, codecs: list[Codec], *, local_host: str, port: int, session_id: int, version: int
) -> Answer:
    try:
        offer = SessionDescription.parse(body)
        answer = negotiate(
            offer,
            codecs,
            local_addr=local_host,
            local_port=port,
            session_id=session_id,
            session_version=version,
        )
    except NoCommonCodec as exc:
        raise OfferRejected(str(exc), warning=_NO_CODEC) from exc
    except SdpError as exc:
        raise OfferRejected(str(exc), warning=_MALFORMED) from exc
    if answer.media is None:
        raise OfferRejected("no acceptable audio stream in the offer", warning=_NO_AUDIO)
    return answer


def check_offer(body: bytes, *, codecs: list[str] | None = None) -> None:
    """Raise OfferRejected unless an answer to this offer would carry one of `codecs` (all we
    speak by default): the SDP parses and offers an audio stream we can take."""
    _answer(
        body, OfferAnswer.codecs(codecs), local_host="127.0.0.1", port=9, session_id=0, version=0
    )


class OfferAnswer:
    """The SDP state of one leg: our last offer or answer, and what was agreed."""

    def __init__(self, *, local_host: str, local_port: int) -> None:
        self.local_host = local_host
        self.local_port = local_port
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

    def make_offer(self, *, codecs: list[str] | None = None) -> bytes:
        self._version += 1
        self._local = self._offer = create_offer(
            self.codecs(codecs),
            local_addr=self.local_host,
            port=self.local_port,
            session_id=self._session_id,
            version=self._version,
            dtmf_payload_type=TELEPHONE_EVENT_PT,
        )
        return bytes(self._local)

    def accept_offer(self, body: bytes, *, codecs: list[str] | None = None) -> None:
        """Answer the far end's offer (initial INVITE or re-INVITE) with one of `codecs`;
        raises OfferRejected (488) when nothing in it is acceptable."""
        answer = _answer(
            body,
            self.codecs(codecs),
            local_host=self.local_host,
            port=self.local_port,
            session_id=self._session_id,
            version=self._version + 1,
        )
        assert answer.media is not None
        self._version += 1
        self._local = answer.sdp
        self._agree(answer.media)

    def accept_answer(self, body: bytes) -> None:
        """The far end's answer to our last offer; raises OfferRejected."""
        if self._offer is None:
            raise OfferRejected("an answer without our offer")
        try:
            agreed = accept_answer(self._offer, SessionDescription.parse(body))
        except SdpError as exc:
            raise OfferRejected(str(exc)) from exc
        if agreed is None:
            raise OfferRejected("answer rejected the audio stream")
        self._agree(agreed)

    def _agree(self, agreed: NegotiatedMedia) -> None:
        self.codec_name, self.codec_pt = agreed.codec_name.upper(), agreed.payload_type
        self.remote_dte_pt = agreed.dtmf_payload_type
        self.held = agreed.on_hold
        if not agreed.remote_on_null_address and agreed.remote_port:
            self.remote = (agreed.remote_addr, agreed.remote_port)

    def local_sdp(self) -> bytes:
        if self._local is None:
            raise OfferRejected("no local description yet")
        return bytes(self._local)
