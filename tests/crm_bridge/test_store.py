"""CrmStore on a real PostgreSQL: every change with its outbox event in one transaction, the
callback-task rules, restart recovery and the read side with its filter errors."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crm_bridge import (
    CallbackRequest,
    CallEnded,
    CallFilter,
    CallStarted,
    Conflict,
    CrmEndpoint,
    CrmStore,
    InvalidFilter,
    InvalidInput,
    NotFound,
    PhoneNumberError,
    TaskFilter,
)

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
CUSTOMER = "+442079460958"
ENDPOINTS = (
    CrmEndpoint("hook", "webhook", "http://127.0.0.1:9/hook", secret="s"),
    CrmEndpoint("amo", "amocrm", "http://127.0.0.1:9", secret="token"),
)


def inbound(call_id: str = "c1", phone: str = CUSTOMER, at: datetime = T0) -> CallStarted:
    return CallStarted(
        call_id=call_id,
        direction="inbound",
        from_number=phone,
        to_number="15550100",
        started_at=at,
        did="15550100",
        ring_group="sales",
        customer_phone=phone,
    )


def missed(at: datetime) -> CallEnded:
    return CallEnded(ended_at=at, outcome="missed", sip_status=487, hangup_cause="caller-cancel")


def answered(at: datetime) -> CallEnded:
    return CallEnded(
        ended_at=at,
        outcome="answered",
        sip_status=200,
        hangup_cause="caller-remote-bye",
        answered_at=T0 + timedelta(seconds=2),
        agent="101",
    )


@pytest.fixture
def store(pool: asyncpg.Pool) -> CrmStore:
    return CrmStore(pool, endpoints=ENDPOINTS, node="n1", default_country_code="44")


async def outbox(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT e.*, array(SELECT endpoint FROM outbox_deliveries d WHERE d.event_id = e.id"
        " ORDER BY endpoint) AS endpoints FROM outbox e ORDER BY id"
    )


async def test_a_call_from_start_to_end_with_its_events(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    row_id = await store.call_started(inbound(phone="020 7946 0958"))
    await store.call_ringing(row_id, T0 + timedelta(seconds=1))
    await store.call_ringing(row_id, T0 + timedelta(seconds=2))  # second phone: no change
    await store.call_answered(row_id, T0 + timedelta(seconds=5), agent="101")
    await store.call_ended(
        row_id,
        CallEnded(
            ended_at=T0 + timedelta(seconds=65),
            outcome="answered",
            sip_status=200,
            hangup_cause="caller-bye",
            recording_path="2024/05/06/c1.wav",
            analytics={"talk": {"customer": 30.5, "agent": 25.0}, "overtalk": 1.5},
        ),
    )
    call = await store.get_call(row_id)
    assert call is not None
    assert (call.direction, call.from_number, call.did, call.ring_group) == (
        "inbound",
        "020 7946 0958",
        "15550100",
        "sales",
    )
    assert call.contact_phone == CUSTOMER  # normalised, contact created on first contact
    assert (call.agent, call.outcome, call.sip_status, call.hangup_cause) == (
        "101",
        "answered",
        200,
        "caller-bye",
    )
    assert call.ringing_at == T0 + timedelta(seconds=1)
    assert call.ring_seconds == 4.0 and call.talk_seconds == 60.0
    assert call.analytics == {"talk": {"customer": 30.5, "agent": 25.0}, "overtalk": 1.5}
    assert call.node == "n1"

    events = await outbox(pool)
    assert [e["event_type"] for e in events] == [
        "call.started",
        "call.ringing",
        "call.answered",
        "call.ended",
    ]
    assert {e["aggregate"] for e in events} == {f"call/{row_id}"}
    assert len({e["idempotency_key"] for e in events}) == 4
    # amoCRM takes call.started (its call notification) and call.ended; the webhook all.
    assert [list(e["endpoints"]) for e in events] == (
        [["amo", "hook"]] + [["hook"]] * 2 + [["amo", "hook"]]
    )
    ended = json.loads(events[-1]["payload"])
    assert ended == call.to_json()
    assert ended["ended_at"] == (T0 + timedelta(seconds=65)).isoformat()


async def test_each_call_event_carries_the_row_as_the_api_shows_it(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    """The journal's events are written by the statement that changes the row (the payload
    built in SQL): each equals the call read back right after its change (timestamps as the
    same text), with and without fractions of a second."""
    started = T0 + timedelta(microseconds=5)
    row_id = await store.call_started(inbound(at=started))
    seen = [(await store.get_call(row_id)).to_json()]  # type: ignore[union-attr]
    await store.call_ringing(row_id, started + timedelta(seconds=1))  # rings 3.0 s
    seen.append((await store.get_call(row_id)).to_json())  # type: ignore[union-attr]
    await store.call_answered(row_id, started + timedelta(seconds=4), agent="101")
    seen.append((await store.get_call(row_id)).to_json())  # type: ignore[union-attr]
    transfer = {"from": "101", "to": "102", "mode": "blind", "result": "completed"}
    await store.call_transferred(row_id, transfer, started + timedelta(seconds=5))
    seen.append({**(await store.get_call(row_id)).to_json(), "transfer": transfer})  # type: ignore[union-attr]
    ended = CallEnded(
        ended_at=started + timedelta(seconds=65, microseconds=333333),
        outcome="answered",
        sip_status=200,
        hangup_cause="caller-remote-bye",
        analytics={"talk_ratio": 0.25, "words": [1, 2]},
    )
    await store.call_ended(row_id, ended)
    seen.append((await store.get_call(row_id)).to_json())  # type: ignore[union-attr]
    events = await outbox(pool)
    assert [e["event_type"] for e in events] == [
        "call.started", "call.ringing", "call.answered", "call.transferred", "call.ended"
    ]  # fmt: skip
    assert all("hook" in e["endpoints"] for e in events)
    for event, call in zip(events, seen, strict=True):
        # Compared as JSON text: 3.0 is not 3, a timestamp's text is the API's.
        assert json.dumps(json.loads(event["payload"]), sort_keys=True) == json.dumps(
            call, sort_keys=True
        )
        assert event["aggregate"] == f"call/{row_id}"
    assert json.loads(events[1]["payload"])["ringing_at"] == "2024-05-06T09:00:01.000005+00:00"
    assert json.loads(events[2]["payload"])["ring_seconds"] == 3.0
    assert json.loads(events[0]["payload"])["contact_phone"] == CUSTOMER


async def test_an_event_no_endpoint_takes_is_not_written(pool: asyncpg.Pool) -> None:
    """No outbox row nobody would be sent; the calls row, its contact and the callback task
    are written all the same."""
    store = CrmStore(pool, default_country_code="44")
    row_id = await store.call_started(inbound())
    await store.call_ringing(row_id, T0 + timedelta(seconds=1))
    task = await store.call_ended(
        row_id,
        missed(T0 + timedelta(seconds=9)),
        callback=CallbackRequest(assignee="101", due_at=T0 + timedelta(hours=1)),
    )
    assert await outbox(pool) == []
    call = await store.get_call(row_id)
    assert call is not None and call.contact_phone == CUSTOMER and call.outcome == "missed"
    assert task is not None and task.contact_id == call.contact_id
    # The same customer again: the same contact, still no event.
    again = await store.call_started(inbound("c2", at=T0 + timedelta(minutes=1)))
    second = await store.get_call(again)
    assert second is not None and second.contact_id == call.contact_id
    assert await outbox(pool) == []


async def test_an_endpoint_taking_some_events_gets_only_those_written(pool: asyncpg.Pool) -> None:
    hook = CrmEndpoint("hook", "webhook", "http://127.0.0.1:9/hook", secret="s")
    only_ended = CrmEndpoint(
        "ends", "webhook", "http://127.0.0.1:9/ends", secret="s", events=frozenset({"call.ended"})
    )
    store = CrmStore(pool, endpoints=(only_ended,), default_country_code="44")
    row_id = await store.call_started(inbound())
    await store.call_ringing(row_id, T0 + timedelta(seconds=1))
    await store.call_answered(row_id, T0 + timedelta(seconds=2), agent="101")
    await store.call_ended(row_id, answered(T0 + timedelta(seconds=9)))
    events = await outbox(pool)
    assert [(e["event_type"], e["endpoints"]) for e in events] == [("call.ended", ["ends"])]
    assert json.loads(events[0]["payload"])["contact_phone"] == CUSTOMER
    # Both endpoints: every event, each to the endpoints taking it, in order.
    both = CrmStore(pool, endpoints=(hook, only_ended), default_country_code="44")
    row_id = await both.call_started(inbound("c2"))
    await both.call_ended(row_id, missed(T0 + timedelta(seconds=9)))
    events = (await outbox(pool))[1:]
    assert [(e["event_type"], e["endpoints"]) for e in events] == [
        ("call.started", ["hook"]),
        ("call.ended", ["ends", "hook"]),
    ]


@pytest.fixture
async def outbox_trap(pool: asyncpg.Pool) -> None:
    """Make inserting an outbox event of a given type fail, as a full disk or a bug would."""
    await pool.execute(
        """
        CREATE TABLE trap (event_type TEXT);
        CREATE FUNCTION trap() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM trap WHERE event_type = NEW.event_type) THEN
                RAISE EXCEPTION 'trapped %', NEW.event_type;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER trap BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION trap();
        """
    )


async def set_trap(pool: asyncpg.Pool, event_type: str) -> None:
    await pool.execute("DELETE FROM trap")
    await pool.execute("INSERT INTO trap VALUES ($1)", event_type)


async def test_a_failing_outbox_insert_rolls_the_change_back(
    store: CrmStore, pool: asyncpg.Pool, outbox_trap: None
) -> None:
    await set_trap(pool, "call.started")
    with pytest.raises(asyncpg.RaiseError, match=r"trapped call\.started"):
        await store.call_started(inbound())
    assert await pool.fetchval("SELECT count(*) FROM calls") == 0
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0

    await set_trap(pool, "call.ended")
    row_id = await store.call_started(inbound())
    with pytest.raises(asyncpg.RaiseError):
        await store.call_ended(row_id, missed(T0 + timedelta(seconds=3)))
    call = await store.get_call(row_id)
    assert call is not None and call.ended_at is None and call.outcome is None

    await set_trap(pool, "task.created")
    with pytest.raises(asyncpg.RaiseError):
        await store.call_ended(
            row_id,
            missed(T0 + timedelta(seconds=3)),
            callback=CallbackRequest("101", T0 + timedelta(hours=1)),
        )
    call = await store.get_call(row_id)
    assert call is not None and call.ended_at is None  # the call's close went with the task
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0

    await set_trap(pool, "task.done")
    task = await store.open_callback_task(
        CUSTOMER, assignee="101", due_at=T0 + timedelta(hours=1), call_row_id=row_id
    )
    with pytest.raises(asyncpg.RaiseError):
        await store.complete_task(task.id)
    again = await store.get_task(task.id)
    assert again is not None and again.status == "open"
    types = [e["event_type"] for e in await outbox(pool)]
    assert types == ["call.started", "task.created"]


async def test_bad_writes_are_refused_and_write_nothing(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    row_id = await store.call_started(inbound())
    with pytest.raises(InvalidInput, match="unknown outcome 'lost'"):
        await store.call_ended(row_id, CallEnded(ended_at=T0, outcome="lost"))
    with pytest.raises(InvalidInput, match="timezone"):
        await store.call_ended(row_id, CallEnded(ended_at=datetime(2024, 5, 6), outcome="missed"))
    with pytest.raises(InvalidInput, match="direction"):
        await store.call_started(
            CallStarted("x", "sideways", "1", "2", T0)  # type: ignore[arg-type]
        )
    with pytest.raises(NotFound):
        await store.call_ended(row_id + 100, missed(T0))
    await store.call_ended(row_id, missed(T0 + timedelta(seconds=4)))
    with pytest.raises(Conflict, match="ended already"):
        await store.call_ended(row_id, missed(T0 + timedelta(seconds=5)))
    with pytest.raises(Conflict):
        await store.call_answered(row_id, T0, agent="101")
    with pytest.raises(PhoneNumberError):
        await store.upsert_contact("call me maybe")
    assert [e["event_type"] for e in await outbox(pool)] == ["call.started", "call.ended"]


async def test_caller_id_that_is_not_a_number_still_logs_the_call(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    """A missed call from a withheld number (issue 16): the row is closed and its events go to
    the CRM; no callback task, since there is no number to call back."""
    row_id = await store.call_started(inbound(phone="anonymous"))
    call = await store.get_call(row_id)
    assert call is not None and call.contact_id is None and call.from_number == "anonymous"
    due = T0 + timedelta(minutes=30)
    task = await store.call_ended(
        row_id, missed(T0 + timedelta(seconds=20)), callback=CallbackRequest(None, due, "x")
    )
    assert task is None
    ended = await store.get_call(row_id)
    assert ended is not None and ended.outcome == "missed"
    refused = await store.record_call(
        inbound("c2", phone="Restricted"),
        missed(T0 + timedelta(seconds=3)),
        callback=CallbackRequest(None, due, "x"),
    )
    events = [(e["aggregate"], e["event_type"]) for e in await outbox(pool)]
    assert events == [
        (f"call/{row_id}", "call.started"),
        (f"call/{row_id}", "call.ended"),
        (f"call/{refused}", "call.ended"),
    ]
    assert not await pool.fetchval("SELECT count(*) FROM tasks")


async def test_repeat_missed_call_updates_the_open_callback_task(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    await store.upsert_contact(CUSTOMER, name="Ada", responsible="102")
    first = await store.call_started(inbound("c1", "020 7946 0958"))
    task = await store.call_ended(
        first,
        missed(T0 + timedelta(seconds=20)),
        callback=CallbackRequest(None, T0 + timedelta(minutes=30), "Missed call, ring back"),
    )
    assert task is not None
    assert (task.type, task.status, task.assignee, task.missed_calls) == (
        "callback",
        "open",
        "102",
        1,
    )
    assert task.contact_phone == CUSTOMER and task.created_from_call == first

    second = await store.call_started(inbound("c2", "+44 20 7946 0958", T0 + timedelta(minutes=10)))
    await store.call_ended(second, missed(T0 + timedelta(minutes=11)))
    again = await store.open_callback_task(
        "0044 20 7946 0958",
        assignee="103",
        due_at=T0 + timedelta(minutes=41),
        call_row_id=second,
        text="Called twice",
    )
    assert again.id == task.id
    assert again.missed_calls == 2
    assert again.due_at == T0 + timedelta(minutes=30)  # the earlier promise stands
    assert again.assignee == "102"  # stays with whoever has it
    assert (again.text, again.created_from_call, again.last_call) == ("Called twice", first, second)
    assert len(await store.list_tasks(TaskFilter(status="open"))) == 1
    events = [
        (e["event_type"], e["aggregate"]) for e in await outbox(pool) if "task" in e["aggregate"]
    ]
    assert events == [("task.created", f"task/{task.id}"), ("task.updated", f"task/{task.id}")]

    done = await store.complete_task(task.id)
    assert done.status == "done" and done.closed_at is not None
    with pytest.raises(Conflict, match="done already"):
        await store.complete_task(task.id)
    with pytest.raises(NotFound):
        await store.cancel_task(task.id + 1000)
    third = await store.open_callback_task(
        CUSTOMER, assignee=None, due_at=T0 + timedelta(hours=2), call_row_id=None
    )
    assert third.id != task.id and third.missed_calls == 1


async def test_two_nodes_missing_the_same_caller_at_once_make_one_task(
    pool: asyncpg.Pool,
) -> None:
    nodes = [CrmStore(pool, node=f"n{i}", default_country_code="44") for i in range(2)]
    tasks = await asyncio.gather(
        *(
            node.open_callback_task(
                CUSTOMER, assignee="101", due_at=T0 + timedelta(hours=1), call_row_id=None
            )
            for node in nodes * 3
        )
    )
    assert len({t.id for t in tasks}) == 1
    assert max(t.missed_calls for t in tasks) == 6
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1


async def test_no_open_contact_without_an_open_task(store: CrmStore) -> None:
    assert await store.contacts_without_open_task() == []
    row_id = await store.call_started(inbound())
    await store.call_ended(row_id, missed(T0 + timedelta(seconds=30)))
    assert [c.phone for c in await store.contacts_without_open_task()] == [CUSTOMER]

    task = await store.open_callback_task(
        CUSTOMER, assignee="101", due_at=T0 + timedelta(hours=1), call_row_id=row_id
    )
    assert await store.contacts_without_open_task() == []

    await store.complete_task(task.id)  # closed without calling back: the rule flags it
    assert [c.phone for c in await store.contacts_without_open_task()] == [CUSTOMER]

    back = await store.call_started(
        CallStarted(
            "c9",
            "outbound",
            "101",
            CUSTOMER,
            T0 + timedelta(hours=1),
            agent="101",
            customer_phone=CUSTOMER,
        )
    )
    await store.call_ended(
        back,
        CallEnded(
            T0 + timedelta(hours=1, minutes=3),
            "answered",
            200,
            answered_at=T0 + timedelta(hours=1, seconds=10),
        ),
    )
    assert await store.contacts_without_open_task() == []


async def test_restart_closes_only_this_nodes_open_calls(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    other = CrmStore(pool, node="n2", default_country_code="44")
    open_here = [await store.call_started(inbound(f"c{i}")) for i in range(2)]
    answered = await store.call_started(inbound("c3"))
    await store.call_answered(answered, T0 + timedelta(seconds=3), agent="101")
    finished = await store.call_started(inbound("c4"))
    await store.call_ended(finished, missed(T0 + timedelta(seconds=9)))
    elsewhere = await other.call_started(inbound("c5"))

    restart = T0 + timedelta(minutes=5)
    assert await store.close_interrupted_calls(restart) == 3
    assert await store.close_interrupted_calls(restart) == 0
    for row_id in [*open_here, answered]:
        call = await store.get_call(row_id)
        assert call is not None
        assert (call.outcome, call.hangup_cause, call.ended_at) == (
            "failed",
            "engine-restart",
            restart,
        )
    call = await store.get_call(answered)
    assert call is not None and call.talk_seconds == 297.0
    still = await store.get_call(elsewhere)
    assert still is not None and still.ended_at is None
    ended = [
        e["aggregate"]
        for e in await outbox(pool)
        if e["event_type"] == "call.ended" and e["occurred_at"] == restart
    ]
    assert sorted(ended) == sorted(f"call/{i}" for i in [*open_here, answered])


async def test_an_interrupted_call_keeps_its_recording_and_gets_its_analytics(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    recorded = await store.call_started(inbound("r1"))
    await store.call_answered(recorded, T0 + timedelta(seconds=3), agent="101")
    await store.call_recording(recorded, "2024/05/06/r1.wav")
    await store.call_recording(recorded, "2024/05/06/r1.wav")  # again: no change, no error
    unrecorded = await store.call_started(inbound("r2"))
    with pytest.raises(NotFound):
        await store.call_recording(10**9, "x.wav")
    # No event of its own: the CRM hears of the path with call.ended.
    assert [e["event_type"] for e in await outbox(pool)].count("call.recording") == 0

    left = await store.interrupted_calls()
    assert [(c.id, c.recording_path) for c in left] == [
        (recorded, "2024/05/06/r1.wav"),
        (unrecorded, None),
    ]
    talk = {"duration_seconds": 9.5, "agent_talk_seconds": 4.0, "agent_talk_ratio": 0.5}
    restart = T0 + timedelta(minutes=5)
    assert await store.close_interrupted_calls(restart, analytics={recorded: talk}) == 2
    call = await store.get_call(recorded)
    assert call is not None and call.ended_at == restart
    assert (call.recording_path, call.analytics) == ("2024/05/06/r1.wav", talk)
    bare = await store.get_call(unrecorded)
    assert bare is not None and (bare.recording_path, bare.analytics) == (None, None)
    ended = {
        e["aggregate"]: json.loads(e["payload"])
        for e in await outbox(pool)
        if e["event_type"] == "call.ended"
    }
    assert ended[f"call/{recorded}"]["recording_path"] == "2024/05/06/r1.wav"
    assert ended[f"call/{recorded}"]["analytics"] == talk
    assert ended[f"call/{unrecorded}"]["analytics"] is None
    assert await store.interrupted_calls() == []


async def test_read_side_filters(store: CrmStore) -> None:
    other = "+447700900123"
    plan = [
        ("a", CUSTOMER, T0, "answered", "101"),
        ("b", CUSTOMER, T0 + timedelta(hours=2), "missed", None),
        ("c", other, T0 + timedelta(days=1), "answered", "102"),
        ("d", other, T0 + timedelta(days=1, hours=1), "busy", None),
    ]
    ids = {}
    for call_id, phone, at, outcome, agent in plan:
        ids[call_id] = await store.call_started(inbound(call_id, phone, at))
        await store.call_ended(
            ids[call_id],
            CallEnded(
                at + timedelta(minutes=1), outcome, answered_at=at if agent else None, agent=agent
            ),
        )

    async def find(**query: str) -> list[str]:
        f = CallFilter.from_query(query, default_country_code="44")
        return [c.call_id for c in await store.list_calls(f)]

    assert await find() == ["d", "c", "b", "a"]
    assert await find(date="2024-05-06") == ["b", "a"]
    assert await find(since="2024-05-06T10:00:00+00:00", until="2024-05-07T09:30:00Z") == ["c", "b"]
    assert await find(agent="101") == ["a"]
    assert await find(outcome="answered") == ["c", "a"]
    assert await find(phone="07700 900123") == ["d", "c"]
    assert await find(phone=" 447700900123") == ["d", "c"]  # "+" decoded as space by a URL
    assert await find(phone="+447700900123", outcome="busy") == ["d"]
    assert await find(limit="2", offset="1") == ["c", "b"]
    assert await find(direction="outbound") == []
    call = await store.get_call(ids["a"])
    assert call is not None and call.agent == "101"
    assert await store.get_call(ids["d"] + 1) is None
    contact = await store.get_contact("020 7946 0958")
    assert contact is not None and contact.phone == CUSTOMER
    assert await store.get_contact("+12015550123") is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"date": "yesterday"}, "date must be a date"),
        ({"date": "2024-02-30"}, "date must be a date"),
        ({"since": "2024-05-06T25:00"}, "since must be an ISO 8601 time"),
        ({"since": "2024-05-07", "until": "2024-05-06"}, "since must be before until"),
        ({"date": "2024-05-06", "since": "2024-05-06"}, "either date or since/until"),
        ({"outcome": "lost"}, "unknown outcome 'lost'"),
        ({"direction": "up"}, "unknown direction"),
        ({"phone": "not-a-number"}, "phone:"),
        ({"limit": "0"}, "limit must be 1..1000"),
        ({"limit": "5000"}, "limit must be 1..1000"),
        ({"limit": "ten"}, "limit must be an integer"),
        ({"offset": "-1"}, "offset must be >= 0"),
        ({"agnet": "101"}, "unknown filter agnet"),
    ],
)
def test_malformed_call_filters_say_why(query: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidFilter, match=reason) as info:
        CallFilter.from_query(query, default_country_code="44")
    assert info.value.status == 400 and isinstance(info.value, ValueError)


async def test_task_filters(store: CrmStore) -> None:
    due = T0 + timedelta(hours=1)
    a = await store.open_callback_task(
        "+447700900001", assignee="101", due_at=due, call_row_id=None
    )
    b = await store.open_callback_task(
        "+447700900002", assignee="102", due_at=due - timedelta(minutes=5), call_row_id=None
    )
    await store.open_callback_task("+447700900003", assignee="101", due_at=due, call_row_id=None)
    await store.complete_task(a.id)
    assert (await store.list_tasks())[0].id == b.id  # soonest due first
    assert len(await store.list_tasks(TaskFilter.from_query({"status": "open"}))) == 2
    assert len(await store.list_tasks(TaskFilter(status="open", assignee="101"))) == 1
    assert [t.id for t in await store.list_tasks(TaskFilter(status="done"))] == [a.id]
    with pytest.raises(InvalidFilter, match="unknown task status"):
        TaskFilter.from_query({"status": "finished"})
    with pytest.raises(InvalidFilter, match="unknown filter"):
        TaskFilter.from_query({"owner": "101"})


async def test_purge_keeps_undelivered_events(store: CrmStore, pool: asyncpg.Pool) -> None:
    row_id = await store.call_started(inbound())
    await store.call_ended(row_id, missed(T0))
    await pool.execute(
        "UPDATE outbox_deliveries SET delivered_at = now()"
        " WHERE event_id = (SELECT min(id) FROM outbox)"
    )
    status = await store.outbox_status()
    assert status["hook"]["pending"] == 1 and status["amo"]["pending"] == 1
    assert await store.purge_outbox(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert [e["event_type"] for e in await outbox(pool)] == ["call.ended"]


async def test_retention_deletes_old_delivered_events_and_keeps_what_is_still_needed(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    """Old delivered events go; pending ones and dead letters stay (dead letters go only when
    asked); the newest remote ids of a chain stay whatever their age, so a later event of the
    same call or task is still sent against them."""
    for n in range(4):
        row_id = await store.call_started(inbound(call_id=f"c{n}"))
        await store.call_ended(row_id, missed(T0 + timedelta(minutes=n)))
    events = [r["id"] for r in await outbox(pool)]
    # call.started and call.ended of each call: 8 events, two deliveries each.
    assert len(events) == 8
    await pool.execute("UPDATE outbox SET created_at = now() - interval '40 days'")
    await pool.execute("UPDATE outbox_deliveries SET delivered_at = now()")
    first_call = [
        r["id"]
        for r in await outbox(pool)
        if r["aggregate"]
        == "call/" + str(await pool.fetchval("SELECT id FROM calls WHERE call_id = 'c0'"))
    ]
    # amoCRM learned the first call's id at its start; the end's delivery carries it on.
    await pool.execute(
        "UPDATE outbox_deliveries SET remote_ref = $2 WHERE event_id = $1 AND endpoint = 'amo'",
        first_call[0],
        json.dumps({"call": 1}),
    )
    await pool.execute(
        "UPDATE outbox_deliveries SET remote_ref = $2 WHERE event_id = $1 AND endpoint = 'amo'",
        first_call[1],
        json.dumps({"call": 1}),
    )
    pending, dead = events[-1], events[-2]
    await pool.execute(
        "UPDATE outbox_deliveries SET delivered_at = NULL WHERE event_id = $1", pending
    )
    await pool.execute(
        "UPDATE outbox_deliveries SET delivered_at = NULL, dead_at = now() WHERE event_id = $1",
        dead,
    )
    young = await store.call_started(inbound(call_id="young"))
    now = datetime.now(UTC)

    purged = await store.purge_outbox(now - timedelta(days=30), batch=2)
    left = {r["id"] for r in await outbox(pool)}
    # 8 old events: 6 delivered, of which the newest remote-id holder of c0's chain stays.
    assert purged == 5
    assert first_call[0] not in left  # an older holder of the same ids
    assert len(left) == 4 and left >= {first_call[1], pending, dead}  # and young's start
    assert (
        await pool.fetchval("SELECT count(*) FROM outbox WHERE aggregate = $1", f"call/{young}")
        == 1
    )
    # Dead letters go when asked, and only old ones.
    assert await store.purge_outbox(now - timedelta(days=30), dead_before=now) == 1
    assert dead not in {r["id"] for r in await outbox(pool)}
    with pytest.raises(InvalidInput):
        await store.purge_outbox(datetime(2024, 1, 1))


async def test_a_call_recorded_at_its_end_is_one_row_and_one_event(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    row_id = await store.record_call(
        inbound(phone="020 7946 0958"),
        missed(T0 + timedelta(seconds=15)),
        callback=CallbackRequest("101", T0 + timedelta(minutes=30), "ring back"),
    )
    call = await store.get_call(row_id)
    assert call is not None
    assert (call.outcome, call.ended_at, call.ring_seconds) == (
        "missed",
        T0 + timedelta(seconds=15),
        15.0,
    )
    assert [(e["event_type"], e["aggregate"]) for e in await outbox(pool)] == [
        ("call.ended", f"call/{row_id}"),
        ("task.created", "task/1"),
    ]
    (task,) = await store.list_tasks()
    assert (task.created_from_call, task.contact_phone) == (row_id, CUSTOMER)


async def test_a_transfer_joins_the_chain_and_emits_call_transferred(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    row_id = await store.call_started(inbound())
    await store.call_answered(row_id, T0 + timedelta(seconds=2), agent="101")
    first = {"at": "2024-05-06T10:00:10+00:00", "from": "101", "to": "102", "by": "101",
             "mode": "blind", "result": "completed", "id": 1}  # fmt: skip
    second = {**first, "from": "102", "to": "103", "by": "api", "mode": "warm", "id": 2}
    await store.call_transferred(row_id, first, T0 + timedelta(seconds=10))
    await store.call_transferred(row_id, second, T0 + timedelta(seconds=20))
    call = await store.get_call(row_id)
    assert call is not None and call.agent == "103"
    assert call.transfers == [first, second]  # the chain: 101 -> 102 -> 103
    events = [e for e in await outbox(pool) if e["event_type"] == "call.transferred"]
    assert len(events) == 2
    payload = json.loads(events[1]["payload"])
    assert payload["transfer"] == second and payload["agent"] == "103"
    assert payload["transfers"] == [first, second]
    await store.call_ended(
        row_id,
        CallEnded(ended_at=T0 + timedelta(seconds=30), outcome="answered", sip_status=200,
                  hangup_cause="caller-bye"),
    )  # fmt: skip
    with pytest.raises(Conflict):  # an ended call takes no transfer
        await store.call_transferred(row_id, first, T0 + timedelta(seconds=40))


async def test_the_end_writes_the_whole_chain_with_the_failed_attempts(
    store: CrmStore, pool: asyncpg.Pool
) -> None:
    """call_transferred adds completed transfers as they happen; the end writes the chain
    whole, so an attempt that failed (busy) is in the row with its outcome, without ever
    having been a call.transferred event."""
    row_id = await store.call_started(inbound())
    await store.call_answered(row_id, T0 + timedelta(seconds=2), agent="101")
    busy = {"at": "2024-05-06T10:00:05+00:00", "from": "101", "to": "102", "by": "101",
            "mode": "blind", "result": "failed", "outcome": "busy", "status": 486,
            "id": 1}  # fmt: skip
    done = {**busy, "to": "103", "result": "completed", "id": 2}
    del done["outcome"], done["status"]
    await store.call_transferred(row_id, done, T0 + timedelta(seconds=10))
    await store.call_ended(
        row_id,
        CallEnded(ended_at=T0 + timedelta(seconds=30), outcome="answered", sip_status=200,
                  hangup_cause="caller-bye", transfers=[busy, done]),
    )  # fmt: skip
    call = await store.get_call(row_id)
    assert call is not None and call.agent == "103"
    assert call.transfers == [busy, done]
    kinds = [e["event_type"] for e in await outbox(pool)]
    assert kinds.count("call.transferred") == 1
    ended = json.loads(
        next(e for e in await outbox(pool) if e["event_type"] == "call.ended")["payload"]
    )
    assert ended["transfers"] == [busy, done]
