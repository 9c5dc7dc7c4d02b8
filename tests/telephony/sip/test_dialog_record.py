"""A dialog kept as a DialogRecord (a database row) and ended after a restart: the BYE built
from the record alone is the BYE the live dialog would have sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sip import bye_from_record
from telephony.sip.dialog import Dialog, DialogState
from telephony.sip.errors import LocalProtocolError, ParseError
from telephony.sip.message import SipRequest, parse_message
from telephony.sip.uri import NameAddr, SipUri, Via

from .test_dialog import RR, VIA, _peer_request, answer, invite

CONTACT = NameAddr(None, SipUri(host="192.0.2.1", port=5060))


def roundtrip(req: SipRequest) -> SipRequest:
    parsed = parse_message(bytes(req))
    assert isinstance(parsed, SipRequest)
    return parsed


def uas_dialog(record_route: Sequence[str] = ()) -> Dialog:
    req = invite(record_route=list(record_route))
    return Dialog.from_uas(req, answer(req, 200))


def uac_dialog(record_route: Sequence[str] = ()) -> Dialog:
    req = invite(record_route=list(record_route))
    return Dialog.from_uac(req, answer(req, 200))


@pytest.mark.parametrize("make", [uas_dialog, uac_dialog], ids=["uas", "uac"])
@pytest.mark.parametrize(
    "routes",
    [(), RR, ["<sip:strict.example.com;method=INVITE>", "<sip:p2.example.com;lr>"]],
    ids=["direct", "loose", "strict"],
)
def test_bye_from_the_record_is_the_live_dialogs_bye(
    make: Callable[[Sequence[str]], Dialog], routes: Sequence[str]
) -> None:
    live = make(routes)
    record = live.to_record(local_contact=CONTACT)
    assert record.dialog_id == live.dialog_id
    assert record.local_contact == "<sip:192.0.2.1:5060>"
    restored = roundtrip(bye_from_record(record, via=VIA))
    expected = roundtrip(live.create_request("BYE", via=VIA))
    assert bytes(restored) == bytes(expected)
    assert restored.cseq.seq == record.local_seq + 1 and restored.cseq.method == "BYE"


def test_uas_bye_carries_our_tag_in_from_and_the_callers_in_to() -> None:
    record = uas_dialog().to_record()
    bye = roundtrip(bye_from_record(record, via=VIA, headers=[("Reason", "Q.850;cause=41")]))
    assert str(bye.uri) == "sip:alice@192.0.2.10:5070"  # the caller's Contact
    assert (bye.from_.tag, bye.to.tag) == ("bobtag", "alicetag")
    assert bye.to.display_name == "Alice"
    assert bye.call_id == "dialog-test@192.0.2.10"
    assert bye.cseq.seq == 1  # a UAS that sent nothing yet starts its own numbering
    assert bye.headers.get("Reason") == "Q.850;cause=41"
    assert "Contact" not in bye.headers and "Route" not in bye.headers


def test_the_record_follows_a_target_refresh_and_the_cseq_used() -> None:
    live = uas_dialog()
    live.receive_request(_peer_request(live, "INVITE", 102, contact="<sip:alice@192.0.2.99:6000>"))
    live.create_request("INFO", via=VIA)
    live.create_request("INFO", via=VIA)
    record = live.to_record()
    assert record.remote_target == "sip:alice@192.0.2.99:6000" and record.local_seq == 2
    bye = roundtrip(bye_from_record(record, via=VIA))
    assert str(bye.uri) == "sip:alice@192.0.2.99:6000" and bye.cseq.seq == 3


def test_a_record_is_plain_data_and_from_record_restores_a_confirmed_dialog() -> None:
    live = uac_dialog(RR)
    record = live.to_record()
    # Everything in it is text, numbers, booleans or a tuple of text: a database row holds it.
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        assert isinstance(value, str | int | bool | tuple | type(None)), field.name
    restored = Dialog.from_record(record)
    assert restored.state is DialogState.CONFIRMED and restored.is_uac
    assert restored.dialog_id == live.dialog_id
    assert [str(r) for r in restored.route_set] == [str(r) for r in live.route_set]
    assert restored.to_record() == record


def test_an_rfc2543_peer_without_a_tag() -> None:
    record = dataclasses.replace(uas_dialog().to_record(), remote_tag="")
    bye = roundtrip(bye_from_record(record, via=VIA))
    assert bye.to.tag is None


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"remote_target": "tel:+15550001"}, ParseError),
        ({"remote_target": "not a uri"}, ParseError),
        ({"local_uri": "<sip:bob@example.com"}, ParseError),
        ({"route_set": ("garbage<",)}, ParseError),
        ({"local_seq": -1}, ParseError),
        ({"local_seq": 2**31 - 1}, LocalProtocolError),  # no CSeq left for the BYE
    ],
)
def test_a_damaged_record_is_refused_with_a_clear_error(
    change: dict[str, object], error: type[Exception]
) -> None:
    record = dataclasses.replace(uas_dialog().to_record(), **change)  # type: ignore[arg-type]
    with pytest.raises(error):
        bye_from_record(record, via=VIA)


@given(
    seq=st.integers(min_value=0, max_value=2**31 - 2),
    branch=st.from_regex(r"z9hG4bK[a-z0-9]{1,16}", fullmatch=True),
)
def test_any_stored_cseq_gives_the_next_number(seq: int, branch: str) -> None:
    record = dataclasses.replace(uac_dialog().to_record(), local_seq=seq)
    via = Via(transport="UDP", host="192.0.2.1", port=5060, params={"branch": branch})
    bye = roundtrip(bye_from_record(record, via=via))
    assert bye.cseq.seq == seq + 1 and bye.top_via.branch == branch
