"""Sans-IO SIP: messages, URIs, framing, validation, transactions, dialogs, digest auth."""

from __future__ import annotations

from .dialog import Dialog, DialogRecord, DialogState, bye_from_record
from .digest import (
    AuthResult,
    Challenge,
    Credentials,
    DigestConfig,
    DigestError,
    DigestServer,
    NonceManager,
    build_authorization,
    choose_challenge,
    parse_challenge,
    parse_credentials,
)
from .errors import (
    LocalProtocolError,
    ParseError,
    RemoteProtocolError,
    SipError,
    VersionNotSupported,
)
from .framing import StreamFramer
from .headers import COMPACT_FORMS, Headers, canonical_name, split_list
from .message import (
    REASON_PHRASES,
    CSeq,
    SipMessage,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    reason_phrase,
    response_to_unparsable,
)
from .overload import OverloadConfig, OverloadControl, OverloadLevel, looks_like_new_invite
from .timers import TimerConfig
from .transaction import (
    RequestReceived,
    ResponseReceived,
    Transaction,
    TransactionEvent,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    new_branch,
)
from .uri import AbsoluteUri, NameAddr, SipUri, Via, format_host, parse_uri
from .validate import check_request

__all__ = [
    "COMPACT_FORMS",
    "REASON_PHRASES",
    "AbsoluteUri",
    "AuthResult",
    "CSeq",
    "Challenge",
    "Credentials",
    "Dialog",
    "DialogRecord",
    "DialogState",
    "DigestConfig",
    "DigestError",
    "DigestServer",
    "Headers",
    "LocalProtocolError",
    "NameAddr",
    "NonceManager",
    "OverloadConfig",
    "OverloadControl",
    "OverloadLevel",
    "ParseError",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "SipError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "TimerConfig",
    "Transaction",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "VersionNotSupported",
    "Via",
    "build_authorization",
    "bye_from_record",
    "canonical_name",
    "check_request",
    "choose_challenge",
    "format_host",
    "looks_like_new_invite",
    "make_response",
    "new_branch",
    "parse_challenge",
    "parse_credentials",
    "parse_message",
    "parse_uri",
    "reason_phrase",
    "response_to_unparsable",
    "split_list",
]
