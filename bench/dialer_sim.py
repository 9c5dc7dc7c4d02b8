"""A day of outbound dialing, simulated: the real pacing code under a seeded virtual clock.

Each scenario runs one working day (8 h by default) with N agents and a campaign whose dials are
answered at a given rate. Of the answers, a share are machines: answering-machine detection takes
2.5-3.5 s of the line and then drops the call (no agent involved). Unanswered dials either fail
fast (busy, rejected: 1-4 s) or ring out at the 25 s no-answer timeout. Ring time to an answer is
lognormal within 5-25 s; talk time is lognormal with a 150 s mean; wrap-up is 10 s. A human
answer takes an agent that is free at once or becomes free within 2 s; otherwise it is abandoned
(the safe-harbor message plays, no agent). The dialer asks the pacer every second and whenever an
agent comes free, through a per-trunk calls-per-second cap, and records every live answer in the
real AbandonLedger (3% cap), which the predictive pacer reads.

Printed per scenario and mode: agent occupancy (talk time / logged-in time), connected calls per
agent hour, dials per agent hour, and the abandon rate (abandons / live answers).

Run: .venv/bin/python bench/dialer_sim.py [--seed 7] [--hours 8] [--agents 10 50]
     [--answer-rates 0.15 0.25 0.40] [--smoke]
Figures only; nothing passes or fails. The simulation is deterministic for a given seed.
--smoke: one hour, 10 agents, a 25% answer rate (every mode), under a second, for CI.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import platform
import random
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.ledger import CONNECT_DEADLINE, AbandonLedger, AbandonPolicy
from dialer.pacing import (
    Pacer,
    PacingState,
    PowerPacer,
    PredictivePacer,
    TokenBucket,
)

TZ = "Europe/Berlin"
DAY_START = datetime(2024, 3, 5, 9, 0, tzinfo=ZoneInfo(TZ)).timestamp()


@dataclass(frozen=True, slots=True)
class Traffic:
    """The customers' side of the simulation."""

    answer_rate: float
    """Dials answered by anyone (human or machine)."""

    machine_share: float = 0.30
    """Answers that are machines."""

    fast_fail_share: float = 0.15
    """Unanswered dials that end quickly (busy, rejected, failed) instead of ringing out."""

    no_answer_timeout: float = 25.0
    """Seconds a dial rings before it is given up as no-answer."""

    talk_mean: float = 150.0
    """Mean talk seconds (lognormal)."""

    talk_sigma: float = 0.5
    """Shape of the lognormal talk time."""

    wrap_up: float = 10.0
    """Agent wrap-up seconds after each call."""

    trunk_cps: float = 10.0
    """Calls per second the trunk accepts."""


@dataclass(slots=True)
class Result:
    talk: float = 0.0
    connected: int = 0
    dials: int = 0
    live: int = 0
    abandons: int = 0


def simulate(
    pacer: Pacer, ledger: AbandonLedger, agents: int, traffic: Traffic, hours: float, seed: int
) -> Result:
    rng = random.Random(seed)
    start, end = DAY_START, DAY_START + hours * 3600.0
    events: list[tuple[float, int, str, int]] = []
    seq = itertools.count()
    result = Result()

    def at(when: float, kind: str, ref: int) -> None:
        heapq.heappush(events, (when, next(seq), kind, ref))

    idle: deque[int] = deque(range(agents))  # longest idle first
    on_call: dict[int, float] = {}
    wrapping: dict[int, float] = {}
    in_flight: dict[int, float] = {}  # call -> dial time
    outcome_of: dict[int, str] = {}
    waiting: dict[int, float] = {}  # live call -> answer time
    talk_mu = math.log(traffic.talk_mean) - traffic.talk_sigma**2 / 2
    bucket = TokenBucket(traffic.trunk_cps, now=start)
    calls = itertools.count()

    def connect(agent: int, call: int, now: float) -> None:
        answered = waiting.pop(call)
        ledger.record_answer(now=answered, connect_delay=now - answered)
        result.connected += 1
        on_call[agent] = now
        at(now + rng.lognormvariate(talk_mu, traffic.talk_sigma), "talk_end", agent)

    def dial(now: float) -> None:
        state = PacingState(
            idle_agents=len(idle),
            on_call_since=tuple(on_call.values()),
            wrap_up_until=tuple(wrapping.values()),
            dialing_since=tuple(in_flight.values()),
            live_waiting=len(waiting),
        )
        for _ in range(bucket.take(pacer.lines_to_dial(state, now=now), now=now)):
            call = next(calls)
            result.dials += 1
            in_flight[call] = now
            draw = rng.random()
            if draw < traffic.answer_rate:
                ring = min(25.0, max(5.0, rng.lognormvariate(math.log(10.0), 0.45)))
                human = rng.random() >= traffic.machine_share
                outcome_of[call] = "answered-human" if human else "answered-machine"
            elif rng.random() < traffic.fast_fail_share:
                ring, outcome_of[call] = rng.uniform(1.0, 4.0), "busy"
            else:
                ring, outcome_of[call] = traffic.no_answer_timeout, "no-answer"
            at(now + ring, "resolved", call)

    at(start, "tick", 0)
    while events:
        now, _, kind, ref = heapq.heappop(events)
        if kind == "tick":
            if now < end:
                dial(now)
                at(now + 1.0, "tick", 0)
        elif kind == "resolved":
            dialled = in_flight[ref]
            outcome = outcome_of.pop(ref)
            ring = now - dialled
            if outcome == "answered-human":
                result.live += 1
                waiting[ref] = now
                if idle:
                    del in_flight[ref]
                    connect(idle.popleft(), ref, now)
                else:
                    del in_flight[ref]
                    at(now + CONNECT_DEADLINE, "deadline", ref)
                # Abandons are only known later; the pacer learns "live" either way.
                pacer.observe("answered-human", ring)
            elif outcome == "answered-machine":
                pacer.observe(outcome, ring)
                at(now + rng.uniform(2.5, 3.5), "amd_done", ref)
            else:
                del in_flight[ref]
                pacer.observe(outcome, ring)
        elif kind == "amd_done":
            del in_flight[ref]
        elif kind == "deadline":
            if ref in waiting:
                answered = waiting.pop(ref)
                result.abandons += 1
                ledger.record_answer(now=answered, connect_delay=None)
        elif kind == "talk_end":
            began = on_call.pop(ref)
            result.talk += max(0.0, min(now, end) - min(began, end))
            wrapping[ref] = now + traffic.wrap_up
            at(now + traffic.wrap_up, "wrap_end", ref)
            pacer.observe_talk(now - began, traffic.wrap_up)
        elif kind == "wrap_end":
            del wrapping[ref]
            if waiting:
                connect(ref, next(iter(waiting)), now)
            else:
                idle.append(ref)
                if now < end:
                    dial(now)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--answer-rates", type=float, nargs="+", default=[0.15, 0.25, 0.40])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--smoke", action="store_true", help="1 h, 10 agents, 25%% answers (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.hours, args.agents, args.answer_rates = 1.0, [10], [0.25]

    print(f"# dialer_sim: {platform.python_implementation()} {platform.python_version()}, ", end="")
    print(f"{platform.machine()}, seed {args.seed}, {args.hours:g} h day, abandon cap 3%")
    print("# answers: 30% machines (AMD 2.5-3.5 s, dropped); talk lognormal mean 150 s; wrap 10 s")
    header = f"{'agents':>6} {'answer':>6} {'mode':>10} {'occup.':>7} {'conn/ah':>8}"
    print(header + f" {'dials/ah':>8} {'abandon':>8} {'live':>6}")
    started = time.perf_counter()
    for agents in args.agents:
        for rate in args.answer_rates:
            traffic = Traffic(answer_rate=rate)
            modes: list[tuple[str, float | None]] = [(f"power {r:g}", r) for r in args.ratios]
            modes.append(("predictive", None))
            for name, ratio in modes:
                ledger = AbandonLedger(AbandonPolicy(cap=0.03, tz=TZ))
                # As the engine runs them: both read the ledger (power drops to 1.0 at the cap).
                pacer: Pacer = PowerPacer(ratio, ledger) if ratio else PredictivePacer(ledger)
                r = simulate(pacer, ledger, agents, traffic, args.hours, args.seed)
                hours = agents * args.hours
                occupancy = r.talk / (hours * 3600.0)
                abandon = r.abandons / r.live if r.live else 0.0
                print(
                    f"{agents:>6} {rate:>6.0%} {name:>10} {occupancy:>7.1%}"
                    f" {r.connected / hours:>8.1f} {r.dials / hours:>8.1f}"
                    f" {abandon:>8.2%} {r.live:>6}"
                )
    print(f"# {time.perf_counter() - started:.1f} s wall")


if __name__ == "__main__":
    main()
