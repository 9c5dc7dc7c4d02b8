"""`callcenter campaign ...`: manage campaigns of a running engine through its REST API."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

DEFAULT_API = "http://127.0.0.1:8080"


def add_parser(commands: Any) -> None:
    campaign = commands.add_parser(
        "campaign",
        help="create, start, pause, resume, stop and watch dialer campaigns",
        description="Talks to a running engine's REST API. The API key comes from --key or "
        "$CALLCENTER_API_KEY (a manager or admin key).",
    )
    campaign.add_argument(
        "--api",
        default=os.environ.get("CALLCENTER_API", DEFAULT_API),
        help="engine HTTP address (default: %(default)s)",
    )
    campaign.add_argument("--key", default=os.environ.get("CALLCENTER_API_KEY"), help="API key")
    actions = campaign.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a campaign and upload its leads (CSV)")
    create.add_argument("name")
    create.add_argument("--leads", type=Path, required=True, help="CSV with a phone column")
    create.add_argument(
        "--agents", default="", help="comma-separated extensions, e.g. 101,102 (power, predictive)"
    )
    create.add_argument("--mode", choices=["power", "predictive", "broadcast"], default="power")
    create.add_argument("--flow", help="broadcast: the IVR flow each person hears ([ivr] flows)")
    create.add_argument("--lines", type=int, default=10, help="broadcast: calls at once at most")
    create.add_argument(
        "--require-consent", action="store_true", help="dial only leads whose consent is yes"
    )
    create.add_argument("--voicemail", help="WAV left on answering machines")
    create.add_argument(
        "--no-amd", action="store_true", help="no answering-machine detection: connect every answer"
    )
    create.add_argument(
        "--amd-max-seconds", type=float, default=6.0, help="latest AMD verdict after answer"
    )
    create.add_argument(
        "--amd-initial-silence", type=float, default=3.0,
        help="silence after answer that makes the verdict unsure (seconds)",
    )  # fmt: skip
    create.add_argument(
        "--amd-unsure", choices=["connect", "voicemail", "hangup"], default="connect",
        help="what an unsure AMD verdict does (default connect an agent)",
    )  # fmt: skip
    create.add_argument(
        "--connect-seconds", type=float, default=2.0,
        help="longest wait of a person who answered for an agent before it counts as abandoned",
    )  # fmt: skip
    create.add_argument("--ratio", type=float, default=1.5, help="lines per idle agent (power)")
    create.add_argument("--caller-id", default="")
    create.add_argument("--hours", default="09:00-21:00", help="calling window in the lead's time")
    create.add_argument("--max-attempts", type=int, default=3)
    for verb in ("start", "pause", "resume", "stop"):
        actions.add_parser(verb, help=f"{verb} a campaign").add_argument(
            "campaign", help="name or id"
        )
    status = actions.add_parser("status", help="progress of a campaign (--watch: live)")
    status.add_argument("campaign", help="name or id")
    status.add_argument("--watch", action="store_true", help="refresh until it finishes")
    actions.add_parser("list", help="every campaign with its state")


class ApiFailure(Exception):
    pass


async def _request(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> Any:
    async with http.request(method, path, **kw) as response:
        body = await response.json(content_type=None)
        if response.status >= 400:
            reason = body.get("error", {}).get("reason") if isinstance(body, dict) else None
            raise ApiFailure(f"{method} {path}: {response.status} {reason or ''}".strip())
        return body


async def _all_campaigns(http: aiohttp.ClientSession) -> AsyncIterator[dict[str, Any]]:
    """Every campaign, page after page."""
    offset: int | None = 0
    while offset is not None:
        page = await _request(http, "GET", f"/campaigns?limit=500&offset={offset}")
        for campaign in page["campaigns"]:
            yield campaign
        offset = page.get("next_offset")


async def _find(http: aiohttp.ClientSession, ref: str) -> dict[str, Any]:
    if ref.isdigit():
        found: dict[str, Any] = await _request(http, "GET", f"/campaigns/{ref}")
        return found
    async for campaign in _all_campaigns(http):
        if campaign["name"] == ref:
            return dict(campaign)
    raise ApiFailure(f"no campaign named {ref!r}")


def progress_line(campaign: dict[str, Any], width: int = 30) -> str:
    """`name [#####.....] 40% dialled 4/10 answered 2 connected 2 abandoned 0 (0.0%) state`"""
    p = campaign.get("progress") or {}
    total = max(1, int(p.get("total", 0)))
    done = total - int(p.get("remaining", 0))
    filled = round(width * done / total)
    rate = 100.0 * float(p.get("abandon_rate") or 0.0)
    return (
        (
            f"{campaign['name']} [{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}%"
            f" dialled {p.get('dialled', 0)} answered {p.get('answered_human', 0)}"
            f" machines {p.get('answered_machine', 0)} connected {p.get('connected', 0)}"
            f" abandoned {p.get('abandoned', 0)} ({rate:.1f}%) remaining {p.get('remaining', 0)}"
            f" {campaign['state']}"
        )
        + _amd_part(campaign.get("amd_summary"))
        + _broadcast_part(campaign.get("broadcast"))
    )


def _amd_part(amd: dict[str, Any] | None) -> str:
    """AMD verdicts and, once agents disposed some answers, the measured error rates."""
    if not amd or not amd.get("verdicts"):
        return ""
    quality = amd["quality"]

    def share(rate: float | None) -> str:
        return "-" if rate is None else f"{100 * rate:.1f}%"

    return (
        f" | amd human {amd['human']} machine {amd['machine']} unsure {amd['unsure']}"
        f" sit {amd['sit']} fax {amd['fax']} median {amd['median_seconds']}s"
        f" false-person {share(quality['false_person_rate'])}"
        f" false-machine {share(quality['false_machine_rate'])} ({quality['judged']} judged)"
    )


def _broadcast_part(results: dict[str, Any] | None) -> str:
    if not results:
        return ""
    return (
        f" | reached {results['reached']} listened {results['listened_to_end']}"
        f" pressed-1 {results['pressed_1']} connected {results['connected']}"
        f" callbacks {results['callbacks_created']} ({results['callbacks_completed']} done)"
        f" opted-out {results['opted_out']} voicemails {results['voicemails_left']}"
    )


async def run(args: argparse.Namespace) -> int:
    if not args.key:
        print(
            "callcenter campaign: an API key is needed (--key or $CALLCENTER_API_KEY)",
            file=sys.stderr,
        )
        return 2
    headers = {"Authorization": f"Bearer {args.key}"}
    async with aiohttp.ClientSession(args.api, headers=headers) as http:
        try:
            return await _action(http, args)
        except ApiFailure as exc:
            print(f"callcenter campaign: {exc}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as exc:
            print(
                f"callcenter campaign: engine not reachable at {args.api}: {exc}", file=sys.stderr
            )
            return 1


async def _action(http: aiohttp.ClientSession, args: argparse.Namespace) -> int:
    if args.action == "create":
        start, _, end = args.hours.partition("-")
        settings = {
            "name": args.name,
            "agents": [a.strip() for a in args.agents.split(",") if a.strip()],
            "mode": args.mode,
            "ratio": args.ratio,
            "caller_id": args.caller_id,
            "window_start": start,
            "window_end": end,
            "max_attempts": args.max_attempts,
            "lines": args.lines,
            "require_consent": args.require_consent,
            "amd": not args.no_amd,
            "amd_max_seconds": args.amd_max_seconds,
            "amd_initial_silence_seconds": args.amd_initial_silence,
            "amd_unsure": args.amd_unsure,
            "connect_seconds": args.connect_seconds,
        }
        if args.flow:
            settings["flow"] = args.flow
        if args.voicemail:
            settings["voicemail_prompt"] = str(Path(args.voicemail).resolve())
        created = await _request(http, "POST", "/campaigns", json=settings)
        imported = await _request(
            http,
            "POST",
            f"/campaigns/{created['id']}/leads",
            data=args.leads.read_bytes(),
            headers={"Content-Type": "text/csv"},
        )
        print(
            f"campaign {args.name} (id {created['id']}): {imported['imported']} leads imported, "
            f"{imported['merged']} merged, {imported['dnc']} on DNC"
        )
        for error in imported["errors"]:
            print(f"{args.leads}:{error['line']}: {error['reason']}")
        return 0
    if args.action == "list":
        async for campaign in _all_campaigns(http):
            print(progress_line(campaign))
        return 0
    campaign = await _find(http, args.campaign)
    if args.action in ("start", "pause", "resume", "stop"):
        updated = await _request(http, "POST", f"/campaigns/{campaign['id']}/{args.action}")
        print(f"campaign {updated['name']}: {updated['state']}")
        return 0
    while True:
        campaign = await _request(http, "GET", f"/campaigns/{campaign['id']}")
        line = progress_line(campaign)
        finished = campaign["state"] == "finished" or not campaign["progress"]["remaining"]
        if not args.watch:
            print(line)
            return 0
        print("\r" + line, end="" if not finished else "\n", flush=True)
        if finished:
            return 0
        await asyncio.sleep(1.0)
