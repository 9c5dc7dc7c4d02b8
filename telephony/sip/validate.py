"""UAS request inspection, RFC 3261 8.2 and RFC 4475 section 3.3.

:func:`check_request` raises a :class:`RemoteProtocolError` carrying the status code and
the extra headers of the response to send; ``error.partial`` is the request, so
:func:`~telephony.sip.message.response_to_unparsable` builds that response.
"""

from __future__ import annotations

import logging

from .errors import ParseError, RemoteProtocolError
from .message import SipRequest
from .uri import SipUri

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BODY_METHODS", "REQUIRED_HEADERS", "SINGLE_VALUE_HEADERS", "check_request"]

#: RFC 3261 8.1.1: every request carries these (Max-Forwards is tolerated missing: RFC 2543).
REQUIRED_HEADERS = ("To", "From", "Call-ID", "CSeq", "Via")
#: Headers that may appear at most once (RFC 4475 3.3.8 and 3.3.9).
SINGLE_VALUE_HEADERS = ("Call-ID", "To", "From", "CSeq", "Max-Forwards", "Content-Length")
#: Methods whose body we must understand (session descriptions) or refuse with 415.
DEFAULT_BODY_METHODS: frozenset[str] = frozenset({"INVITE", "ACK", "UPDATE", "PRACK"})


def _reject(
    request: SipRequest,
    message: str,
    status: int,
    headers: list[tuple[str, str]] | None = None,
) -> RemoteProtocolError:
    error = RemoteProtocolError(message, status_code=status, headers=headers)
    error.partial = request
    return error


def _accepts(accept_values: list[str], media_type: str) -> bool:
    main = media_type.split("/", 1)[0]
    for item in accept_values:
        offered = item.split(";", 1)[0].strip(" \t").lower()
        if offered in (media_type, "*/*", f"{main}/*"):
            return True
    return False


def check_request(
    req: SipRequest,
    *,
    allowed_methods: frozenset[str],
    supported: frozenset[str] = frozenset(),
    accepted_types: frozenset[str] = frozenset({"application/sdp"}),
    body_methods: frozenset[str] = DEFAULT_BODY_METHODS,
) -> None:
    """Raise RemoteProtocolError (400/416/420/415/406/501...) if a UAS must refuse ``req``.

    Order follows RFC 3261 8.2: well-formedness, method (501 with Allow, preferred over a
    CSeq mismatch per RFC 4475 3.1.2.18), Request-URI scheme (416), Require (420 with
    Unsupported), body type (415 with Accept) and Accept (406). ACK must never be answered;
    the caller checks ACKs only to decide whether to drop them.
    """
    h = req.headers
    for name in REQUIRED_HEADERS:
        if name not in h:
            raise _reject(req, f"missing {name} header", 400)
    for name in SINGLE_VALUE_HEADERS:
        if h.count(name) > 1:
            raise _reject(req, f"several {name} headers", 400)
    try:
        cseq = req.cseq
        req.call_id  # noqa: B018
        req.from_  # noqa: B018
        req.to  # noqa: B018
        req.vias  # noqa: B018
        req.max_forwards  # noqa: B018
    except ParseError as exc:
        exc.partial = req
        raise

    if req.method not in allowed_methods:
        allow = ", ".join(sorted(allowed_methods))
        raise _reject(req, f"method {req.method[:40]!r} not implemented", 501, [("Allow", allow)])
    if cseq.method != req.method:
        raise _reject(req, "CSeq method does not match the request method", 400)

    if not isinstance(req.uri, SipUri):
        raise _reject(req, f"unsupported Request-URI scheme {req.uri.scheme[:40]!r}", 416)
    if req.uri.headers:
        # RFC 4475 3.1.2.11: headers in a Request-URI are meaningless; refusing is safest.
        raise _reject(req, "Request-URI carries escaped headers", 400)

    if req.method not in ("ACK", "CANCEL"):
        required = [t for t in h.get_all("Require") if t]
        known = {t.lower() for t in supported}
        unsupported = [t for t in required if t.lower() not in known]
        if unsupported:
            raise _reject(
                req,
                "unsupported extension required",
                420,
                [("Unsupported", ", ".join(unsupported))],
            )

    if req.method in body_methods:
        accept_header = ", ".join(sorted(accepted_types))
        if req.body:
            content_type = req.content_type
            if content_type is None:
                raise _reject(req, "body without Content-Type", 400)
            if content_type not in accepted_types:
                raise _reject(
                    req,
                    f"unsupported Content-Type {content_type[:60]!r}",
                    415,
                    [("Accept", accept_header)],
                )
            encodings = [e.lower() for e in h.get_all("Content-Encoding") if e]
            if any(e != "identity" for e in encodings):
                raise _reject(
                    req, "unsupported Content-Encoding", 415, [("Accept-Encoding", "identity")]
                )
        if req.method == "INVITE" and "Accept" in h:
            accept = h.get_all("Accept")
            if not any(_accepts(accept, t) for t in accepted_types):
                raise _reject(
                    req,
                    "Accept excludes every type we can answer with",
                    406,
                    [("Accept", accept_header)],
                )
