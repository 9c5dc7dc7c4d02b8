"""BLF subscriptions (pbx.blf, sans-IO): RFC 6665 subscribe, refresh, unsubscribe and expiry,
RFC 4235 dialog-info bodies, and the refusals, all in memory."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pbx.blf import (
    CONTENT_TYPE,
    WITHHELD,
    BlfGroup,
    LineState,
    Party,
    SubscribeError,
    Watchers,
    WatchPolicy,
    dialog_info,
)
from telephony.sip import NameAddr, SipRequest, SipUri, Via, parse_message

NS = {"d": "urn:ietf:params:xml:ns:dialog-info"}
OURS = NameAddr(None, SipUri(scheme="sip", user=None, password=None, host="127.0.0.1",
                             port=5060, params={}, headers={}), {})  # fmt: skip
ENTITY = "sip:102@127.0.0.1:5060"


def subscribe(
    *, expires: int | None = 600, cseq: int = 1, to_tag: str = "", event: str = "dialog",
    accept: str | None = CONTENT_TYPE, call_id: str = "sub-1",
) -> SipRequest:  # fmt: skip
    lines = [
        "SUBSCRIBE sip:102@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-" + str(cseq),
        "From: <sip:103@127.0.0.1>;tag=w1",
        "To: <sip:102@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} SUBSCRIBE",
        "Contact: <sip:103@127.0.0.1:5099>",
        f"Event: {event}",
    ]
    if accept is not None:
        lines.append(f"Accept: {accept}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def via() -> Via:
    return Via(protocol="SIP/2.0", transport="UDP", host="127.0.0.1", port=5060,
               params={"branch": "z9hG4bK-n"})  # fmt: skip


def state_of(body: bytes) -> tuple[str, str, str | None]:
    root = ET.fromstring(body)
    dialog = root.find("d:dialog", NS)
    assert dialog is not None
    state = dialog.find("d:state", NS)
    assert state is not None and state.text
    return root.get("version") or "", state.text, dialog.get("direction")


def test_subscribe_notify_each_change_refresh_and_unsubscribe() -> None:
    watchers = Watchers()
    response, sub = watchers.subscribe(subscribe(), watcher="103", monitored="102",
                                       contact=OURS, now=100)  # fmt: skip
    assert response.status == 200 and response.to.tag and response.headers.get("Expires") == "600"
    assert (sub.watcher, sub.monitored, sub.expires_at) == ("103", "102", 700)
    first = watchers.notify(sub, LineState.TERMINATED, via=via(), contact=OURS, entity=ENTITY,
                            now=100)  # fmt: skip
    assert first.method == "NOTIFY" and str(first.uri) == "sip:103@127.0.0.1:5099"
    assert first.headers.get("Event") == "dialog"
    assert first.headers.get("Subscription-State") == "active;expires=600"
    assert first.headers.get("Content-Type") == CONTENT_TYPE
    assert first.from_.tag == response.to.tag and first.to.tag == "w1"
    assert state_of(first.body) == ("1", "terminated", None)

    assert watchers.changed("102", LineState.TERMINATED) == []  # nothing new
    assert watchers.changed("101", LineState.EARLY, "recipient") == []  # nobody watches 101
    (owed,) = watchers.changed("102", LineState.EARLY, "recipient")
    ringing = watchers.notify(owed, LineState.EARLY, via=via(), contact=OURS, entity=ENTITY,
                              now=110)  # fmt: skip
    assert state_of(ringing.body) == ("2", "early", "recipient")
    assert ringing.cseq.seq == first.cseq.seq + 1

    tag = response.to.tag or ""
    refresh = subscribe(expires=300, cseq=2, to_tag=tag)
    assert watchers.has_dialog(refresh)
    response, same = watchers.refresh(refresh, contact=OURS, now=200)
    assert same is sub and response.status == 200 and sub.expires_at == 500

    response, gone = watchers.refresh(subscribe(expires=0, cseq=3, to_tag=tag), contact=OURS,
                                      now=210)  # fmt: skip
    assert response.status == 200 and len(watchers) == 0
    final = watchers.notify(gone, LineState.EARLY, via=via(), contact=OURS, entity=ENTITY, now=210)
    assert final.headers.get("Subscription-State") == "terminated;reason=deactivated"
    with pytest.raises(SubscribeError) as refused:
        watchers.refresh(subscribe(cseq=4, to_tag=tag), contact=OURS, now=220)
    assert refused.value.status == 481


def test_expiry_and_fetch() -> None:
    watchers = Watchers()
    _, sub = watchers.subscribe(subscribe(expires=60), watcher="103", monitored="102",
                                contact=OURS, now=0)  # fmt: skip
    assert watchers.expire(now=59) == []
    assert watchers.expire(now=60) == [sub] and sub.ended == "timeout" and len(watchers) == 0
    # Expires: 0 on the initial SUBSCRIBE is a fetch: one NOTIFY, terminated, nothing kept.
    _, fetch = watchers.subscribe(subscribe(expires=0, call_id="f"), watcher="103",
                                  monitored="102", contact=OURS, now=0)  # fmt: skip
    assert len(watchers) == 0
    notify = watchers.notify(fetch, LineState.CONFIRMED, via=via(), contact=OURS, entity=ENTITY,
                             now=0)  # fmt: skip
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"
    # No Expires: the package's default (3600), and never more than the maximum.
    _, default = watchers.subscribe(subscribe(expires=None, call_id="d"), watcher="103",
                                    monitored="102", contact=OURS, now=0)  # fmt: skip
    assert default.expires_at == 3600
    _, capped = watchers.subscribe(subscribe(expires=86400, call_id="c"), watcher="103",
                                   monitored="102", contact=OURS, now=0)  # fmt: skip
    assert capped.expires_at == 3600


@pytest.mark.parametrize(
    ("request_", "monitored", "status", "header"),
    [
        (subscribe(event="presence"), "102", 489, ("Allow-Events", "dialog")),
        (subscribe(accept="application/pidf+xml"), "102", 406, ("Accept", CONTENT_TYPE)),
        (subscribe(expires=10), "102", 423, ("Min-Expires", "60")),
        (subscribe(), None, 404, None),
        (subscribe(), "102", 403, None),  # the access list: not 103's to watch
    ],
)
def test_refusals(
    request_: SipRequest, monitored: str | None, status: int, header: tuple[str, str] | None
) -> None:
    watchers = Watchers()
    with pytest.raises(SubscribeError) as refused:
        watchers.subscribe(request_, watcher="103", monitored=monitored, contact=OURS, now=0,
                           allowed=status != 403)  # fmt: skip
    assert refused.value.status == status
    if header is not None:
        assert header in refused.value.headers
    assert len(watchers) == 0


def test_dialog_info_document() -> None:
    body = dialog_info("sip:102@pbx", 7, LineState.CONFIRMED, direction="initiator")
    assert body.startswith(b"<?xml")
    root = ET.fromstring(body)
    assert root.tag == "{urn:ietf:params:xml:ns:dialog-info}dialog-info"
    assert (root.get("entity"), root.get("state")) == ("sip:102@pbx", "full")
    assert state_of(body) == ("7", "confirmed", "initiator")


def remote_of(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(display, identity, local identity) of a dialog-info document's one dialog."""
    dialog = ET.fromstring(body).find("d:dialog", NS)
    assert dialog is not None
    identity = dialog.find("d:remote/d:identity", NS)
    local = dialog.find("d:local/d:identity", NS)
    if identity is None:
        return None, None, None
    target = dialog.find("d:remote/d:target", NS)
    assert target is not None and target.get("uri") == identity.text
    return identity.get("display"), identity.text, local.text if local is not None else None


def test_the_remote_party_is_named_and_a_withheld_number_stays_withheld() -> None:
    caller = Party("sip:+12125550100@pbx", "ACME Corp")
    ringing = dialog_info(ENTITY, 2, LineState.EARLY, direction="recipient", remote=caller)
    assert remote_of(ringing) == ("ACME Corp", "sip:+12125550100@pbx", ENTITY)
    hidden = dialog_info(ENTITY, 3, LineState.CONFIRMED, direction="recipient", remote=WITHHELD)
    assert remote_of(hidden) == ("Anonymous", "sip:anonymous@anonymous.invalid", ENTITY)
    assert b"+1212" not in hidden
    # Idle: no party (even if one is handed in).
    assert remote_of(dialog_info(ENTITY, 4, LineState.TERMINATED, direction=None,
                                 remote=caller)) == (None, None, None)  # fmt: skip


def test_a_new_caller_is_a_change_the_watchers_hear() -> None:
    watchers = Watchers()
    _, sub = watchers.subscribe(subscribe(), watcher="103", monitored="102", contact=OURS, now=0)
    first, second = Party("sip:101@pbx", "Agent 101"), Party("sip:104@pbx", "Agent 104")
    assert watchers.changed("102", LineState.EARLY, "recipient", first) == [sub]
    assert watchers.changed("102", LineState.EARLY, "recipient", first) == []
    assert watchers.changed("102", LineState.EARLY, "recipient", second) == [sub]
    notify = watchers.notify(sub, LineState.EARLY, via=via(), contact=OURS, entity=ENTITY, now=0)
    assert remote_of(notify.body)[:2] == ("Agent 104", "sip:104@pbx")


def test_the_watch_policy() -> None:
    assert WatchPolicy().allows("103", "102")  # no groups: one tenant, everyone everyone
    policy = WatchPolicy((BlfGroup("sales", ("101", "102"), watchers=("190",)),
                          BlfGroup("support", ("103", "104"))))  # fmt: skip
    assert policy.allows("101", "102") and policy.allows("102", "101")
    assert policy.allows("190", "101")  # a watcher of the group
    assert not policy.allows("101", "190")  # ... who is not watched by it
    assert not policy.allows("103", "102") and not policy.allows("101", "104")
    assert policy.allows("105", "105")  # one's own line
