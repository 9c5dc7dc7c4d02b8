"""The Headers multi-map: canonical names, compact forms, comma lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from telephony.sip.headers import COMPACT_FORMS, Headers, canonical_name, split_list


def test_canonical_names_and_compact_forms() -> None:
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("CSEQ") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("i") == "Call-ID"
    assert canonical_name("X-Custom-thing") == "X-Custom-thing"
    assert COMPACT_FORMS["k"] == "Supported"
    assert COMPACT_FORMS["y"] == "Identity"
    assert len(COMPACT_FORMS) == 16


def test_lookup_is_case_insensitive_and_accepts_compact() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("x-foo", "1")])
    assert h.get("Via") == "SIP/2.0/UDP a"
    assert h.get("v") == "SIP/2.0/UDP a"
    assert h.get_all("via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.get("X-FOO") == "1"
    assert "X-Foo" in h
    assert "Nope" not in h
    assert h.get("Nope") is None
    assert h.get_all("Nope") == []
    assert list(h) == [("Via", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("x-foo", "1")]
    assert len(h) == 3
    assert h.count("via") == 2


def test_get_all_splits_list_headers_only() -> None:
    h = Headers(
        [
            ("Contact", '"Doe, John" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>'),
            ("Allow", "INVITE,ACK , BYE"),
            ("Subject", "hello, world"),
            ("WWW-Authenticate", 'Digest realm="a,b", nonce="x"'),
            ("Authorization", 'Digest username="u", realm="r"'),
            ("Supported", ""),
        ]
    )
    assert h.get_all("m") == ['"Doe, John" <sip:a@b;x=1,2>;q=0.5', "<sip:c@d>"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("Subject") == ["hello, world"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a,b", nonce="x"']
    assert h.get_all("Authorization") == ['Digest username="u", realm="r"']
    assert h.get_all("Supported") == []


def test_empty_list_items_are_kept_for_the_typed_parsers() -> None:
    assert split_list("a,,b") == ["a", "", "b"]
    assert split_list('"unterminated, x') == ['"unterminated, x']  # runs to the end
    assert split_list("<sip:a,b") == ["<sip:a,b"]


def test_mutation() -> None:
    h = Headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3")])
    h.set("X-A", "9")
    assert h.items() == [("X-A", "9"), ("X-B", "2")]
    h.set("X-C", "3")
    assert h.items()[-1] == ("X-C", "3")
    h.add("l", "0")
    assert h.items()[-1] == ("Content-Length", "0")
    h.insert(0, "v", "SIP/2.0/UDP x")
    assert h.items()[0] == ("Via", "SIP/2.0/UDP x")
    copy = h.copy()
    h.remove("x-b")
    assert "X-B" not in h
    assert "X-B" in copy
    assert copy != h
    h.remove("missing")


@given(
    st.lists(st.tuples(st.sampled_from(["Via", "v", "To", "X-A", "x-a"]), st.text()), max_size=8)
)
def test_copy_equals_and_preserves_order(items: list[tuple[str, str]]) -> None:
    h = Headers(items)
    assert h.copy() == h
    assert [v for _, v in h] == [v for _, v in items]


@given(st.lists(st.from_regex(r"[A-Za-z0-9<>:@;=. \"]{0,12}", fullmatch=True), max_size=6))
def test_split_list_never_fails(parts: list[str]) -> None:
    items = split_list(",".join(parts))
    assert isinstance(items, list)
