"""Golden conformance inputs: RFC 4475 torture tests and PROTOS c07-sip samples.

Shared by the message-layer tests here and by the UDP end-to-end conformance test.
Data lives in tests/data/ in the repository (provenance and licences: tests/data/NOTICE.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from telephony.aio.endpoint import DEFAULT_METHODS, EndpointConfig

CONFORMANCE_DIR = Path(__file__).resolve().parents[2] / "data"
RFC4475_DIR = CONFORMANCE_DIR / "rfc4475"
PROTOS_DIR = CONFORMANCE_DIR / "protos" / "sample"

#: The engine as configured: the methods its endpoint implements and the option tags it supports
#: (a test compares these with what `callcenter serve` builds, so the tables cannot drift).
ALLOWED_METHODS = DEFAULT_METHODS
SUPPORTED = EndpointConfig().supported

# What a UAS endpoint answers to each RFC 4475 file at the SIP message layer:
#   int  -> that status (from parse_message + response_to_unparsable, or check_request);
#   None -> stay silent (responses, or too broken to answer);
#   str  -> the request passes the message layer and is handled as this method by the
#           registrar / B2BUA (OPTIONS -> 200, REGISTER without auth -> 401, INVITE without
#           auth -> 407, REGISTER whose To is not a SIP AOR (unksm2) -> 400 ...).
RFC4475_EXPECTED: dict[str, int | str | None] = {
    # 3.1.1 valid messages
    "wsinv.dat": "INVITE",
    "intmeth.dat": 501,
    "esc01.dat": "INVITE",
    "escnull.dat": "REGISTER",
    "esc02.dat": 501,
    "lwsdisp.dat": "OPTIONS",
    "longreq.dat": "INVITE",
    "dblreq.dat": "REGISTER",
    "semiuri.dat": "OPTIONS",
    "transports.dat": "OPTIONS",
    "mpart01.dat": 501,  # MESSAGE is not implemented here
    "unreason.dat": None,  # a response: no transaction, dropped
    "noreason.dat": None,
    # 3.1.2 invalid messages
    "badinv01.dat": 400,
    "clerr.dat": 400,
    "ncl.dat": 400,
    "scalar02.dat": 400,
    "scalarlg.dat": None,
    "quotbal.dat": 400,
    "ltgtruri.dat": 400,
    "lwsruri.dat": 400,
    "lwsstart.dat": 400,
    "trws.dat": 400,
    "escruri.dat": 400,
    "baddate.dat": "INVITE",  # Date is not used, so not checked
    "regbadct.dat": 400,
    "badaspec.dat": 400,
    "baddn.dat": 400,
    "badvers.dat": 505,
    "mismatch01.dat": 400,
    "mismatch02.dat": 501,
    "bigcode.dat": None,
    # 3.2 transaction layer
    "badbranch.dat": "OPTIONS",
    # 3.3 application layer
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "unksm2.dat": "REGISTER",  # registrar must answer 400: To is not a SIP/SIPS AOR
    "bext01.dat": 420,
    "invut.dat": 415,
    "regaut01.dat": "REGISTER",
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "bcast.dat": None,
    "zeromf.dat": "OPTIONS",  # an endpoint processes Max-Forwards: 0
    "cparam01.dat": "REGISTER",
    "cparam02.dat": "REGISTER",
    "regescrt.dat": "REGISTER",
    "sdp01.dat": 406,
    # 3.4 backward compatibility
    "inv2543.dat": "INVITE",
    # not described by the RFC: request line without SIP-Version -> unanswerable
    "test.dat": None,
}


def read_index() -> list[dict[str, str]]:
    lines = (RFC4475_DIR / "index.tsv").read_text(encoding="utf-8").splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[1:] if line]


def sha256sums() -> dict[str, str]:
    """name -> expected SHA-256 from SHA256SUMS (names relative to rfc4475/)."""
    out: dict[str, str] = {}
    for line in (RFC4475_DIR / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rfc4475_cases() -> list[tuple[str, bytes, int | str | None]]:
    """(file name, exact bytes, expected) for the 50 RFC 4475 files; see RFC4475_EXPECTED."""
    return [
        (name, (RFC4475_DIR / name).read_bytes(), expected)
        for name, expected in sorted(RFC4475_EXPECTED.items())
    ]


def _split_pdus(raw: bytes) -> list[bytes]:
    # Each PROTOS case is "<decimal length> <PDU>" repeated (INVITE, then teardown).
    pdus: list[bytes] = []
    pos = 0
    while pos < len(raw):
        space = raw.index(b" ", pos)
        length = int(raw[pos:space])
        start = space + 1
        pdus.append(raw[start : start + length])
        pos = start + length
    return pdus


def protos_substitute(
    pdu: bytes,
    case: str,
    *,
    to: str = "101@127.0.0.1",
    from_: str = "protos@127.0.0.1",
    from_address: str = "127.0.0.1",
    local_port: int = 5099,
    teardown_method: str = "CANCEL",
) -> bytes:
    """Replace the PROTOS placeholders; Content-Length is computed last, over the real body."""
    values = {
        b"<To>": to,
        b"<From>": from_,
        b"<From-Address>": from_address,
        b"<From-IP>": from_address,
        b"<Local-Port>": str(local_port),
        b"<Branch-ID>": hashlib.sha1(case.encode()).hexdigest()[:16],
        b"<Call-ID>": f"protos-{case}",
        b"<CSeq>": "1",
        b"<Teardown-Method>": teardown_method,
    }
    for placeholder, value in values.items():
        pdu = pdu.replace(placeholder, value.encode())
    if b"<Content-Length>" in pdu:
        cut = pdu.find(b"\r\n\r\n")
        body = len(pdu) - (cut + 4) if cut >= 0 else 0
        pdu = pdu.replace(b"<Content-Length>", str(body).encode())
    return pdu


def protos_groups() -> dict[str, str]:
    """case name -> PROTOS group (from sample/index.tsv)."""
    lines = (PROTOS_DIR / "index.tsv").read_text().splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines if line}


def _protos_pdus(index: int, **kwargs: Any) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for case in sorted(protos_groups()):
        pdus = _split_pdus((PROTOS_DIR / case).read_bytes())
        if len(pdus) > index:
            out.append((case, protos_substitute(pdus[index], case, **kwargs)))
    return out


def protos_cases(
    *,
    to: str = "101@127.0.0.1",
    from_: str = "protos@127.0.0.1",
    from_address: str = "127.0.0.1",
    local_port: int = 5099,
) -> list[tuple[str, bytes]]:
    """(case name, INVITE bytes) for the PROTOS sample, placeholders substituted.

    ``to`` is the callee (user@host of the Request-URI and To), ``from_address`` and
    ``local_port`` the sender's Via sent-by (use the real source socket for UDP tests).
    """
    return _protos_pdus(0, to=to, from_=from_, from_address=from_address, local_port=local_port)


def protos_teardowns(
    *,
    to: str = "101@127.0.0.1",
    from_: str = "protos@127.0.0.1",
    from_address: str = "127.0.0.1",
    local_port: int = 5099,
    teardown_method: str = "CANCEL",
) -> list[tuple[str, bytes]]:
    """(case name, teardown request bytes: CANCEL by default) for the PROTOS sample."""
    return _protos_pdus(
        1,
        to=to,
        from_=from_,
        from_address=from_address,
        local_port=local_port,
        teardown_method=teardown_method,
    )
