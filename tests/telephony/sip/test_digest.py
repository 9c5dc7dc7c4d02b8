"""Digest authentication: RFC vectors, parser, nonce rules, server/client round trips, pyVoIP."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.digest import (
    AuthResult,
    Challenge,
    Credentials,
    DigestConfig,
    DigestError,
    DigestServer,
    NonceManager,
    NonceState,
    build_authorization,
    choose_challenge,
    compute_ha1,
    compute_response,
    parse_challenge,
    parse_credentials,
    supported_algorithms,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "callcenter.test"
USERS = {"101": "pass101", "102": 's3cr\u00e9t, "quoted"'}


def lookup(user: str) -> str | None:
    return USERS.get(user)


def counting_random() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


RFC8760_OFFER = DigestConfig(algorithms=("SHA-256", "MD5"))
"""Both algorithms, preferred first; the default offers MD5 alone (baresip 1.0.0, SIPp 3.6.1)."""


def make_server(config: DigestConfig = RFC8760_OFFER) -> DigestServer:
    return DigestServer(SECRET, config, random_bytes=counting_random())


def check(
    server: DigestServer,
    credentials: Credentials | str,
    *,
    now: float = 0.0,
    method: str = "REGISTER",
    realm: str = REALM,
    request_uri: str | None = None,
    body: bytes = b"",
    ha1_lookup: Callable[[str, str], str | None] | None = None,
) -> AuthResult:
    """verify() with the test users, by password or by stored HA1."""
    if ha1_lookup is not None:
        return server.verify(
            credentials,
            method=method,
            realm=realm,
            now=now,
            request_uri=request_uri,
            body=body,
            ha1_lookup=ha1_lookup,
        )
    return server.verify(
        credentials,
        method=method,
        realm=realm,
        now=now,
        request_uri=request_uri,
        body=body,
        password_lookup=lookup,
    )


def answer(
    server: DigestServer,
    *,
    now: float,
    user: str = "101",
    password: str = "pass101",
    method: str = "REGISTER",
    uri: str = "sip:callcenter.test",
    nc: int = 1,
    pick: int = 0,
    challenge: str | None = None,
) -> str:
    value = challenge if challenge is not None else server.challenge(REALM, now=now)[pick]
    return build_authorization(
        value, username=user, password=password, method=method, uri=uri, cnonce="c0ffee", nc=nc
    )


# ---------------------------------------------------------------------------- RFC test vectors

RFC2617_CREDENTIALS = (
    'Digest username="Mufasa",\r\n'
    '                 realm="testrealm@host.com",\r\n'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '                 uri="/dir/index.html",\r\n'
    "                 qop=auth,\r\n"
    "                 nc=00000001,\r\n"
    '                 cnonce="0a4f113b",\r\n'
    '                 response="6629fae49393a05397450978507c4ef1",\r\n'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_section_3_5_example() -> None:
    cred = parse_credentials(RFC2617_CREDENTIALS)
    assert cred.username == "Mufasa"
    assert cred.realm == "testrealm@host.com"
    assert (cred.qop, cred.nc, cred.cnonce) == ("auth", "00000001", "0a4f113b")
    assert cred.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    ha1 = compute_ha1("MD5", "Mufasa", cred.realm, "Circle Of Life")
    response = compute_response(
        algorithm=cred.effective_algorithm,
        ha1=ha1,
        nonce=cred.nonce,
        method="GET",
        uri=cred.uri,
        qop=cred.qop,
        nc=cred.nc,
        cnonce=cred.cnonce,
    )
    assert response == cred.response


RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_example(alg: str, expected: str) -> None:
    ch = parse_challenge(RFC7616_CHALLENGE.format(alg=alg))
    assert ch.qop == ("auth", "auth-int")
    value = build_authorization(
        ch,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        nc=1,
    )
    cred = parse_credentials(value)
    assert cred.response == expected
    assert (cred.qop, cred.nc, cred.algorithm) == ("auth", "00000001", alg)
    assert cred.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


# ---------------------------------------------------------------------------- parser


def test_parse_challenge_case_lws_and_unknown_params() -> None:
    ch = parse_challenge(
        'dIgEsT  REALM = "a \\"b\\" c" ,, Nonce="n1",stale=TRUE,\tqop=auth , '
        'algorithm=SHA-256-sess, x-vendor="v, with comma", opaque=o'
    )
    assert ch.realm == 'a "b" c'
    assert ch.nonce == "n1"
    assert ch.stale is True
    assert ch.qop == ("auth",)
    assert ch.algorithm == "SHA-256-sess"
    assert ch.opaque == "o"
    assert ch.extra == (("x-vendor", "v, with comma"),)
    assert parse_challenge(str(ch)) == ch


def test_credentials_round_trip_and_defaults() -> None:
    cred = parse_credentials(
        'Digest username="101",realm="r",nonce="n",uri="sip:127.0.0.1;transport=UDP",'
        'response="abc",algorithm=MD5'
    )
    assert cred.uri == "sip:127.0.0.1;transport=UDP"
    assert cred.qop is None and cred.nc is None and cred.cnonce is None
    assert parse_credentials(str(cred)) == cred
    no_alg = parse_credentials('Digest username="u", realm="r", nonce="n", uri="x", response="y"')
    assert no_alg.algorithm is None and no_alg.effective_algorithm == "MD5"


def test_username_star_rfc8187() -> None:
    cred = parse_credentials(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", '
        'uri="x", response="y"'
    )
    assert cred.username == "J\u00e4s\u00f8n Doe"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Digest",
        'Digest username="u", realm="r", nonce="n", uri="x"',  # no response
        'Digest username="u realm="r", nonce="n", uri="x", response="y"',
        'Digest username="u", username="v", realm="r", nonce="n", uri="x", response="y"',
        'Digest username="u" realm="r", nonce="n", uri="x", response="y"',  # missing comma
        'Digest username="u", realm, nonce="n", uri="x", response="y"',
        'Digestusername="u", realm="r", nonce="n", uri="x", response="y"',
        'Digest username="a\rb", realm="r", nonce="n", uri="x", response="y"',
        'Digest username*=latin1\'\'x, realm="r", nonce="n", uri="x", response="y"',
        'Digest username*=UTF-8\'\'%FF, realm="r", nonce="n", uri="x", response="y"',
        'Digest username="\ud800", realm="r", nonce="n", uri="x", response="y"',
    ],
)
def test_parse_credentials_rejects(value: str) -> None:
    with pytest.raises(DigestError):
        parse_credentials(value)


@settings(max_examples=400)
@given(st.text())
def test_parse_credentials_only_raises_digest_error(text: str) -> None:
    try:
        parse_credentials(text)
    except DigestError:
        pass


_param_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=20,
)


@settings(max_examples=200)
@given(
    prefix=st.sampled_from(["Digest ", "digest  ", "DIGEST\t"]),
    names=st.lists(
        st.sampled_from(["username", "realm", "nonce", "uri", "response", "cnonce", "x", "nc"]),
        max_size=8,
    ),
    values=st.lists(_param_values, min_size=8, max_size=8),
    seps=st.lists(st.sampled_from([",", ", ", " ,", ",,", " , "]), min_size=8, max_size=8),
)
def test_parse_credentials_fuzzed_structure(
    prefix: str, names: list[str], values: list[str], seps: list[str]
) -> None:
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    text = prefix + "".join(
        f'{name}="{quoted[i]}"{seps[i]}' for i, name in enumerate(names)
    ).rstrip(", ")
    try:
        cred = parse_credentials(text)
    except DigestError:
        return
    # Parsed: serialising and re-parsing gives the same object.
    assert parse_credentials(str(cred)) == cred
    assert cred.username == values[names.index("username")]


@settings(max_examples=200)
@given(
    realm=_param_values,
    nonce=_param_values.filter(bool),
    opaque=st.none() | _param_values,
    extra=st.lists(st.tuples(st.from_regex(r"x-[a-z]{1,5}", fullmatch=True), _param_values)),
)
def test_challenge_round_trip(
    realm: str, nonce: str, opaque: str | None, extra: list[tuple[str, str]]
) -> None:
    names = [n for n, _ in extra]
    if len(set(names)) != len(names):
        return
    ch = Challenge(
        realm=realm, nonce=nonce, algorithm="MD5", qop=("auth",), opaque=opaque, extra=tuple(extra)
    )
    assert parse_challenge(str(ch)) == ch


# ---------------------------------------------------------------------------- nonces


def test_nonce_alphabet_suits_pyvoip() -> None:
    nonces = NonceManager(SECRET)
    for t in range(50):
        nonce = nonces.issue(now=float(t))
        # pyVoIP reads quoted values with '"[^",]+"' and ours must also be a token.
        assert re.fullmatch(r"[A-Za-z0-9_-]{44}", nonce)
        assert nonces.state(nonce, now=float(t)) is NonceState.FRESH


def test_nonce_expiry_with_virtual_clock() -> None:
    nonces = NonceManager(SECRET, lifetime=300.0)
    nonce = nonces.issue(now=1000.0)
    assert nonces.state(nonce, now=1299.0) is NonceState.FRESH
    assert nonces.state(nonce, now=1300.0) is NonceState.FRESH
    assert nonces.state(nonce, now=1300.5) is NonceState.STALE


def test_tampered_and_foreign_nonces_are_forged() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(now=5.0)
    for i in range(len(nonce)):
        flipped = nonce[:i] + ("A" if nonce[i] != "A" else "B") + nonce[i + 1 :]
        assert nonces.state(flipped, now=5.0) is NonceState.FORGED
    other = NonceManager(b"another secret, 32 bytes long!!!")
    assert other.state(nonce, now=5.0) is NonceState.FORGED
    for junk in ("", "abc", nonce + "A", nonce[:-1] + "=", "dcd98b7102dd2f0e8b11d0f600bfb0c093"):
        assert nonces.state(junk, now=5.0) is NonceState.FORGED


def test_nonce_count_must_increase() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(now=0.0)
    assert nonces.record_use(nonce, now=1.0, nc=1, response="r1")
    assert not nonces.record_use(nonce, now=1.0, nc=1, response="r1")
    assert nonces.record_use(nonce, now=2.0, nc=3, response="r3")
    assert not nonces.record_use(nonce, now=2.0, nc=2, response="r2")


def test_no_qop_reuse_allowed_but_not_identical_replay() -> None:
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(now=0.0)
    assert nonces.record_use(nonce, now=1.0, nc=None, response="aa")
    assert nonces.record_use(nonce, now=1.0, nc=None, response="bb")
    assert not nonces.record_use(nonce, now=1.0, nc=None, response="AA")


def test_nonce_table_is_bounded_and_evicted_nonces_stay_refused() -> None:
    nonces = NonceManager(SECRET, lifetime=300.0, max_tracked=10)
    issued = [nonces.issue(now=float(t)) for t in range(30)]
    for t, nonce in enumerate(issued):
        assert nonces.record_use(nonce, now=float(t), nc=1, response="r")
        assert nonces.tracked <= 10
    # Evicted entries would otherwise accept nc=1 again: the floor refuses them.
    assert not nonces.record_use(issued[0], now=30.0, nc=1, response="r")
    assert not nonces.record_use(issued[19], now=30.0, nc=1, response="r")
    assert nonces.record_use(issued[29], now=30.0, nc=2, response="r")
    # Expired entries are swept.
    fresh = nonces.issue(now=1000.0)
    assert nonces.record_use(fresh, now=1000.0, nc=1, response="r")
    assert nonces.tracked == 1


def test_nonce_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        NonceManager(b"short")


# ---------------------------------------------------------------------------- server


def test_default_offer_is_md5_alone_with_qop() -> None:
    [value] = DigestServer(SECRET).challenge(REALM, now=0.0)
    ch = parse_challenge(value)
    assert (ch.algorithm, ch.qop, ch.realm, ch.stale) == ("MD5", ("auth",), REALM, False)


def test_unknown_algorithm_in_config_fails_at_start() -> None:
    with pytest.raises(DigestError):
        DigestServer(SECRET, DigestConfig(algorithms=("SHA-1",)))


def test_challenge_lists_sha256_then_md5_with_one_nonce() -> None:
    server = make_server()
    values = server.challenge(REALM, now=0.0)
    parsed = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]
    assert parsed[0].nonce == parsed[1].nonce
    assert all(c.qop == ("auth",) and c.realm == REALM and not c.stale for c in parsed)
    stale = parse_challenge(server.challenge(REALM, now=0.0, stale=True, algorithms=["MD5"])[0])
    assert stale.stale and stale.algorithm == "MD5"
    legacy = parse_challenge(server.challenge(REALM, now=0.0, qop=())[0])
    assert legacy.qop == ()


@pytest.mark.parametrize("pick", [0, 1])
def test_round_trip_client_to_server(pick: int) -> None:
    server = make_server()
    auth = answer(server, now=10.0, pick=pick)
    assert parse_credentials(auth).algorithm == ("SHA-256", "MD5")[pick]
    result = server.verify(auth, method="REGISTER", realm=REALM, now=11.0, password_lookup=lookup)
    assert result is AuthResult.OK and result.ok


def test_round_trip_with_quotes_and_non_ascii_password() -> None:
    server = make_server()
    auth = answer(server, now=0.0, user="102", password=USERS["102"])
    assert (
        server.verify(auth, method="REGISTER", realm=REALM, now=0.0, password_lookup=lookup)
        is AuthResult.OK
    )


def test_replay_of_same_nc_rejected_and_next_nc_accepted() -> None:
    server = make_server()
    challenge = server.challenge(REALM, now=0.0)[0]
    first = answer(server, now=0.0, challenge=challenge, nc=1)
    assert check(server, first, now=1.0) is AuthResult.OK
    replay = check(server, first, now=2.0)
    assert replay is AuthResult.REPLAY and replay.stale
    second = answer(server, now=0.0, challenge=challenge, nc=2)
    assert check(server, second, now=3.0) is AuthResult.OK


def test_expired_nonce_is_stale_only_with_right_password() -> None:
    server = make_server(DigestConfig(nonce_lifetime=300.0))
    good = answer(server, now=0.0)
    bad = answer(server, now=0.0, password="nope")
    assert check(server, good, now=301.0) is AuthResult.STALE_NONCE
    assert check(server, bad, now=301.0) is AuthResult.WRONG_PASSWORD
    assert check(server, good, now=299.0) is AuthResult.OK


def test_tampered_nonce_rejected() -> None:
    server = make_server()
    ch = parse_challenge(server.challenge(REALM, now=0.0)[1])
    tampered = Challenge(realm=ch.realm, nonce=ch.nonce[:-2] + "xx", algorithm="MD5", qop=ch.qop)
    auth = answer(server, now=0.0, challenge=str(tampered))
    result = server.verify(auth, method="REGISTER", realm=REALM, now=0.0, password_lookup=lookup)
    assert result is AuthResult.BAD_NONCE
    # A nonce minted by a previous process (other secret) is the same case: retry silently.
    restarted = DigestServer(b"a new secret after the restart!!", RFC8760_OFFER)
    assert (
        restarted.verify(
            answer(server, now=0.0),
            method="REGISTER",
            realm=REALM,
            now=0.0,
            password_lookup=lookup,
        )
        is AuthResult.BAD_NONCE
    )


def test_wrong_password_and_unknown_user() -> None:
    server = make_server()
    wrong = answer(server, now=0.0, password="guess")
    assert check(server, wrong) is AuthResult.WRONG_PASSWORD
    ghost = answer(server, now=0.0, user="999", password="guess")
    assert check(server, ghost) is AuthResult.UNKNOWN_USER
    assert AuthResult.UNKNOWN_USER.counts_as_failure
    assert not AuthResult.REPLAY.counts_as_failure


def test_unknown_user_is_checked_against_a_dummy_password() -> None:
    calls: list[str] = []

    def spy(user: str) -> str | None:
        calls.append(user)
        return None

    server = make_server()
    auth = answer(server, now=0.0, user="nobody", password="x")
    result = server.verify(auth, method="REGISTER", realm=REALM, now=0.0, password_lookup=spy)
    assert result is AuthResult.UNKNOWN_USER and calls == ["nobody"]


def test_method_is_part_of_the_digest() -> None:
    server = make_server()
    auth = answer(server, now=0.0, method="REGISTER")
    result = server.verify(auth, method="INVITE", realm=REALM, now=0.0, password_lookup=lookup)
    assert result is AuthResult.WRONG_PASSWORD


def test_ha1_lookup() -> None:
    server = make_server()
    store = {
        (u, alg): compute_ha1(alg, u, REALM, p)
        for u, p in USERS.items()
        for alg in ("MD5", "SHA-256")
    }

    def ha1_lookup(user: str, alg: str) -> str | None:
        return store.get((user, alg))

    for pick in (0, 1):
        assert (
            check(server, answer(server, now=0.0, pick=pick), ha1_lookup=ha1_lookup)
            is AuthResult.OK
        )
    ghost = answer(server, now=0.0, user="999")
    assert check(server, ghost, ha1_lookup=ha1_lookup) is AuthResult.UNKNOWN_USER
    with pytest.raises(TypeError):
        server.verify(ghost, method="REGISTER", realm=REALM, now=0.0)


def test_realm_mismatch_and_malformed() -> None:
    server = make_server()
    auth = answer(server, now=0.0)
    assert check(server, auth, realm="other") is AuthResult.REALM_MISMATCH
    assert check(server, "Digest junk", realm=REALM) is AuthResult.MALFORMED
    cred = parse_credentials(auth)
    fields = {f: getattr(cred, f) for f in ("username", "realm", "nonce", "uri", "response")}
    for broken in (
        Credentials(**fields, algorithm="MD5", qop="auth", nc="zz", cnonce="c"),
        Credentials(**fields, algorithm="MD5", qop="auth", nc="00000000", cnonce="c"),
        Credentials(**fields, algorithm="MD5", qop="auth", nc="00000001"),
        Credentials(**fields, algorithm="MD5", qop="auth-int", nc="00000001", cnonce="c"),
        Credentials(**fields, algorithm="SHA-1", qop="auth", nc="00000001", cnonce="c"),
        Credentials(**fields, algorithm="MD5-sess"),
    ):
        assert check(server, broken, realm=REALM) is AuthResult.MALFORMED


def test_algorithm_not_offered_is_refused() -> None:
    server = make_server(DigestConfig(algorithms=("SHA-256",)))
    md5_challenge = make_server().challenge(REALM, now=0.0)[1]
    # Same secret, so the nonce is valid; MD5 is simply not accepted by this server.
    auth = answer(server, now=0.0, challenge=md5_challenge)
    result = server.verify(auth, method="REGISTER", realm=REALM, now=0.0, password_lookup=lookup)
    assert result is AuthResult.MALFORMED


def test_sess_and_auth_int_round_trips() -> None:
    server = make_server(
        DigestConfig(algorithms=("SHA-256-sess", "MD5-sess"), qop=("auth-int", "auth"))
    )
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    for alg in ("SHA-256-sess", "MD5-sess"):
        [value] = server.challenge(REALM, now=0.0, algorithms=[alg], qop=("auth-int",))
        assert parse_challenge(value).algorithm == alg
        auth = build_authorization(
            value,
            username="101",
            password="pass101",
            method="INVITE",
            uri="sip:200@callcenter.test",
            cnonce="abc",
            body=body,
        )
        assert parse_credentials(auth).qop == "auth-int"
        altered = check(server, auth, body=body + b"x", method="INVITE")
        assert altered is AuthResult.WRONG_PASSWORD
        assert check(server, auth, body=body, method="INVITE") is AuthResult.OK


def test_uri_check_is_lenient_and_optional() -> None:
    strict = make_server(DigestConfig(check_uri=True))
    auth = answer(strict, now=0.0, uri="sip:127.0.0.1;transport=UDP")
    assert check(strict, auth, now=0.0, request_uri="SIP:127.0.0.1") is AuthResult.OK
    other = answer(strict, now=0.0, uri="sip:evil.example")
    assert check(strict, other, now=0.0, request_uri="sip:127.0.0.1") is AuthResult.URI_MISMATCH
    lenient = make_server()
    other = answer(lenient, now=0.0, uri="sip:evil.example")
    assert check(lenient, other, now=0.0, request_uri="sip:127.0.0.1") is AuthResult.OK


# ---------------------------------------------------------------------------- no-qop (pyVoIP)


def _rfc2069_credentials(
    challenge: str, *, method: str, uri: str, password: str = "pass101"
) -> str:
    ch = parse_challenge(challenge)
    ha1 = compute_ha1("MD5", "101", ch.realm, password)
    response = compute_response(algorithm="MD5", ha1=ha1, nonce=ch.nonce, method=method, uri=uri)
    return (
        f'Digest username="101",realm="{ch.realm}",nonce="{ch.nonce}",'
        f'uri="{uri}",response="{response}",algorithm=MD5'
    )


def test_pyvoip_style_no_qop_response_accepted() -> None:
    server = make_server()
    md5 = server.challenge(REALM, now=0.0)[-1]  # pyVoIP keeps the last header
    reg = _rfc2069_credentials(md5, method="REGISTER", uri="sip:127.0.0.1;transport=UDP")
    assert check(server, reg, method="REGISTER", now=1.0) is AuthResult.OK
    # Reuse of the nonce for another request is allowed; the identical request is a replay.
    inv = _rfc2069_credentials(md5, method="INVITE", uri="sip:127.0.0.1;transport=UDP")
    assert check(server, inv, method="INVITE", now=2.0) is AuthResult.OK
    assert check(server, reg, method="REGISTER", now=3.0) is AuthResult.REPLAY


def test_no_qop_refused_when_disabled() -> None:
    server = make_server(DigestConfig(allow_no_qop=False))
    md5 = server.challenge(REALM, now=0.0)[-1]
    reg = _rfc2069_credentials(md5, method="REGISTER", uri="sip:x")
    result = server.verify(reg, method="REGISTER", realm=REALM, now=0.0, password_lookup=lookup)
    assert result is AuthResult.MALFORMED


@pytest.mark.parametrize(
    "algorithms", [("MD5",), ("SHA-256", "MD5"), ("MD5", "SHA-256")], ids="/".join
)
def test_real_pyvoip_register_answer_is_accepted(algorithms: tuple[str, ...]) -> None:
    pytest.importorskip("pyVoIP")
    import pyVoIP.VoIP  # noqa: F401  # imported first: pyVoIP.SIP alone hits a circular import
    from pyVoIP import SIP

    # pyVoIP keeps the last header and always answers MD5: fine while the nonce is shared.
    server = make_server(DigestConfig(algorithms=algorithms))
    client = SIP.SIPClient(
        "127.0.0.1",
        5060,
        "101",
        "pass101",
        phone=None,  # type: ignore[arg-type]
        myIP="127.0.0.1",
    )
    headers = "".join(f"WWW-Authenticate: {v}\r\n" for v in server.challenge(REALM, now=0.0))
    unauthorized = (
        "SIP/2.0 401 Unauthorized\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport\r\n"
        'From: "101" <sip:101@127.0.0.1>;tag=a\r\n'
        'To: "101" <sip:101@127.0.0.1>;tag=b\r\n'
        "Call-ID: 1@127.0.0.1\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"{headers}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    register = client.gen_register(SIP.SIPMessage(unauthorized))
    line = next(x for x in register.split("\r\n") if x.startswith("Authorization: "))
    value = line.removeprefix("Authorization: ")
    assert parse_credentials(value).qop is None  # pyVoIP answers the RFC 2069 way
    result = server.verify(value, method="REGISTER", realm=REALM, now=1.0, password_lookup=lookup)
    assert result is AuthResult.OK


# ---------------------------------------------------------------------------- client side


def test_choose_challenge_prefers_strongest_supported() -> None:
    values = [
        'Basic realm="r"',
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="n3", algorithm=AKAv1-MD5',
        'Digest realm="r", nonce="n4", algorithm=SHA-256-sess',  # sess without qop: no cnonce
    ]
    assert choose_challenge(values).nonce == "n2"
    assert choose_challenge(values[:2]).nonce == "n1"
    with pytest.raises(DigestError):
        choose_challenge(values[3:4])
    assert "SHA-256" in supported_algorithms() and "MD5-sess" in supported_algorithms()


def test_build_authorization_rfc2069_and_errors() -> None:
    value = build_authorization(
        'Digest realm="r", nonce="n"',
        username="u",
        password="p",
        method="REGISTER",
        uri="sip:r",
        cnonce="ignored",
    )
    cred = parse_credentials(value)
    assert cred.qop is None and cred.nc is None and cred.cnonce is None
    ha1 = compute_ha1("MD5", "u", "r", "p")
    assert cred.response == compute_response(
        algorithm="MD5", ha1=ha1, nonce="n", method="REGISTER", uri="sip:r"
    )
    for challenge in (
        'Digest realm="r", nonce="n", algorithm=AKAv1-MD5',
        'Digest realm="r", nonce="n", qop="auth-conf"',
        'Digest realm="r", nonce="n", algorithm=MD5-sess',
    ):
        with pytest.raises(DigestError):
            build_authorization(
                challenge,
                username="u",
                password="p",
                method="REGISTER",
                uri="sip:r",
                cnonce="c",
            )


def test_build_authorization_userhash() -> None:
    value = build_authorization(
        'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256, userhash=true',
        username="u",
        password="p",
        method="REGISTER",
        uri="sip:r",
        cnonce="c",
    )
    cred = parse_credentials(value)
    assert cred.userhash
    assert cred.username == hashlib.sha256(b"u:r").hexdigest()  # RFC 7616 3.4.4
