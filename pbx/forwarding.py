"""Do not disturb and call forwarding per extension: the settings, their feature codes, and
what a call to an extension does with them.

Pure: the switchboard hands in whether the extension is busy and has a phone registered, and
acts on the decision (refuse, ring, ring then forward, forward at once). A forward goes one hop:
a call forwarded to another extension rings that extension's phones (or is refused busy) but
never follows that extension's own forwarding, so two agents forwarding to each other cannot
loop.

Feature codes (none clashes with *50/*51 away, *45/*46 queues, *8 / **EXT pickup or
*1/*2/*3EXT monitoring):

    *78 DND on            *79 DND off
    *72NUMBER forward all (unconditional)      *73 off
    *90NUMBER forward when busy                *91 off
    *92NUMBER forward when not answered        *93 off
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_NO_ANSWER_AFTER = 20.0
"""Seconds an extension rings before a no-answer forward takes the call."""

# Where a call may be forwarded: an extension (2-8 digits) or an external number (7-15 digits,
# optionally with a leading +); which of the two is decided against the extensions.
_TARGET = re.compile(r"^\+?[0-9]{2,15}$")

_ON_OFF = {"*78": ("dnd", True), "*79": ("dnd", False)}
_SET = {"*72": "always", "*90": "busy", "*92": "no_answer"}
_CLEAR = {"*73": "always", "*91": "busy", "*93": "no_answer"}


class ForwardingError(ValueError):
    """Settings that cannot be applied (a bad target, a bad delay): the reason says which."""


@dataclass(frozen=True)
class Forwarding:
    """One extension's settings (the configuration's defaults, changed by phone or API)."""

    dnd: bool = False
    """Do not disturb: the phone never rings; callers are refused busy or forwarded when busy."""
    always: str | None = None
    """Unconditional: every call goes here instead of ringing the phone."""
    busy: str | None = None
    """Where calls go while the extension is busy (or in DND)."""
    no_answer: str | None = None
    """Where calls go after `no_answer_after` seconds of ringing (or at once, with no phone)."""
    no_answer_after: float = DEFAULT_NO_ANSWER_AFTER

    def to_json(self) -> dict[str, Any]:
        return {
            "dnd": self.dnd,
            "always": self.always,
            "busy": self.busy,
            "no_answer": self.no_answer,
            "no_answer_after": self.no_answer_after,
        }

    def updated(self, body: Any) -> Forwarding:
        """These settings with the fields of a JSON object changed (ForwardingError if bad)."""
        if not isinstance(body, dict):
            raise ForwardingError("body must be a JSON object")
        unknown = set(body) - set(self.to_json())
        if unknown:
            raise ForwardingError(f"unknown field {sorted(unknown)[0]!r}")
        changes: dict[str, Any] = {}
        if "dnd" in body:
            if not isinstance(body["dnd"], bool):
                raise ForwardingError("dnd must be true or false")
            changes["dnd"] = body["dnd"]
        for key in ("always", "busy", "no_answer"):
            if key in body:
                changes[key] = check_target(body[key], key)
        if "no_answer_after" in body:
            changes["no_answer_after"] = check_delay(body["no_answer_after"])
        return replace(self, **changes)


def check_target(value: Any, what: str) -> str | None:
    """A forward target as given (None or "" clears it); ForwardingError when not a number."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TARGET.match(value):
        raise ForwardingError(f"{what} must be an extension or a phone number, not {value!r}")
    return value


def check_delay(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 300:
        raise ForwardingError("no_answer_after must be a number of seconds from 1 to 300")
    return float(value)


@dataclass(frozen=True)
class ForwardCode:
    """A dialled DND / forwarding code: the field it sets and the new value."""

    field: str
    """dnd, always, busy or no_answer."""
    value: bool | str | None
    """True/False for dnd; the target, or None to clear, for a forward."""


def parse_forward_code(dialled: str) -> ForwardCode | None:
    """The DND / forwarding code in a dialled string; None when it is none (a code with a bad
    target is none either: the switchboard then refuses it as an unknown number)."""
    if dialled in _ON_OFF:
        return ForwardCode(*_ON_OFF[dialled])
    if dialled in _CLEAR:
        return ForwardCode(_CLEAR[dialled], None)
    code, rest = dialled[:3], dialled[3:]
    if code in _SET and rest and _TARGET.match(rest):
        return ForwardCode(_SET[code], rest)
    return None


def apply_code(settings: Forwarding, code: ForwardCode) -> Forwarding:
    changes: dict[str, Any] = {code.field: code.value}
    return replace(settings, **changes)


# -- what a call to an extension does ------------------------------------------------------


@dataclass(frozen=True)
class Refuse:
    status: int
    """486 busy (or DND), 480 no phone registered."""
    reason: str


@dataclass(frozen=True)
class Forward:
    target: str
    reason: str
    """RFC 5806 Diversion reason: unconditional, user-busy, do-not-disturb, no-answer,
    unavailable."""


@dataclass(frozen=True)
class Ring:
    then: str | None = None
    """Forward here when the phone does not answer within `after` seconds."""
    after: float = DEFAULT_NO_ANSWER_AFTER


Decision = Refuse | Forward | Ring


def decide(settings: Forwarding, *, busy: bool, registered: bool) -> Decision:
    """What a call to an extension with `settings` does now."""
    if settings.always:
        return Forward(settings.always, "unconditional")
    if settings.dnd:
        return Forward(settings.busy, "do-not-disturb") if settings.busy else Refuse(486, "dnd")
    if busy:
        return Forward(settings.busy, "user-busy") if settings.busy else Refuse(486, "busy")
    if not registered:
        if settings.no_answer:
            return Forward(settings.no_answer, "unavailable")
        return Refuse(480, "unavailable")
    return Ring(settings.no_answer, settings.no_answer_after)
