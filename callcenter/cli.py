"""`callcenter` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from telephony.aio.addresses import is_ip

from . import campaign_cli
from .config import Config, ConfigError, HostPort, load_config
from .logging import FORMATS
from .logging import configure as configure_logging

logger = logging.getLogger("callcenter")


EPILOG = """\
what each command does:
  serve          run the engine: SIP registrar and PBX, dialer, IVR, recordings, REST API
                 (OpenAPI at /api/openapi.json), dashboard and /metrics
  campaign       create, start, pause, resume, stop and watch dialer campaigns over the API
  check-config   validate a config file and exit (status 2 with the line and reason on errors)
  tls-selfsigned make a self-signed certificate and key for SIP over TLS or HTTPS

examples:
  callcenter serve --config callcenter.toml
  callcenter serve --config callcenter.toml --log-format json --http-listen 0.0.0.0:8080
  callcenter check-config callcenter.toml
  callcenter tls-selfsigned --out var/tls --name pbx.example.com --name 127.0.0.1
  callcenter campaign --key "$CALLCENTER_API_KEY" create spring --leads leads.csv --agents 101,102
  callcenter campaign status spring --watch

Run `callcenter COMMAND --help` for a command's options.
"""

SELFSIGNED_EPILOG = """\
example:
  callcenter tls-selfsigned --out var/tls --name pbx.example.com --name 203.0.113.7

then in the config:
  [sip]
  tls_listen = "0.0.0.0:5061"
  tls_certificate = "var/tls/cert.pem"
  tls_key = "var/tls/key.pem"

  [http]                      # HTTPS, and wss:// for browser phones
  tls_certificate = "var/tls/cert.pem"
  tls_key = "var/tls/key.pem"
"""

SERVE_EPILOG = """\
examples:
  callcenter serve --config callcenter.toml
  callcenter serve --config callcenter.toml --database-url postgresql://cc@db/cc
  callcenter serve --config callcenter.toml --sip-listen 0.0.0.0:5060 --log-format json

The command line wins over the config file. Exit status: 0 after a clean stop, 2 on a config
error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcenter",
        description="SIP contact-center engine: PBX for agents' softphones, campaigns dialer, "
        "IVR, call recording, CRM webhooks, REST API and live dashboard in one process.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    serve = commands.add_parser(
        "serve",
        help="run the engine (SIP registrar + PBX) until SIGINT/SIGTERM",
        description="Run the engine. Without --database-url an embedded PostgreSQL is started in "
        "the data directory. SIGINT/SIGTERM hang up every call with BYE and stop cleanly.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--config",
        default="callcenter.example.toml",
        help="TOML config file (default: %(default)s)",
    )
    serve.add_argument("--database-url", help="external PostgreSQL URL (default: embedded server)")
    serve.add_argument(
        "--data-dir", help="state directory: embedded PostgreSQL, recordings (default: config)"
    )
    serve.add_argument(
        "--sip-listen", metavar="HOST:PORT", help="SIP address, UDP and TCP (default: config)"
    )
    serve.add_argument("--http-listen", metavar="HOST:PORT", help="HTTP address (default: config)")
    serve.add_argument(
        "--rtp-ports", metavar="LOW-HIGH", help="RTP port range (default: config's [sip] rtp_ports)"
    )
    serve.add_argument(
        "--cluster",
        action="store_true",
        help="one of several nodes behind a proxy on one database: phones registered through "
        "any node are rung, agents are booked in the database (config: [sip] cluster)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="IP",
        help="a proxy in front of this node, whose phones' failed logins count against "
        "them, not the proxy (repeatable; config: [sip] trusted_proxies)",
    )
    serve.add_argument(
        "--node",
        help="this engine's name among nodes sharing one database (default: config's [crm] node)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="least severe log records shown (default: %(default)s)",
    )
    serve.add_argument(
        "--log-format",
        choices=FORMATS,
        help="text: one readable line per record; json: one JSON object per line with time, "
        "level, logger, message, request_id, call_id (default: the config's [log] format, "
        "else text)",
    )
    campaign_cli.add_parser(commands)
    check = commands.add_parser(
        "check-config",
        help="validate a config file and exit (2 on errors)",
        description="Read and validate a TOML config file. Prints `FILE: ok` and exits 0, or "
        "prints FILE:LINE: reason and exits 2.",
        epilog="example:\n  callcenter check-config callcenter.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("config", help="the TOML config file to check")
    selfsigned = commands.add_parser(
        "tls-selfsigned",
        help="make a self-signed certificate and key for SIP over TLS or HTTPS",
        description="Write DIR/cert.pem and DIR/key.pem (ECDSA P-256, the key readable by its "
        "owner only): a self-signed certificate for the given names (host names and IP "
        "addresses, all in subjectAltName). Point [sip] or [http] tls_certificate and tls_key at "
        "them; "
        "phones and providers that check certificates trust cert.pem as their CA file.",
        epilog=SELFSIGNED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    selfsigned.add_argument("--out", required=True, help="directory for cert.pem and key.pem")
    selfsigned.add_argument(
        "--name",
        action="append",
        help="a host name or IP address the certificate is for (repeat; default: localhost "
        "and 127.0.0.1)",
    )
    selfsigned.add_argument(
        "--days", type=int, default=825, help="validity in days (default: %(default)s)"
    )
    auth = commands.add_parser(
        "crm-auth",
        help="store a CRM account's first OAuth tokens from an authorization code",
        description="Exchange an OAuth authorization code (amoCRM integration, Bitrix24 local "
        "app) for the first access and refresh tokens of a [[crm.endpoints]] entry with an "
        "`oauth` client, and store them in the database every engine node shares; from then on "
        "the engine refreshes them itself (each refresh token works once).",
        epilog="example:\n  callcenter crm-auth amo --code def50200... --config callcenter.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    auth.add_argument("endpoint", help="name of the CRM endpoint in the config")
    auth.add_argument("--code", required=True, help="the authorization code (valid 20 minutes)")
    auth.add_argument(
        "--config",
        default="callcenter.example.toml",
        help="TOML config file (default: %(default)s)",
    )
    auth.add_argument("--database-url", help="external PostgreSQL URL (default: embedded server)")
    auth.add_argument("--data-dir", help="state directory of the embedded PostgreSQL")
    return parser


async def crm_auth(config: Config, name: str, code: str) -> int:
    import aiohttp

    from crm_bridge.oauth import OAuthError, TokenStore

    from .database import open_database

    endpoint = next((e for e in config.crm.endpoints if e.name == name), None)
    if endpoint is None or endpoint.oauth is None:
        print(
            f"callcenter: no CRM endpoint {name!r} with an oauth client in the config",
            file=sys.stderr,
        )
        return 2
    database = await open_database(config.database_url, config.data_dir, max_size=2)
    try:
        async with aiohttp.ClientSession() as session:
            await TokenStore(database.pool, session).exchange_code(endpoint, code)
    except OAuthError as exc:
        print(f"callcenter: {name}: {exc}", file=sys.stderr)
        return 1
    finally:
        await database.close()
    print(f"{name}: OAuth tokens stored")
    return 0


def _apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    try:
        if args.sip_listen:
            sip = dataclasses.replace(config.sip, listen=HostPort.parse(args.sip_listen))
            config = dataclasses.replace(config, sip=sip)
        if args.http_listen:
            config = dataclasses.replace(config, http_listen=HostPort.parse(args.http_listen))
        if getattr(args, "rtp_ports", None):
            config = dataclasses.replace(
                config, sip=dataclasses.replace(config.sip, rtp_ports=_port_range(args.rtp_ports))
            )
        if getattr(args, "cluster", False):
            config = dataclasses.replace(config, sip=dataclasses.replace(config.sip, cluster=True))
        if getattr(args, "trusted_proxy", None):
            proxies = tuple(dict.fromkeys((*config.sip.trusted_proxies, *args.trusted_proxy)))
            if not all(is_ip(p) for p in proxies):
                raise ValueError(f"--trusted-proxy {args.trusted_proxy}: IP addresses only")
            config = dataclasses.replace(
                config, sip=dataclasses.replace(config.sip, trusted_proxies=proxies)
            )
        if getattr(args, "node", None):
            config = dataclasses.replace(
                config, crm=dataclasses.replace(config.crm, node=args.node)
            )
    except ValueError as exc:
        raise ConfigError("command line", None, str(exc)) from exc
    if args.database_url:
        config = dataclasses.replace(config, database_url=args.database_url)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=Path(args.data_dir))
    return config


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not (sep and low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise ValueError(f"--rtp-ports {text!r}: LOW-HIGH within 1024-65535")
    return int(low), int(high)


def _auth_overrides(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        sip_listen=None,
        http_listen=None,
        database_url=args.database_url,
        data_dir=args.data_dir,
    )


async def serve(config: Config) -> int:
    from .runtime import settle_heap, start_engine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = await start_engine(config)
    settle_heap()
    logger.info(
        "callcenter serving: SIP %s (UDP, TCP), %d accounts, database %s",
        HostPort(config.sip.listen.host, engine.sip_port),
        len(config.accounts),
        "embedded" if engine.database and engine.database.embedded else "external",
    )
    try:
        await stop.wait()
        logger.info("stopping: hanging up %d calls", len(engine.switchboard.active))
    finally:
        await engine.stop()
    logger.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(
        getattr(args, "log_level", "INFO"), getattr(args, "log_format", None) or "text"
    )
    if args.command == "campaign":
        return asyncio.run(campaign_cli.run(args))
    if args.command == "tls-selfsigned":
        from .tls import make_self_signed

        if args.days < 1:
            print("callcenter: --days must be at least 1", file=sys.stderr)
            return 2
        try:
            cert, key = make_self_signed(
                Path(args.out), args.name or ["localhost", "127.0.0.1"], days=args.days
            )
        except OSError as exc:
            print(f"callcenter: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"certificate {cert}\nkey {key}")
        return 0
    try:
        config = load_config(args.config)
        if args.command == "check-config":
            print(f"{args.config}: ok ({len(config.accounts)} accounts)")
            return 0
        if args.command == "crm-auth":
            config = _apply_overrides(config, _auth_overrides(args))
            return asyncio.run(crm_auth(config, args.endpoint, args.code))
        config = _apply_overrides(config, args)
        if args.log_format is None and config.log_format != "text":
            configure_logging(args.log_level, config.log_format)
    except ConfigError as exc:
        print(f"callcenter: config error: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            return asyncio.run(serve(config))
        return uvloop.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
