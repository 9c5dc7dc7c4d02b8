"""The pure queue: order, strategies and penalties, wrap-up, overflow decisions, figures."""

from __future__ import annotations

import pytest

from pbx.queue import Full, Joined, Queue, QueueConfig, QueueMember, parse_queue_code


def make(strategy: str = "longest-idle", **kwargs: object) -> Queue:
    members = kwargs.pop("members", (QueueMember("101"), QueueMember("102"), QueueMember("103")))
    return Queue(QueueConfig("sales", members, strategy=strategy, **kwargs))  # type: ignore[arg-type]


def test_callers_wait_in_arrival_order_and_know_their_place() -> None:
    queue = make()
    assert queue.join("a", "+1555", now=0) == Joined(1)
    assert queue.join("b", "+1556", now=1) == Joined(2)
    assert queue.join("c", "+1557", now=2) == Joined(3)
    queue.abandoned("a", now=5)
    assert [queue.position(k) for k in "abc"] == [0, 1, 2]
    waiting = queue.next_waiting()
    assert waiting is not None and waiting.key == "b"


def test_max_length_sends_the_next_caller_to_overflow() -> None:
    queue = make(max_length=1)
    assert isinstance(queue.join("a", "1", now=0), Joined)
    assert isinstance(queue.join("b", "2", now=0), Full)
    assert queue.stats.overflowed == 1


def test_nobody_to_answer_overflows_at_once_only_when_the_queue_says_so() -> None:
    waits = make()
    assert waits.join("a", "1", now=0, staffed=False) == Joined(1)
    empty = make(when_empty="overflow", overflow="voicemail")
    assert empty.join("a", "1", now=0, staffed=False) == Full("no-agents")
    assert (empty.stats.overflowed, empty.stats.entered) == (1, 0)
    assert empty.join("b", "2", now=0, staffed=True) == Joined(1)
    with pytest.raises(ValueError, match="when_empty"):
        make(when_empty="leave")


def test_callers_past_max_wait_expire_but_not_while_offered_or_on_virtual_hold() -> None:
    queue = make(max_wait=60)
    queue.join("a", "1", now=0)
    queue.join("b", "2", now=0)
    queue.join("c", "3", now=30)
    caller = queue.find("b")
    assert caller is not None
    caller.offering = True
    queue.request_callback("a")
    assert queue.expired(now=59) == []
    assert [c.key for c in queue.expired(now=91)] == ["c"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("ringall", ["101", "102", "103"]), ("longest-idle", ["102"]), ("fewest-calls", ["103"])],
)
def test_strategies(strategy: str, expected: list[str]) -> None:
    queue = make(strategy)
    queue.members["101"].calls = 3
    queue.members["102"].calls = 2
    queue.members["103"].calls = 0
    idle = {"101": 5.0, "102": 50.0, "103": 10.0}
    assert queue.offer(["101", "102", "103"], idle_for=idle.__getitem__, now=0) == expected


def test_round_robin_moves_on_after_each_offer() -> None:
    queue = make("round-robin")
    picks = [queue.offer(["101", "102", "103"], idle_for=lambda m: 0.0, now=0) for _ in range(4)]
    assert picks == [["101"], ["102"], ["103"], ["101"]]
    assert queue.offer(["101", "103"], idle_for=lambda m: 0.0, now=0) == ["103"]


def test_a_higher_penalty_rings_only_when_no_lower_member_is_free() -> None:
    members = (QueueMember("101", 0), QueueMember("102", 0), QueueMember("103", 2))
    queue = make("ringall", members=members)
    assert queue.offer(["101", "102", "103"], idle_for=lambda m: 0.0, now=0) == ["101", "102"]
    assert queue.offer(["103"], idle_for=lambda m: 0.0, now=0) == ["103"]


def test_logged_out_members_and_members_in_wrap_up_are_not_offered() -> None:
    queue = make("ringall", wrap_up=30)
    queue.log_out("101")
    queue.join("a", "1", now=0)
    queue.answered("a", "102", now=4)
    queue.call_ended("102", 60, now=64)
    assert queue.offer(["101", "102", "103"], idle_for=lambda m: 0.0, now=70) == ["103"]
    assert queue.offer(["101", "102", "103"], idle_for=lambda m: 0.0, now=94) == ["102", "103"]
    assert not queue.log_in("999")
    assert queue.log_in("101")
    assert "101" in queue.logged_in()


def test_service_level_speed_of_answer_abandon_rate_longest_wait() -> None:
    queue = make(service_level=20)
    for key, joined in (("a", 0), ("b", 0), ("c", 0), ("d", 10)):
        queue.join(key, key, now=joined)
    queue.answered("a", "101", now=10)  # 10 s: inside
    queue.answered("b", "102", now=30)  # 30 s: outside
    queue.abandoned("c", now=40)
    assert queue.longest_wait(now=50) == 40  # d, waiting since 10
    assert queue.service_level == 0.5
    assert queue.average_speed_of_answer == 20
    assert queue.abandon_rate == pytest.approx(1 / 3)
    snap = queue.snapshot(now=50)
    assert snap["answered"] == 2 and snap["abandoned"] == 1 and len(snap["waiting"]) == 1  # type: ignore[arg-type]


def test_estimated_wait_grows_with_position_and_shrinks_with_staff() -> None:
    queue = make()
    for key in "abcd":
        queue.join(key, key, now=0)
    queue.answered("a", "101", now=1)
    queue.call_ended("101", 90, now=91)  # average talk 90 s
    # b, c, d wait; three members logged in: the first three are next.
    assert queue.estimated_wait("b", now=91) == 90
    queue.log_out("102")
    queue.log_out("103")
    assert queue.estimated_wait("d", now=91) == 270


def test_announcements_are_due_at_the_interval() -> None:
    queue = make(announce_every=30)
    queue.join("a", "1", now=0)
    assert queue.due_announcement("a", now=0)  # as the caller joins
    queue.announced("a", now=1)
    assert not queue.due_announcement("a", now=30)
    assert queue.due_announcement("a", now=31)


def test_virtual_hold_keeps_the_place() -> None:
    queue = make()
    queue.join("a", "1", now=0)
    queue.join("b", "2", now=1)
    assert queue.request_callback("a")
    assert not queue.request_callback("a")
    assert queue.position("a") == 1 and queue.stats.callbacks == 1


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        QueueConfig("q", (QueueMember("1"),), strategy="random")
    with pytest.raises(ValueError, match="overflow"):
        QueueConfig("q", (QueueMember("1"),), overflow="queue:")


def test_feature_codes() -> None:
    assert parse_queue_code("*45") == (True, None)
    assert parse_queue_code("*46sales") == (False, "sales")
    assert parse_queue_code("*50") is None


def test_the_dialer_leaves_alone_the_members_a_waiting_caller_needs() -> None:
    from typing import cast

    from pbx.acd import Board, QueueDesk

    desk = QueueDesk(
        cast(Board, object()),
        (
            QueueConfig("sales", (QueueMember("101"), QueueMember("102")), wrap_up=30),
            QueueConfig("support", (QueueMember("103"),)),
        ),
    )
    assert desk.wanted(now=0) == set()  # nobody waits
    sales = desk.queues["sales"]
    sales.join("a", "1", now=0)
    sales.log_out("102")
    assert desk.wanted(now=1) == {"101"}  # logged in to a queue with a caller waiting
    sales.answered("a", "101", now=2)
    sales.call_ended("101", 10, now=12)
    sales.join("b", "2", now=13)
    assert desk.wanted(now=13) == set()  # 101 wraps up for this queue until 42
    assert desk.wanted(now=42) == {"101"}
    caller = sales.find("b")
    assert caller is not None
    caller.offering = True
    assert desk.wanted(now=43) == set()  # the only caller is being offered already
