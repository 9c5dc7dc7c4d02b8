"""IVR flows: the node model and the loader for TOML and JSON flow files.

A flow is a graph of named nodes walked from `start`. Loading validates everything a call would
otherwise trip over later (unknown or unreachable nodes, missing prompt files, bad digit maps,
bad numbers) and names the file, line and reason in a `FlowError`. tomllib and json keep no
positions for parsed values, so the loader finds the line of an offending node or key by
scanning the text, as callcenter's config reader does.

    start = "welcome"

    [nodes.welcome]
    kind = "menu"
    prompts = ["welcome.wav", { text = "Press 1 for sales" }]
    choices = { "1" = "sales", "9" = "optout" }
    timeout = 5
    retries = 2
    invalid_prompts = ["sorry.wav"]
    timeout_prompts = ["sorry.wav"]
    fallback = "bye"
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import FlowError, PromptError

logger = logging.getLogger(__name__)

DTMF_KEYS = frozenset("0123456789*#ABCD")
TRANSFER_KINDS = ("agent", "ringgroup", "number", "queue")
_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
# `{field}` in a target or assignee: filled from the call's data when the node runs.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, data: Mapping[str, object]) -> str | None:
    """`text` with each `{field}` replaced from `data`; None when a field is missing or empty."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = data.get(match.group(1))
        if found is None or str(found) == "":
            missing = True
            return ""
        return str(found)

    result = _PLACEHOLDER.sub(value, text)
    return None if missing else result


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One thing a caller hears: a WAV file or a text spoken by espeak-ng."""

    file: Path | None = None
    """The WAV as written in the flow, resolved against the flow file's folder."""
    text: str | None = None
    """Text to speak (text-to-speech) instead of a file."""
    audio: Path | None = None
    """The 8 kHz mono 16-bit WAV actually played (set when a PromptCache prepared the flow)."""

    def __str__(self) -> str:
        return str(self.file) if self.file is not None else f"text {self.text!r}"


@dataclass(frozen=True)
class Play:
    prompts: tuple[Prompt, ...]
    """Played in order; a digit stops them and is kept for the next node (barge-in)."""
    next: str
    """Where the flow goes afterwards."""


@dataclass(frozen=True)
class Menu:
    prompts: tuple[Prompt, ...]
    """The menu announcement; a digit pressed during it is the choice."""
    choices: dict[str, str]
    """Digit -> node."""
    timeout: float = 5.0
    """Seconds to wait for a digit after the prompts."""
    retries: int = 2
    """Further tries after a wrong digit or a timeout before `fallback`."""
    invalid_prompts: tuple[Prompt, ...] = ()
    """Played after a digit that is not a choice."""
    timeout_prompts: tuple[Prompt, ...] = ()
    """Played when no digit came in time."""
    fallback: str | None = None
    """Where the flow goes when the tries are used up; None hangs up."""


@dataclass(frozen=True)
class Collect:
    prompts: tuple[Prompt, ...]
    """What to enter ("your order number, then hash")."""
    variable: str
    """Name the digits are stored under (flow variables, see FlowContext.data)."""
    next: str
    digits: int = 1
    """How many digits at most."""
    terminator: str | None = "#"
    """Ends the input early (not stored); None: only `digits` or the timeout end it."""
    timeout: float = 5.0
    """Seconds to wait for each digit."""
    fallback: str | None = None
    """Where the flow goes when nothing was entered; None: `next` anyway."""


@dataclass(frozen=True)
class Hours:
    """Weekly opening hours in a time zone: "mon-fri 09:00-18:00, sat 10:00-14:00"."""

    spans: tuple[tuple[frozenset[int], time, time], ...]
    timezone: str = "UTC"

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.timezone))
        clock = local.time()
        return any(
            local.weekday() in days and opens <= clock < closes
            for days, opens, closes in self.spans
        )


@dataclass(frozen=True)
class Branch:
    then: str
    """Where the flow goes when the condition holds."""
    otherwise: str
    """Where it goes when it does not (key `else` in the file)."""
    hours: Hours | None = None
    """Condition: the call's time falls within these hours."""
    agents_available: str | None = None
    """Condition: someone can take a call now at this target (agent:EXT or ringgroup:NAME;
    `{field}` placeholders as in Transfer.target)."""
    field: str | None = None
    """Condition on call data (lead fields, collected variables): equals / one_of / non-empty."""
    equals: str | None = None
    one_of: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Transfer:
    target: str
    """agent:EXT, ringgroup:NAME, queue:NAME (the caller waits there) or number:E164 (out
    through a trunk). `{field}` takes the
    value from the call's data: `agent:{manager}` rings the lead's responsible manager."""
    timeout: float = 30.0
    """Seconds the target may ring."""
    prompts: tuple[Prompt, ...] = ()
    """Played before ringing ("connecting you")."""
    fallback: str | None = None
    """Where the flow goes when nobody answers or nobody is free; None hangs up."""


@dataclass(frozen=True)
class Callback:
    assignee: str | None = None
    """Extension to call back (`{field}` allowed); None: the contact's responsible manager."""
    due_minutes: float = 15.0
    text: str = ""
    prompts: tuple[Prompt, ...] = ()
    """Confirmation played after the task is made ("we will call you back")."""
    next: str | None = None
    """None hangs up."""


@dataclass(frozen=True)
class OptOut:
    prompts: tuple[Prompt, ...] = ()
    """Confirmation played after the number is barred."""
    scope: str = "global"
    """global: never called again; campaign: not by this campaign."""
    next: str | None = None


@dataclass(frozen=True)
class VoicemailDrop:
    prompts: tuple[Prompt, ...]
    """The message left after the beep (played without barge-in)."""
    beep_timeout: float = 30.0
    """Seconds to wait for the beep; the message is played anyway after that."""
    next: str | None = None


@dataclass(frozen=True)
class Hangup:
    prompts: tuple[Prompt, ...] = ()
    """Goodbye, played before the hang-up."""


Node = Play | Menu | Collect | Branch | Transfer | Callback | OptOut | VoicemailDrop | Hangup


@dataclass(frozen=True)
class Flow:
    name: str
    start: str
    nodes: dict[str, Node]
    source: str = "<string>"
    """The file it came from, for messages."""

    def prompts(self) -> Iterator[Prompt]:
        for node in self.nodes.values():
            yield from _node_prompts(node)


def _node_prompts(node: Node) -> Iterator[Prompt]:
    if isinstance(node, Branch):
        return
    yield from node.prompts
    if isinstance(node, Menu):
        yield from node.invalid_prompts
        yield from node.timeout_prompts


def successors(node: Node) -> list[tuple[str, str]]:
    """(key, node name) of every edge leaving `node`."""
    edges: list[tuple[str, str | None]] = []
    if isinstance(node, Play | Collect):
        edges.append(("next", node.next))
    if isinstance(node, Callback | OptOut | VoicemailDrop):
        edges.append(("next", node.next))
    if isinstance(node, Menu | Collect | Transfer):
        edges.append(("fallback", node.fallback))
    if isinstance(node, Menu):
        edges.extend(("choices", target) for target in node.choices.values())
    if isinstance(node, Branch):
        edges += [("then", node.then), ("else", node.otherwise)]
    return [(key, name) for key, name in edges if name is not None]


# -- loading ------------------------------------------------------------------------------------

PromptMaker = Callable[[Prompt], Path]
"""Turns a prompt into a playable 8 kHz WAV (PromptCache.prepare); raises PromptError."""


def load_flow(
    path: str | Path, *, name: str | None = None, prepare: PromptMaker | None = None
) -> Flow:
    """Read and validate a .toml or .json flow; `prepare` makes every prompt playable now."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(str(path), None, f"cannot read: {exc.strerror}") from exc
    kind = "json" if path.suffix.lower() == ".json" else "toml"
    return parse_flow(
        text,
        kind=kind,
        source=str(path),
        name=name or path.stem,
        base=path.resolve().parent,
        prepare=prepare,
    )


def parse_flow(
    text: str,
    *,
    kind: str = "toml",
    source: str = "<string>",
    name: str = "flow",
    base: Path | None = None,
    prepare: PromptMaker | None = None,
) -> Flow:
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FlowError(source, exc.lineno, f"not valid JSON: {exc.msg}") from exc
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            raise FlowError(source, int(match.group(1)) if match else None, str(exc)) from exc
    if not isinstance(data, dict):
        raise FlowError(source, 1, "a flow is a table with `start` and `nodes`")
    reader = _Reader(text, kind, source, base or Path.cwd(), prepare)
    return reader.flow(data, name)


_TOP_KEYS = {"name", "start", "nodes"}
_COMMON = {"kind"}
_KEYS: dict[str, set[str]] = {
    "play": {"prompts", "next"},
    "menu": {
        "prompts",
        "choices",
        "timeout",
        "retries",
        "invalid_prompts",
        "timeout_prompts",
        "fallback",
    },
    "collect": {"prompts", "variable", "next", "digits", "terminator", "timeout", "fallback"},
    "branch": {
        "then",
        "else",
        "hours",
        "timezone",
        "agents_available",
        "field",
        "equals",
        "one_of",
    },
    "transfer": {"target", "timeout", "prompts", "fallback"},
    "callback": {"assignee", "due_minutes", "text", "prompts", "next"},
    "opt-out": {"prompts", "scope", "next"},
    "voicemail-drop": {"prompts", "beep_timeout", "next"},
    "hangup": {"prompts"},
}
NODE_KINDS = tuple(_KEYS)


class _Reader:
    def __init__(
        self, text: str, kind: str, source: str, base: Path, prepare: PromptMaker | None
    ) -> None:
        self.lines = text.splitlines()
        self.kind = kind
        self.source = source
        self.base = base
        self.prepare = prepare
        self.node_names: set[str] = set()

    # -- where things are -----------------------------------------------------------------------

    def fail(self, reason: str, node: str | None = None, key: str | None = None) -> FlowError:
        return FlowError(self.source, self._line_of(node, key), reason)

    def _node_start(self, node: str) -> int | None:
        quoted = re.escape(node)
        if self.kind == "toml":
            pattern = re.compile(
                rf"^\s*\[\s*nodes\s*\.\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*\]\s*(#.*)?$"
            )
        else:
            pattern = re.compile(rf"\"{quoted}\"\s*:\s*\{{")
        nodes_seen = self.kind == "toml"
        for number, line in enumerate(self.lines):
            if not nodes_seen and re.search(r"\"nodes\"\s*:", line):
                nodes_seen = True
            if nodes_seen and pattern.search(line):
                return number
        if self.kind == "toml":  # nodes = { name = {...} } or [nodes] name = {...}
            inline = re.compile(rf"^\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*=\s*\{{")
            for number, line in enumerate(self.lines):
                if inline.search(line):
                    return number
        return None

    def _line_of(self, node: str | None, key: str | None) -> int | None:
        if node is None:
            if key is None:
                return None
            pattern = self._key_pattern(key)
            for number, line in enumerate(self.lines):
                if self.kind == "toml" and line.lstrip().startswith("["):
                    break
                if pattern.search(line):
                    return number + 1
            return None
        start = self._node_start(node)
        if start is None:
            return None
        if key is None:
            return start + 1
        pattern = self._key_pattern(key)
        for number in range(start, len(self.lines)):
            line = self.lines[number]
            if number > start and self._ends_node(line):
                break
            if pattern.search(line):
                return number + 1
        # A sub-table: [nodes.NAME.choices]
        if self.kind == "toml":
            sub = re.compile(rf"^\s*\[\s*nodes\s*\.\s*\"?{re.escape(node)}\"?\s*\.\s*{key}\s*\]")
            for number, line in enumerate(self.lines):
                if sub.search(line):
                    return number + 1
        return start + 1

    def _key_pattern(self, key: str) -> re.Pattern[str]:
        if self.kind == "toml":
            return re.compile(rf"(^\s*|[{{,]\s*)(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        return re.compile(rf"\"{re.escape(key)}\"\s*:")

    def _ends_node(self, line: str) -> bool:
        if self.kind == "toml":
            return line.lstrip().startswith("[") and not line.lstrip().startswith("[[")
        # JSON: the next node starts with `"name": {`.
        match = re.match(r"^\s*\"([^\"]+)\"\s*:\s*\{", line)
        return match is not None and match.group(1) in self.node_names

    # -- values ---------------------------------------------------------------------------------

    def flow(self, data: dict[str, Any], name: str) -> Flow:
        for key in data:
            if key not in _TOP_KEYS:
                raise self.fail(f"unknown key {key!r}", key=key)
        nodes_data = data.get("nodes")
        if not isinstance(nodes_data, dict) or not nodes_data:
            raise self.fail("a flow needs a `nodes` table with at least one node", key="nodes")
        self.node_names = {str(n) for n in nodes_data}
        start = data.get("start")
        if not isinstance(start, str) or not start:
            raise self.fail("missing `start`: the name of the first node", key="start")
        if start not in nodes_data:
            raise self.fail(f"start names unknown node {start!r}", key="start")
        nodes: dict[str, Node] = {}
        for node_name, item in nodes_data.items():
            if not isinstance(item, dict):
                raise self.fail(f"node {node_name!r} must be a table", node_name)
            nodes[node_name] = self.node(node_name, item)
        for node_name, node in nodes.items():
            for key, target in successors(node):
                if target not in nodes:
                    raise self.fail(
                        f"node {node_name!r}: {key} goes to unknown node {target!r}",
                        node_name,
                        key,
                    )
        reached = _reachable(nodes, start)
        for node_name in nodes:
            if node_name not in reached:
                raise self.fail(
                    f"node {node_name!r} is unreachable from start {start!r}", node_name
                )
        flow_name = data.get("name", name)
        if not isinstance(flow_name, str) or not flow_name:
            raise self.fail("name must be a non-empty string", key="name")
        return Flow(flow_name, start, nodes, self.source)

    def node(self, name: str, item: dict[str, Any]) -> Node:
        kind = item.get("kind")
        if kind not in _KEYS:
            raise self.fail(
                f"node {name!r}: kind must be one of {', '.join(NODE_KINDS)}, got {kind!r}",
                name,
                "kind",
            )
        allowed = _KEYS[kind] | _COMMON
        for key in item:
            if key not in allowed:
                raise self.fail(f"node {name!r} ({kind}): unknown key {key!r}", name, key)
        get = _Getter(self, name, item)
        if kind == "play":
            return Play(get.prompts("prompts", required=True), get.name("next"))
        if kind == "menu":
            return Menu(
                prompts=get.prompts("prompts", required=True),
                choices=get.choices(),
                timeout=get.number("timeout", 5.0, minimum=0.5),
                retries=int(get.number("retries", 2, minimum=0, whole=True)),
                invalid_prompts=get.prompts("invalid_prompts"),
                timeout_prompts=get.prompts("timeout_prompts"),
                fallback=get.name("fallback", required=False),
            )
        if kind == "collect":
            terminator = item.get("terminator", "#")
            if terminator == "":
                terminator = None
            if terminator is not None and terminator not in DTMF_KEYS:
                raise self.fail(
                    f'node {name!r}: terminator must be one DTMF key or ""', name, "terminator"
                )
            variable = item.get("variable")
            if not isinstance(variable, str) or not re.fullmatch(
                r"[A-Za-z_][A-Za-z0-9_]*", variable
            ):
                raise self.fail(
                    f"node {name!r}: variable must be a name (letters, digits, _)", name, "variable"
                )
            return Collect(
                prompts=get.prompts("prompts"),
                variable=variable,
                next=get.name("next"),
                digits=int(get.number("digits", 1, minimum=1, whole=True)),
                terminator=terminator,
                timeout=get.number("timeout", 5.0, minimum=0.5),
                fallback=get.name("fallback", required=False),
            )
        if kind == "branch":
            return self.branch(name, item, get)
        if kind == "transfer":
            target = item.get("target")
            kind_, _, value = str(target).partition(":")
            if (
                not isinstance(target, str)
                or kind_ not in TRANSFER_KINDS
                or not value
                or (
                    kind_ == "number"
                    and not _NUMBER.match(value)
                    and not _PLACEHOLDER.search(value)
                )
            ):
                raise self.fail(
                    f"node {name!r}: target must be agent:EXT, ringgroup:NAME, queue:NAME or"
                    " number:+E164,"
                    f" got {target!r}",
                    name,
                    "target",
                )
            return Transfer(
                target=target,
                timeout=get.number("timeout", 30.0, minimum=1),
                prompts=get.prompts("prompts"),
                fallback=get.name("fallback", required=False),
            )
        if kind == "callback":
            assignee = item.get("assignee")
            return Callback(
                assignee=str(assignee) if assignee is not None else None,
                due_minutes=get.number("due_minutes", 15.0, minimum=0),
                text=str(item.get("text", "")),
                prompts=get.prompts("prompts"),
                next=get.name("next", required=False),
            )
        if kind == "opt-out":
            scope = item.get("scope", "global")
            if scope not in ("global", "campaign"):
                raise self.fail(f"node {name!r}: scope must be global or campaign", name, "scope")
            return OptOut(get.prompts("prompts"), scope, get.name("next", required=False))
        if kind == "voicemail-drop":
            return VoicemailDrop(
                prompts=get.prompts("prompts", required=True),
                beep_timeout=get.number("beep_timeout", 30.0, minimum=0),
                next=get.name("next", required=False),
            )
        return Hangup(get.prompts("prompts"))

    def branch(self, name: str, item: dict[str, Any], get: _Getter) -> Branch:
        conditions = [k for k in ("hours", "agents_available", "field") if k in item]
        if len(conditions) != 1:
            raise self.fail(
                f"node {name!r}: a branch needs exactly one of hours, agents_available, field",
                name,
                conditions[1] if len(conditions) > 1 else None,
            )
        hours = None
        if "hours" in item:
            try:
                hours = parse_hours(str(item["hours"]), str(item.get("timezone", "UTC")))
            except ValueError as exc:
                raise self.fail(f"node {name!r}: {exc}", name, "hours") from exc
        available = item.get("agents_available")
        if available is not None:
            kind, _, value = str(available).partition(":")
            if kind not in ("agent", "ringgroup") or not value:
                raise self.fail(
                    f"node {name!r}: agents_available must be agent:EXT or ringgroup:NAME",
                    name,
                    "agents_available",
                )
        one_of = item.get("one_of")
        if one_of is not None and not isinstance(one_of, list):
            raise self.fail(f"node {name!r}: one_of must be a list", name, "one_of")
        if ("equals" in item or one_of is not None) and "field" not in item:
            raise self.fail(f"node {name!r}: equals/one_of need a field", name, "equals")
        return Branch(
            then=get.name("then"),
            otherwise=get.name("else"),
            hours=hours,
            agents_available=str(available) if available is not None else None,
            field=str(item["field"]) if "field" in item else None,
            equals=str(item["equals"]) if "equals" in item else None,
            one_of=tuple(str(v) for v in one_of) if one_of is not None else None,
        )

    def prompt(self, node: str, key: str, spec: Any) -> Prompt:
        if isinstance(spec, str):
            if not spec:
                raise self.fail(f"node {node!r}: empty prompt file name", node, key)
            path = Path(spec)
            if not path.is_absolute():
                path = (self.base / path).resolve()
            if not path.is_file():
                raise self.fail(f"node {node!r}: prompt file {spec} does not exist", node, key)
            prompt = Prompt(file=path)
        elif isinstance(spec, dict) and set(spec) == {"text"} and isinstance(spec["text"], str):
            if not spec["text"].strip():
                raise self.fail(f"node {node!r}: empty prompt text", node, key)
            prompt = Prompt(text=spec["text"])
        else:
            raise self.fail(
                f'node {node!r}: a prompt is a file name or {{ text = "..." }}, got {spec!r}',
                node,
                key,
            )
        if self.prepare is not None:
            try:
                return Prompt(file=prompt.file, text=prompt.text, audio=self.prepare(prompt))
            except PromptError as exc:
                raise self.fail(f"node {node!r}: {exc}", node, key) from exc
        return prompt


class _Getter:
    """Typed reads of one node's keys, failing with the node's line."""

    def __init__(self, reader: _Reader, node: str, item: dict[str, Any]) -> None:
        self.r, self.node, self.item = reader, node, item

    def name(self, key: str, *, required: bool = True) -> Any:
        value = self.item.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.r.fail(f"node {self.node!r}: {key} must name a node", self.node, key)
        return value

    def number(self, key: str, default: float, *, minimum: float, whole: bool = False) -> float:
        value = self.item.get(key, default)
        wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
        if wrong_type or value < minimum or (whole and not float(value).is_integer()):
            what = "a whole number" if whole else "a number"
            raise self.r.fail(
                f"node {self.node!r}: {key} must be {what} >= {minimum:g}", self.node, key
            )
        return float(value)

    def prompts(self, key: str, *, required: bool = False) -> tuple[Prompt, ...]:
        value = self.item.get(key)
        if value is None:
            if required:
                raise self.r.fail(f"node {self.node!r}: {key} is required", self.node, key)
            return ()
        specs = value if isinstance(value, list) else [value]
        if required and not specs:
            raise self.r.fail(f"node {self.node!r}: {key} is empty", self.node, key)
        return tuple(self.r.prompt(self.node, key, spec) for spec in specs)

    def choices(self) -> dict[str, str]:
        value = self.item.get("choices")
        if not isinstance(value, dict) or not value:
            raise self.r.fail(
                f"node {self.node!r}: choices must map digits to nodes", self.node, "choices"
            )
        for digit, target in value.items():
            if len(digit) != 1 or digit.upper() not in DTMF_KEYS:
                raise self.r.fail(
                    f"node {self.node!r}: choice {digit!r} is not one DTMF key (0-9 * # A-D)",
                    self.node,
                    "choices",
                )
            if not isinstance(target, str) or not target:
                raise self.r.fail(
                    f"node {self.node!r}: choice {digit!r} must name a node", self.node, "choices"
                )
        return {digit.upper(): target for digit, target in value.items()}


def _reachable(nodes: dict[str, Node], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for _, target in successors(nodes[todo.pop()]):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*$")


def parse_hours(text: str, timezone: str = "UTC") -> Hours:
    """ "mon-fri 09:00-18:00, sat 10:00-14:00" in an IANA time zone; closing time exclusive."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {timezone!r}") from exc
    spans = []
    for part in text.lower().split(","):
        match = _SPAN.match(part)
        if not match or match.group(1) not in _DAYS or (match.group(2) or "mon") not in _DAYS:
            raise ValueError(f"hours must look like 'mon-fri 09:00-18:00', got {part.strip()!r}")
        first = _DAYS.index(match.group(1))
        last = _DAYS.index(match.group(2)) if match.group(2) else first
        days = (
            frozenset(range(first, last + 1))
            if first <= last
            else frozenset([*range(first, 7), *range(0, last + 1)])
        )
        h1, m1, h2, m2 = (int(g) for g in match.group(3, 4, 5, 6))
        if h1 > 23 or m1 > 59 or m2 > 59 or (h2, m2) > (24, 0) or (h1, m1) >= (h2, m2):
            raise ValueError(f"bad time span in {part.strip()!r}")
        closes = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        spans.append((days, time(h1, m1), closes))
    return Hours(tuple(spans), timezone)


__all__ = [
    "DTMF_KEYS",
    "NODE_KINDS",
    "Branch",
    "Callback",
    "Collect",
    "Flow",
    "Hangup",
    "Hours",
    "Menu",
    "Node",
    "OptOut",
    "Play",
    "Prompt",
    "PromptMaker",
    "Transfer",
    "VoicemailDrop",
    "expand",
    "load_flow",
    "parse_flow",
    "parse_hours",
    "successors",
]
