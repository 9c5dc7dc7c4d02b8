"""[sip] tls_* settings, `srtp` per account and trunk, trunk `transport`, and the certificate
`callcenter tls-selfsigned` makes (loaded by the listener's context, trusted by a client's)."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.config import ConfigError, HostPort, parse_config
from callcenter.tls import make_self_signed, tls_contexts

ROOT = Path(__file__).resolve().parents[2]


def test_tls_srtp_and_transport_settings_load(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path, ["localhost", "127.0.0.1"])
    config = parse_config(
        f'[sip]\nlisten = "127.0.0.1:5060"\ntls_listen = "127.0.0.1:5061"\n'
        f'tls_certificate = "{cert}"\ntls_key = "{key}"\ntls_verify = false\n'
        '[[accounts]]\nextension = "101"\npassword = "pass101"\nsrtp = "required"\n'
        '[[trunks]]\nname = "carrier"\noutbound = "127.0.0.1:5071"\ntransport = "tls"\n'
        'srtp = "optional"\n'
    )
    assert config.sip.tls_listen == HostPort("127.0.0.1", 5061)
    assert (config.sip.tls_certificate, config.sip.tls_key) == (cert, key)
    assert config.accounts[0].srtp == "required"
    assert (config.trunks[0].transport, config.trunks[0].srtp) == ("tls", "optional")
    server, client = tls_contexts(config.sip)
    assert server is not None and client.verify_mode == ssl.CERT_NONE
    assert not client.check_hostname


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('[sip]\ntls_listen = "127.0.0.1:5061"\n', 2, "needs tls_certificate and tls_key"),
        ('[sip]\ntls_certificate = "missing.pem"\n', 2, "does not exist"),
        ("[sip]\ntls_verify = 1\n", 2, "tls_verify must be true or false"),
        ('[[accounts]]\nextension = "101"\npassword = "pass101"\nsrtp = "yes"\n', 4, "srtp"),
        ('[[trunks]]\nname = "c"\ntransport = "sctp"\n', 3, "transport must be one of"),
        ('[[trunks]]\nname = "c"\nsrtp = "on"\n', 3, "srtp must be one of"),
    ],
)
def test_tls_and_srtp_mistakes_name_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(text, source="cc.toml")
    assert error.value.line == line and reason in str(error.value)


def test_a_key_that_does_not_match_is_a_config_error(tmp_path: Path) -> None:
    cert, _ = make_self_signed(tmp_path / "a", ["localhost"])
    _, other_key = make_self_signed(tmp_path / "b", ["localhost"])
    with pytest.raises(ConfigError, match="do not load"):
        parse_config(
            f'[sip]\ntls_listen = "127.0.0.1:5061"\ntls_certificate = "{cert}"\n'
            f'tls_key = "{other_key}"\n'
        )


def test_tls_listen_must_share_the_sip_address(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path, ["localhost"])
    with pytest.raises(ConfigError, match="SIP listen address"):
        parse_config(
            f'[sip]\ntls_listen = "127.0.0.2:5061"\ntls_certificate = "{cert}"\ntls_key = "{key}"\n'
        )


def test_the_command_writes_a_certificate_a_client_trusts(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "tls-selfsigned", "--out", str(out),
         "--name", "pbx.example.com", "--name", "127.0.0.1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    assert "cert.pem" in result.stdout and "key.pem" in result.stdout
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    info = ssl._ssl._test_decode_cert(str(out / "cert.pem"))  # type: ignore[attr-defined]
    assert ("DNS", "pbx.example.com") in info["subjectAltName"]
    assert ("IP Address", "127.0.0.1") in info["subjectAltName"]
    # A client that trusts the file as its CA accepts a server presenting it.
    client = ssl.create_default_context(cafile=str(out / "cert.pem"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(out / "cert.pem", out / "key.pem")
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="pbx.example.com")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    c.do_handshake()  # raises if the handshake failed
    assert c.getpeercert()["subject"] == ((("commonName", "pbx.example.com"),),)


def test_https_settings_load_and_their_mistakes_name_the_key(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path / "a", ["localhost"])
    config = parse_config(f'[http]\ntls_certificate = "{cert}"\ntls_key = "{key}"\n')
    assert config.http_tls == (cert, key)
    assert parse_config("").http_tls is None
    with pytest.raises(ConfigError, match="tls_key is missing") as half:
        parse_config(f'[http]\nlisten = "127.0.0.1:8443"\ntls_certificate = "{cert}"\n')
    assert half.value.line == 3
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config('[http]\ntls_certificate = "nope.pem"\ntls_key = "nope.key"\n')
    _, other_key = make_self_signed(tmp_path / "b", ["localhost"])
    with pytest.raises(ConfigError, match="do not load") as mismatched:
        parse_config(f'[http]\ntls_certificate = "{cert}"\ntls_key = "{other_key}"\n')
    assert mismatched.value.line == 3
