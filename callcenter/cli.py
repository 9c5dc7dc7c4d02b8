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

from . import campaign_cli
from .config import Config, ConfigError, HostPort, load_config

logger = logging.getLogger("callcenter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcenter", description="SIP contact-center engine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the engine (SIP registrar + PBX) until SIGINT/SIGTERM",
        description="Run the engine. Without --database-url an embedded PostgreSQL is started in "
        "the data directory. SIGINT/SIGTERM hang up every call with BYE and stop cleanly.",
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
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    campaign_cli.add_parser(commands)
    check = commands.add_parser(
        "check-config", help="validate a config file and exit (2 on errors)"
    )
    check.add_argument("config")
    return parser


def _apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    try:
        if args.sip_listen:
            sip = dataclasses.replace(config.sip, listen=HostPort.parse(args.sip_listen))
            config = dataclasses.replace(config, sip=sip)
        if args.http_listen:
            config = dataclasses.replace(config, http_listen=HostPort.parse(args.http_listen))
    except ValueError as exc:
        raise ConfigError("command line", None, str(exc)) from exc
    if args.database_url:
        config = dataclasses.replace(config, database_url=args.database_url)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=Path(args.data_dir))
    return config


async def serve(config: Config) -> int:
    from .runtime import start_engine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = await start_engine(config)
    logger.info(
        "callcenter serving: SIP %s (UDP, TCP), %d accounts, database %s",
        f"{config.sip.listen.host}:{engine.sip_port}",
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
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "campaign":
        return asyncio.run(campaign_cli.run(args))
    try:
        config = load_config(args.config)
        if args.command == "check-config":
            print(f"{args.config}: ok ({len(config.accounts)} accounts)")
            return 0
        config = _apply_overrides(config, args)
    except ConfigError as exc:
        print(f"callcenter: config error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        uvloop = None
    with contextlib.suppress(KeyboardInterrupt):
        if uvloop is not None:
            return uvloop.run(serve(config))
        return asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
