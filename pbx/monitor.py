"""Supervisor monitoring of an agent's call: listen, whisper (coach) and barge.

The call's two legs and the supervisor's leg become a three-party Conference (telephony.aio)
whose MixMatrix follows the mode:

    listen   supervisor hears agent + customer; nobody hears the supervisor
    whisper  agent hears customer + supervisor; customer hears the agent only
    barge    everyone hears everyone

The recording listens to what the customer's and the agent's phones send, so whisper audio
never reaches its two channels. The supervisor switches modes with DTMF 4/5/6 or over the API;
when the supervisor leaves (or the call ends) the legs go back to the plain packet relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from telephony.aio import Call, Conference, MediaClock, bridge
from telephony.call import Dtmf, Ended
from telephony.media import MixMatrix, ToneSource

from .b2bua import BridgedCall

logger = logging.getLogger(__name__)

CUSTOMER, AGENT, SUPERVISOR = 0, 1, 2
"""Party indexes of a monitored call's mix."""


class MonitorMode(enum.Enum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


# *1EXT listen, *2EXT whisper, *3EXT barge.
MONITOR_CODE = re.compile(r"^\*(?P<mode>[123])(?P<ext>[0-9]{2,8})$")
MODE_BY_CODE = {"1": MonitorMode.LISTEN, "2": MonitorMode.WHISPER, "3": MonitorMode.BARGE}
MODE_BY_DIGIT = {"4": MonitorMode.LISTEN, "5": MonitorMode.WHISPER, "6": MonitorMode.BARGE}
"""DTMF the supervisor presses during a session to switch modes."""

# Who hears whom, as (speaker, listener) pairs; everything else is closed.
_ROUTES: dict[MonitorMode, tuple[tuple[int, int], ...]] = {
    MonitorMode.LISTEN: (
        (CUSTOMER, AGENT),
        (AGENT, CUSTOMER),
        (CUSTOMER, SUPERVISOR),
        (AGENT, SUPERVISOR),
    ),
    MonitorMode.WHISPER: (
        (CUSTOMER, AGENT),
        (AGENT, CUSTOMER),
        (CUSTOMER, SUPERVISOR),
        (AGENT, SUPERVISOR),
        (SUPERVISOR, AGENT),
    ),
    MonitorMode.BARGE: tuple(
        (s, listener) for s in range(3) for listener in range(3) if s != listener
    ),
}
# The agent hears a short high beep when a supervisor joins (when configured).
_JOIN_BEEP = (1400.0,)


def mode_matrix(mode: MonitorMode) -> MixMatrix:
    """The three-party mix of `mode` (parties CUSTOMER, AGENT, SUPERVISOR)."""
    matrix = MixMatrix(3, conference=False)
    for speaker, listener in _ROUTES[mode]:
        matrix.connect(speaker, listener)
    return matrix


def parse_monitor(dialled: str) -> tuple[MonitorMode, str] | None:
    """(mode, agent extension) of *1EXT / *2EXT / *3EXT; None for anything else."""
    match = MONITOR_CODE.match(dialled)
    if match is None:
        return None
    return MODE_BY_CODE[match["mode"]], match["ext"]


@dataclass(frozen=True)
class MonitorSettings:
    beep: bool = False
    """Play the agent a short beep when a supervisor starts monitoring."""


@dataclass(frozen=True)
class MonitorEvent:
    """One line of the monitoring audit: a session started, changed mode or ended."""

    session: int
    """The session's number in this engine (the API's session id)."""
    call_id: str
    """The monitored call (caller leg's Call-ID)."""
    supervisor: str
    agent: str
    action: str
    """started, mode or ended."""
    mode: MonitorMode
    """The mode from this event on (the last mode for `ended`)."""
    at: datetime


class MonitorError(Exception):
    """A monitor request the engine refuses; `status` is the SIP/HTTP answer."""

    status = 403

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        if status is not None:
            self.status = status


class MonitorSession:
    """A supervisor's leg mixed into an answered BridgedCall until either side ends."""

    def __init__(
        self,
        bridged: BridgedCall,
        supervisor_leg: Call,
        *,
        session_id: int,
        supervisor: str,
        agent: str,
        mode: MonitorMode,
        clock: MediaClock,
        settings: MonitorSettings,
        on_event: Callable[[MonitorEvent], None] | None = None,
    ) -> None:
        if bridged.b is None:
            raise MonitorError("the call is not answered", 409)
        self.id = session_id
        self.bridged = bridged
        self.leg = supervisor_leg
        self.supervisor = supervisor
        self.agent = agent
        self.mode = mode
        self.settings = settings
        self.on_event = on_event
        # The agent's leg is the one whose party is the agent; the other is "the customer"
        # (on an agent-to-agent call, the other agent).
        agent_leg = bridged.b if bridged.callee == agent else bridged.a
        customer_leg = bridged.a if agent_leg is bridged.b else bridged.b
        self.legs = (customer_leg, agent_leg)
        sessions = [leg.media for leg in (customer_leg, agent_leg, supervisor_leg)]
        if any(s is None for s in sessions):
            raise MonitorError("a leg of the call has no media", 409)
        self.conference = Conference(clock, [s for s in sessions if s], mode_matrix(mode))
        self._stop = asyncio.get_running_loop().create_future()

    def _emit(self, action: str) -> None:
        logger.info("monitor %d: %s %s %s on call %s (%s)", self.id, self.supervisor, action,
                    self.agent, self.bridged.call_id, self.mode.value)  # fmt: skip
        if self.on_event is not None:
            self.on_event(
                MonitorEvent(
                    self.id,
                    self.bridged.call_id,
                    self.supervisor,
                    self.agent,
                    action,
                    self.mode,
                    datetime.now(UTC),
                )
            )

    def set_mode(self, mode: MonitorMode) -> None:
        if mode is self.mode:
            return
        self.mode = mode
        self.conference.set_matrix(mode_matrix(mode))
        self._emit("mode")

    def leave(self) -> None:
        """End the session (the supervisor's leg is hung up, the call goes on)."""
        if not self._stop.done():
            self._stop.set_result(None)

    async def run(self) -> None:
        """Mix until the supervisor hangs up or leaves, or the call ends; then restore the relay."""
        self.conference.start()
        self._emit("started")
        if self.settings.beep:
            self.conference.play_to(AGENT, ToneSource(_JOIN_BEEP, level_dbfs=-20, duration=0.15))
        ends = {self.bridged.a.ended, self.legs[1].ended, self.legs[0].ended, self._stop}
        try:
            while True:
                event_task = asyncio.ensure_future(self.leg.next_event())
                done, _ = await asyncio.wait(
                    {event_task, *ends}, return_when=asyncio.FIRST_COMPLETED
                )
                if event_task not in done:
                    event_task.cancel()
                    break
                event = event_task.result()
                if isinstance(event, Ended):
                    break
                if isinstance(event, Dtmf) and event.digit in MODE_BY_DIGIT:
                    self.set_mode(MODE_BY_DIGIT[event.digit])
        finally:
            self.conference.close()
            customer, agent = self.legs
            alive = not customer.ended.done() and not agent.ended.done()
            if alive and customer.media is not None and agent.media is not None:
                self.bridged.media = bridge(customer, agent)
            self._emit("ended")
            with contextlib.suppress(Exception):
                await self.leg.hangup(reason="monitor-ended")
