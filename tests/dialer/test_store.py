"""PgLeadStore on a real PostgreSQL: campaigns, imports, SKIP LOCKED claims, attempts, crash
recovery, retry policy, progress and DNC."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest

import dialer
from dialer import Conflict, InvalidInput, NotFound, PgLeadStore
from dialer.store import CALLBACK_GRACE

NOW = datetime(2024, 6, 12, 14, 0, tzinfo=UTC)  # 10:00 in New York, 15:00 in London


@pytest.fixture
def store(pool: asyncpg.Pool) -> PgLeadStore:
    return PgLeadStore(pool, default_country_code="44")


def leads(count: int, *, start: int = 0, tz: str = "Europe/London") -> list[dialer.NewLead]:
    return [
        dialer.NewLead(f"+4420794{i:05d}", tz, f"Lead {i}", data={"n": str(i)})
        for i in range(start, start + count)
    ]


async def running(store: PgLeadStore, name: str = "c", **settings: object) -> int:
    campaign = await store.create_campaign(dialer.Campaign(name, **settings), now=NOW)  # type: ignore[arg-type]
    await store.set_state(campaign.id, "start", now=NOW)
    return campaign.id


async def test_campaign_round_trip_and_refusals(store: PgLeadStore) -> None:
    settings = dialer.Campaign(
        "spring",
        caller_id="+442079460000",
        agents=("101", "102"),
        mode="predictive",
        ratio=2.5,
        retry_delays={"busy": 60.0},
        window_start=time(10),
        window_end=time(18, 30),
        window_days=(1, 2, 3, 4, 5),
        tz_default="Europe/London",
        max_ring_seconds=25,
        voicemail_prompt="vm.wav",
    )
    stored = await store.create_campaign(settings, now=NOW)
    assert stored.state == "draft" and stored.created_at == NOW
    back = await store.get_campaign(stored.id)
    assert back == dataclasses.replace(settings, id=stored.id, created_at=NOW, updated_at=NOW)
    assert (await store.get_campaign_by_name("spring")).id == stored.id
    with pytest.raises(Conflict):
        await store.create_campaign(settings, now=NOW)
    with pytest.raises(InvalidInput):
        await store.create_campaign({"name": "short", "max_ring_seconds": 10}, now=NOW)
    with pytest.raises(InvalidInput):
        await store.create_campaign({"name": "tz", "tz_default": "Mars/Base"}, now=NOW)
    with pytest.raises(NotFound):
        await store.get_campaign(999)


async def test_state_transitions_are_validated(store: PgLeadStore) -> None:
    campaign = await store.create_campaign({"name": "c"}, now=NOW)
    with pytest.raises(Conflict):
        await store.set_state(campaign.id, "pause", now=NOW)
    later = NOW + timedelta(hours=1)
    assert (await store.set_state(campaign.id, "start", now=NOW)).started_at == NOW
    assert (await store.set_state(campaign.id, dialer.CampaignCommand.PAUSE, now=later)).state == (
        "paused"
    )
    resumed = await store.set_state(campaign.id, "resume", now=later)
    assert resumed.state == "running" and resumed.started_at == NOW
    finished = await store.set_state(campaign.id, "stop", now=later)
    assert finished.state == "finished" and finished.finished_at == later
    for command in ("start", "resume", "pause", "stop"):
        with pytest.raises(Conflict):
            await store.set_state(campaign.id, command, now=later)
    with pytest.raises(NotFound):
        await store.set_state(999, "start", now=NOW)


async def test_import_merges_duplicates_and_marks_dnc(store: PgLeadStore) -> None:
    cid = (await store.create_campaign({"name": "c", "tz_default": "Europe/Paris"}, now=NOW)).id
    await store.dnc_add(["+442079400003"], now=NOW)
    first = await store.import_leads(
        cid,
        [
            *leads(3),
            dialer.NewLead("+442079400003", "Europe/London"),
            {"phone": "+442079400004", "tz": None, "consent": False},
            {"phone": "020 7940 0005", "data": {"a": "1"}},
            {"phone": "+442079400005", "name": "Five", "data": {"b": "2"}},
        ],
        now=NOW,
    )
    assert len(first.inserted) == 6
    assert first.merged == ["+442079400005"]
    assert sorted(first.dnc) == ["+442079400003", "+442079400004"]
    second = await store.import_leads(
        cid, [dialer.NewLead("+442079400001", "Europe/London", None, data={"extra": "x"})], now=NOW
    )
    assert second.inserted == [] and second.merged == ["+442079400001"]
    by_phone = {lead.phone: lead for lead in await store.list_leads(cid)}
    assert len(by_phone) == 6
    assert by_phone["+442079400001"].name == "Lead 1"
    assert by_phone["+442079400001"].data == {"n": "1", "extra": "x"}
    assert by_phone["+442079400004"].tz == "Europe/Paris"  # the campaign's default
    assert by_phone["+442079400005"].data == {"a": "1", "b": "2"}
    assert by_phone["+442079400005"].name == "Five"
    assert {p for p, lead in by_phone.items() if lead.status == "dnc"} == set(first.dnc)
    with pytest.raises(InvalidInput):
        await store.import_leads(cid, [dialer.NewLead("+442079400009", "Mars/Base")], now=NOW)
    with pytest.raises(InvalidInput):
        await store.import_leads(cid, [{"phone": "junk"}], now=NOW)
    assert len(await store.list_leads(cid)) == 6  # all or nothing


async def test_claim_takes_only_dialable_leads_and_reserves_attempts(store: PgLeadStore) -> None:
    draft = await store.create_campaign({"name": "draft"}, now=NOW)
    await store.import_leads(draft.id, leads(2), now=NOW)
    assert await store.claim_next_leads(draft.id, 5, now=NOW, node="a") == []

    cid = await running(store, max_attempts=2)
    await store.import_leads(cid, leads(2), now=NOW)
    await store.import_leads(cid, leads(1, start=10, tz="America/New_York"), now=NOW)
    await store.import_leads(cid, leads(1, start=20, tz="Asia/Tokyo"), now=NOW)  # 23:00 there
    await store.import_leads(cid, leads(1, start=30), now=NOW + timedelta(hours=1))  # not due
    await store.import_leads(cid, leads(1, start=40), now=NOW)
    await store.dnc_add(["+442079400040"], campaign_id=cid, now=NOW)
    claims = await store.claim_next_leads(cid, 10, now=NOW, node="a")
    assert sorted(c.lead.phone for c in claims) == [
        "+442079400000",
        "+442079400001",
        "+442079400010",
    ]
    for claim in claims:
        assert claim.lead.status == "in-progress" and claim.lead.attempts == 1
        assert claim.attempt.attempt_no == 1 and claim.attempt.node == "a"
        assert claim.attempt.lead_id == claim.lead.id and claim.attempt.reserved_at == NOW
        assert isinstance(claim, dialer.Claim)
    assert await store.claim_next_leads(cid, 10, now=NOW, node="b") == []
    later = NOW + timedelta(hours=1)
    [late] = await store.claim_next_leads(cid, 10, now=later, node="b")
    assert late.lead.phone == "+442079400030"


async def test_two_nodes_never_claim_the_same_lead(store: PgLeadStore, crm_url: str) -> None:
    cid = await running(store)
    await store.import_leads(cid, leads(300), now=NOW)
    # Each node has its own pool (its own connections), as two engine processes would.
    pools = [await asyncpg.create_pool(crm_url, min_size=2, max_size=2) for _ in range(2)]
    try:
        nodes = [PgLeadStore(p) for p in pools]

        async def node_loop(node: PgLeadStore, name: str) -> list[int]:
            got: list[int] = []
            while True:
                claims = await node.claim_next_leads(cid, random.randint(1, 7), now=NOW, node=name)
                if not claims:
                    return got
                got += [c.lead.id for c in claims]

        results = await asyncio.gather(*(node_loop(nodes[i % 2], f"n{i % 2}") for i in range(4)))
    finally:
        for p in pools:
            await p.close()
    everything = [lead_id for got in results for lead_id in got]
    assert len(everything) == len(set(everything)) == 300
    assert sum(1 for got in results if got) >= 2  # the claims were really shared
    progress = await store.campaign_progress(cid)
    assert progress.in_flight == 300 and progress.remaining == 300


async def test_a_lead_locked_elsewhere_is_skipped_not_waited_for(
    store: PgLeadStore, pool: asyncpg.Pool
) -> None:
    cid = await running(store)
    await store.import_leads(cid, leads(3), now=NOW)
    first = (await store.list_leads(cid))[0]
    async with pool.acquire() as conn, conn.transaction():
        # Another node is in the middle of claiming this row.
        await conn.execute("SELECT 1 FROM leads WHERE id = $1 FOR UPDATE", first.id)
        claims = await asyncio.wait_for(
            store.claim_next_leads(cid, 3, now=NOW, node="b"), timeout=30
        )
    assert first.id not in {c.lead.id for c in claims} and len(claims) == 2
    [rest] = await store.claim_next_leads(cid, 3, now=NOW, node="b")
    assert rest.lead.id == first.id


async def test_an_attempt_number_is_reserved_once(store: PgLeadStore, pool: asyncpg.Pool) -> None:
    cid = await running(store)
    await store.import_leads(cid, leads(1), now=NOW)
    [claim] = await store.claim_next_leads(cid, 1, now=NOW, node="a")
    with pytest.raises(Conflict):
        await store.reserve_attempt(claim.lead.id, 1, now=NOW, node="b")
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO attempts (lead_id, campaign_id, attempt_no, reserved_at, node)"
                " VALUES ($1, $2, 1, $3, 'b')",
                claim.lead.id,
                cid,
                NOW,
            )
    await store.attempt_dialled(claim.attempt.id, "call-1", now=NOW)
    with pytest.raises(Conflict):  # a second INVITE for the same attempt
        await store.attempt_dialled(claim.attempt.id, "call-2", now=NOW)
    with pytest.raises(NotFound):
        await store.attempt_dialled(999, "call-3", now=NOW)


async def test_crash_closes_attempts_as_unknown_and_the_retry_is_a_new_attempt(
    store: PgLeadStore,
) -> None:
    cid = await running(store, retry_delays={"outcome-unknown": 600.0})
    await store.import_leads(cid, leads(3), now=NOW)
    claims = await store.claim_next_leads(cid, 2, now=NOW, node="a")
    [other] = await store.claim_next_leads(cid, 1, now=NOW, node="b")
    await store.attempt_dialled(claims[0].attempt.id, "call-a0", now=NOW)
    # Node a dies with both attempts in flight (one dialled, one maybe); it restarts:
    restart = NOW + timedelta(seconds=30)
    closed = await store.close_interrupted_attempts("a", now=restart)
    assert sorted(a.id for a in closed) == sorted(c.attempt.id for c in claims)
    assert {a.outcome for a in closed} == {"outcome-unknown"}
    assert await store.close_interrupted_attempts("a", now=restart) == []
    # Node b's attempt is untouched.
    assert (await store.lead_attempts(other.lead.id))[0].ended_at is None
    with pytest.raises(Conflict):  # the interrupted attempt is never dialled again
        await store.attempt_dialled(claims[1].attempt.id, "call-a1", now=restart)
    lead = await store.get_lead(claims[0].lead.id)
    assert lead.status == "pending" and lead.last_outcome == "outcome-unknown"
    assert lead.next_attempt_at == restart + timedelta(seconds=600)
    assert (
        await store.claim_next_leads(cid, 5, now=restart + timedelta(seconds=599), node="a") == []
    )
    again = await store.claim_next_leads(cid, 5, now=restart + timedelta(seconds=600), node="a")
    assert sorted(c.attempt.attempt_no for c in again) == [2, 2]
    attempts = await store.lead_attempts(claims[0].lead.id)
    assert [(a.attempt_no, a.outcome) for a in attempts] == [
        (1, "outcome-unknown"),
        (2, None),
    ]


async def test_retry_policy_per_outcome(store: PgLeadStore) -> None:
    delays = {"busy": 60.0, "no-answer": 120.0, "answered-machine": 180.0}
    cid = await running(store, retry_delays=delays, max_attempts=2)
    await store.import_leads(cid, leads(6), now=NOW)
    claims = {c.lead.phone: c for c in await store.claim_next_leads(cid, 6, now=NOW, node="a")}
    end = NOW + timedelta(seconds=40)

    async def finish(i: int, outcome: str, **kwargs: object) -> object:
        return await store.attempt_finished(
            claims[f"+4420794{i:05d}"].attempt.id,
            outcome,
            now=end,
            **kwargs,  # type: ignore[arg-type]
        )

    busy = await finish(0, "busy")
    assert (busy.status, busy.next_attempt_at) == ("pending", end + timedelta(seconds=60))  # type: ignore[attr-defined]
    machine = await finish(1, "answered-machine")
    assert machine.next_attempt_at == end + timedelta(seconds=180)  # type: ignore[attr-defined]
    human = await finish(2, "answered-human", agent="101")
    assert human.status == "done"  # type: ignore[attr-defined]
    assert (await store.lead_attempts(human.id))[0].agent == "101"  # type: ignore[attr-defined]
    assert (await finish(3, "failed")).status == "done"  # type: ignore[attr-defined]  # no delay set
    assert (await finish(4, "dnc")).status == "dnc"  # type: ignore[attr-defined]
    callback = await finish(5, "answered-human", retry_at=NOW + timedelta(days=1))
    assert callback.status == "pending"  # type: ignore[attr-defined]
    assert callback.next_attempt_at == NOW + timedelta(days=1)  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        await finish(0, "busy")
    with pytest.raises(InvalidInput):
        await finish(0, "exploded")
    # Second busy: max attempts (2) reached, the lead is done.
    [retry] = await store.claim_next_leads(cid, 6, now=end + timedelta(seconds=60), node="a")
    assert retry.attempt.attempt_no == 2
    final = await store.attempt_finished(retry.attempt.id, "busy", now=end)
    assert final.status == "done" and final.attempts == 2 and final.last_outcome == "busy"


async def test_release_undoes_an_undialled_reservation(store: PgLeadStore) -> None:
    cid = await running(store)
    await store.import_leads(cid, leads(1), now=NOW)
    [claim] = await store.claim_next_leads(cid, 1, now=NOW, node="a")
    await store.release_attempt(claim.attempt.id, now=NOW)
    lead = await store.get_lead(claim.lead.id)
    assert (lead.status, lead.attempts) == ("pending", 0)
    [again] = await store.claim_next_leads(cid, 1, now=NOW, node="a")
    assert again.attempt.attempt_no == 1
    await store.attempt_dialled(again.attempt.id, "call-1", now=NOW)
    with pytest.raises(Conflict):
        await store.release_attempt(again.attempt.id, now=NOW)


async def test_progress_counts(store: PgLeadStore) -> None:
    cid = await running(store, retry_delays={"busy": 60.0})
    await store.import_leads(cid, leads(6), now=NOW)
    await store.dnc_add(["+442079400005"], now=NOW)
    claims = await store.claim_next_leads(cid, 5, now=NOW, node="a")
    for claim, outcome in zip(
        claims, ["answered-human", "abandoned", "answered-machine", "busy"], strict=False
    ):
        await store.attempt_dialled(claim.attempt.id, f"call-{claim.attempt.id}", now=NOW)
        await store.attempt_finished(claim.attempt.id, outcome, now=NOW)
    progress = await store.campaign_progress(cid)
    assert progress == dialer.CampaignProgress(
        total=6,
        dialled=4,
        answered_human=2,
        answered_machine=1,
        connected=1,
        abandoned=1,
        remaining=2,  # the busy one (retry) and the claimed, undialled one
        done=3,
        dnc=1,
        in_flight=1,
    )
    assert progress.abandon_rate == 0.5
    with pytest.raises(NotFound):
        await store.campaign_progress(999)


async def test_dnc_lists(store: PgLeadStore) -> None:
    cid = await running(store)
    other = await running(store, "other")
    await store.import_leads(cid, leads(3), now=NOW)
    await store.import_leads(other, leads(3), now=NOW)
    assert await store.dnc_add(["020 7940 0000", "+442079400000"], now=NOW) == 1
    assert await store.dnc_import(["+442079400001", "+442079400002"], campaign_id=cid, now=NOW) == 2
    assert await store.dnc_export() == ["+442079400000"]
    assert await store.dnc_export(campaign_id=cid) == ["+442079400001", "+442079400002"]
    assert [e.reason for e in await store.dnc_list(campaign_id=cid)] == ["import", "import"]
    assert await store.dnc_contains("+442079400001", campaign_id=cid)
    assert not await store.dnc_contains("+442079400001", campaign_id=other)
    assert await store.dnc_contains("02079400000")
    assert await store.claim_next_leads(cid, 5, now=NOW, node="a") == []
    claimed = await store.claim_next_leads(other, 5, now=NOW, node="a")
    assert [c.lead.phone for c in claimed] == ["+442079400001", "+442079400002"]
    ok = claimed[0]
    # A bar that arrives while the call is ringing still ends the lead.
    await store.dnc_add(["+442079400001"], now=NOW)
    assert (await store.attempt_finished(ok.attempt.id, "busy", now=NOW)).status == "dnc"
    assert await store.dnc_remove(["+442079400001"], campaign_id=cid) == 1
    assert await store.dnc_remove(["+442079400001"], campaign_id=cid) == 0
    with pytest.raises(NotFound):
        await store.dnc_add(["+442079400009"], campaign_id=999, now=NOW)


@pytest.mark.parametrize(
    ("start", "end", "days", "zone"),
    [
        (time(9), time(21), (1, 2, 3, 4, 5, 6, 7), "America/New_York"),
        (time(2, 30), time(5), (7,), "America/New_York"),
        (time(22), time(2), (5,), "Asia/Tokyo"),
        (time(8), time(20), (1, 2, 3, 4, 5), "Australia/Sydney"),
        # A number spanning zones: the narrowest window of them all.
        (time(9), time(21), (1, 2, 3, 4, 5, 6, 7), "America/Adak,America/Anchorage"),
        (time(22), time(2), (5, 6), "America/Halifax,America/St_Johns"),
    ],
)
async def test_sql_calling_hours_agree_with_the_dialer(
    pool: asyncpg.Pool, start: time, end: time, days: tuple[int, ...], zone: str
) -> None:
    hours = dialer.CallingHours(start, end, frozenset(days))
    rng = random.Random(f"{start}{zone}")
    # Around both 2024 DST changes of New York and Sydney, and anywhere in the year.
    anchors = [datetime(2024, m, d, tzinfo=UTC) for m, d in ((3, 10), (4, 7), (10, 6), (11, 3))]
    instants = [
        a + timedelta(minutes=rng.randrange(-3 * 1440, 3 * 1440))
        for a in anchors
        for _ in range(60)
    ]
    instants += [
        datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(525600))
        for _ in range(200)
    ]
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT t, dialer_within_hours(t, $2, $3, $4, $5) AS ok"
            " FROM unnest($1::timestamptz[]) t",
            instants,
            zone,
            start,
            end,
            list(days),
        )
    disagree = [r["t"] for r in rows if r["ok"] != hours.allowed(r["t"], zone)]
    assert disagree == []


async def test_a_callback_disposition_makes_the_lead_due_again(store: PgLeadStore) -> None:
    cid = await running(store, max_attempts=2)
    await store.import_leads(cid, leads(2), now=NOW)
    first, second = await store.claim_next_leads(cid, 2, now=NOW, node="a")
    done = await store.attempt_finished(first.attempt.id, "answered-human", now=NOW, agent="101")
    assert done.status == "done"  # type: ignore[attr-defined]
    at = NOW + timedelta(hours=3)
    assert await store.schedule_callback(first.lead.id, at)
    (again,) = await store.claim_next_leads(cid, 5, now=at, node="a")
    assert again.lead.id == first.lead.id and again.attempt.attempt_no == 2
    await store.attempt_finished(again.attempt.id, "answered-human", now=at)
    assert not await store.schedule_callback(first.lead.id, at + timedelta(hours=1))  # none left
    await store.dnc_add([second.lead.phone], now=NOW)
    assert not await store.schedule_callback(second.lead.id, at)  # barred numbers stay barred


async def test_a_promised_callback_waits_for_its_agent(store: PgLeadStore) -> None:
    cid = await running(store, max_attempts=3)
    await store.import_leads(cid, leads(1), now=NOW)
    (first,) = await store.claim_next_leads(cid, 1, now=NOW, node="a")
    await store.attempt_finished(first.attempt.id, "answered-human", now=NOW, agent="102")
    at = NOW + timedelta(hours=1)
    assert await store.schedule_callback(first.lead.id, at, agent="102")
    # 102 is busy: the lead waits for them instead of going to whoever is free...
    assert await store.claim_next_leads(cid, 5, now=at, node="a", idle_agents=["101"]) == []
    (again,) = await store.claim_next_leads(cid, 5, now=at, node="a", idle_agents=["101", "102"])
    assert again.lead.callback_agent == "102" and again.attempt.attempt_no == 2
    await store.attempt_finished(again.attempt.id, "no-answer", now=at)
    # ...but not for ever: once the grace is over, anyone may make the promised call.
    due = (await store.get_lead(first.lead.id)).next_attempt_at
    late = due + CALLBACK_GRACE
    assert await store.claim_next_leads(cid, 5, now=late - timedelta(seconds=1), node="a",
                                        idle_agents=["101"]) == []  # fmt: skip
    (third,) = await store.claim_next_leads(cid, 5, now=late, node="a", idle_agents=["101"])
    assert third.attempt.attempt_no == 3


async def test_each_node_reads_the_other_nodes_abandon_ledgers(store: PgLeadStore) -> None:
    cid = await running(store)
    await store.save_ledger(cid, {"node": "a"}, node="a")
    await store.save_ledger(cid, {"node": "b"}, node="b")
    await store.save_ledger(cid, {"node": "c"}, node="c")
    peers = await store.peer_ledgers(cid, node="a")
    assert sorted(p["node"] for p in peers) == ["b", "c"]


async def test_a_campaign_that_requires_consent_dials_only_leads_who_gave_it(
    store: PgLeadStore,
) -> None:
    cid = await running(store, "consent", require_consent=True, window_start=time(0, 0),
                        window_end=time(23, 59))  # fmt: skip
    yes, no, unknown = (
        dialer.NewLead("+442079400001", "Europe/London", consent=True),
        dialer.NewLead("+442079400002", "Europe/London", consent=False),
        dialer.NewLead("+442079400003", "Europe/London"),
    )
    await store.import_leads(cid, [yes, no, unknown], now=NOW)
    claims = await store.claim_next_leads(cid, 5, now=NOW, node="a")
    assert [c.lead.phone for c in claims] == [yes.phone]
    # Without the gate, only an explicit "no" is skipped.
    other = await running(store, "no-gate", window_start=time(0, 0), window_end=time(23, 59))
    await store.import_leads(other, [yes, no, unknown], now=NOW)
    claims = await store.claim_next_leads(other, 5, now=NOW, node="a")
    assert sorted(c.lead.phone for c in claims) == [yes.phone, unknown.phone]


async def test_amd_settings_verdicts_and_quality_from_dispositions(
    store: PgLeadStore, pool: asyncpg.Pool
) -> None:
    cid = await running(
        store, amd=False, amd_max_seconds=6.0, amd_initial_silence_seconds=2.0,
        amd_unsure="voicemail",
    )  # fmt: skip
    back = await store.get_campaign(cid)
    assert (back.amd, back.amd_max_seconds, back.amd_initial_silence_seconds, back.amd_unsure) == (
        False, 6.0, 2.0, "voicemail",
    )  # fmt: skip
    with pytest.raises(InvalidInput):
        await store.create_campaign({"name": "bad", "amd_unsure": "maybe"}, now=NOW)
    await store.import_leads(cid, leads(5), now=NOW)
    claims = await store.claim_next_leads(cid, 5, now=NOW, node="a")
    # AMD said: person, person, machine, unsure, fax; agents heard the first two and the fourth.
    said = [("human", 0.9, 1.8), ("human", 0.7, 2.2), ("machine", 0.99, 3.1),
            ("unsure", 0.5, 3.0), ("fax", 0.99, 0.6)]  # fmt: skip
    agent_said = ["sale", "answering-machine", None, "not-interested", None]
    for claim, (verdict, confidence, seconds), disposition in zip(
        claims, said, agent_said, strict=True
    ):
        call_id = f"call-{claim.attempt.id}"
        await store.attempt_dialled(claim.attempt.id, call_id, now=NOW)
        await store.attempt_amd(
            claim.attempt.id, verdict, reason="test", confidence=confidence, seconds=seconds
        )
        await pool.execute(
            "INSERT INTO calls (call_id, direction, from_number, to_number, started_at, ended_at,"
            " outcome, disposition) VALUES ($1, 'outbound', '100', $2, $3, $3, 'answered', $4)",
            call_id, claim.lead.phone, NOW, disposition,
        )  # fmt: skip
        await store.attempt_finished(claim.attempt.id, "answered-human", now=NOW)
    with pytest.raises(Conflict):  # one verdict per attempt
        await store.attempt_amd(claims[0].attempt.id, "machine", reason="x", confidence=1.0,
                                seconds=1.0)  # fmt: skip
    with pytest.raises(InvalidInput):
        await store.attempt_amd(claims[0].attempt.id, "maybe", reason="x",
                                confidence=1.0, seconds=1.0)  # fmt: skip
    with pytest.raises(NotFound):
        await store.attempt_amd(999_999, "human", reason="x", confidence=1.0, seconds=1.0)
    summary = await store.amd_summary(cid)
    assert {k: summary[k] for k in ("verdicts", "human", "machine", "unsure", "sit", "fax")} == {
        "verdicts": 5, "human": 2, "machine": 1, "unsure": 1, "sit": 0, "fax": 1,
    }  # fmt: skip
    assert summary["median_seconds"] == pytest.approx(2.2)
    assert summary["quality"] == {
        "judged": 3,  # the calls an agent disposed
        "false_person": 1,  # AMD said person, the agent heard a machine
        "false_machine": 0,
        "false_person_rate": 0.5,
        "false_machine_rate": None,  # no machine verdict was heard by an agent
    }
    results = await store.amd_results(cid)
    assert [(r["amd_verdict"], r["disposition"]) for r in results] == [
        (v, d) for (v, _, _), d in zip(said, agent_said, strict=True)
    ]
    attempts = await store.lead_attempts(claims[0].lead.id)
    assert (attempts[0].amd_verdict, attempts[0].amd_confidence) == ("human", 0.9)


async def test_a_dead_nodes_attempts_are_closed_by_a_survivor(
    store: PgLeadStore, pool: asyncpg.Pool
) -> None:
    cid = await running(store, retry_delays={"outcome-unknown": 600.0})
    await store.import_leads(cid, leads(3), now=NOW)
    [dead_claim] = await store.claim_next_leads(cid, 1, now=NOW, node="dead")
    [alive_claim] = await store.claim_next_leads(cid, 1, now=NOW, node="alive")
    await store.attempt_dialled(dead_claim.attempt.id, "call-dead", now=NOW)
    await pool.execute(
        "INSERT INTO cluster_nodes (node, lease_until) VALUES"
        " ('dead', now() - interval '1 second'), ('alive', now() + interval '30 seconds')"
    )
    later = NOW + timedelta(seconds=40)
    closed = await store.close_attempts_of_dead_nodes(now=later)
    assert [(a.id, a.outcome) for a in closed] == [(dead_claim.attempt.id, "outcome-unknown")]
    assert await store.close_attempts_of_dead_nodes(now=later) == []
    assert (await store.lead_attempts(alive_claim.lead.id))[0].ended_at is None
    lead = await store.get_lead(dead_claim.lead.id)
    assert lead.status == "pending" and lead.next_attempt_at == later + timedelta(seconds=600)
    with pytest.raises(Conflict):  # the dead node's attempt is never finished twice
        await store.attempt_finished(dead_claim.attempt.id, "no-answer", now=later)


async def test_a_shared_token_bucket_caps_the_sum_of_the_nodes(crm_url: str) -> None:
    """Four nodes (each its own pool) take from one trunk's 20/s bucket as fast as they can
    for 0.5 s: together they get the burst plus what half a second refills, not four times
    that."""
    pools = [await asyncpg.create_pool(crm_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        buckets = [dialer.PgTokenBucket(p, "carrier", rate=20.0) for p in pools]
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def node(bucket: dialer.PgTokenBucket) -> int:
            taken = 0
            while loop.time() < start + 0.5:
                taken += await bucket.acquire(3, now=loop.time())
            return taken

        taken = await asyncio.gather(*(node(b) for b in buckets))
        elapsed = loop.time() - start
        assert 20 <= sum(taken) <= 20 + 20 * elapsed + 1, (taken, elapsed)
        assert await buckets[0].acquire(0, now=loop.time()) == 0
        before = await pools[0].fetchval("SELECT tokens FROM trunk_buckets WHERE trunk = 'carrier'")
        await buckets[1].give_back(2)  # taken, but no lead was due
        after = await pools[0].fetchval("SELECT tokens FROM trunk_buckets WHERE trunk = 'carrier'")
        assert after == pytest.approx(min(20.0, before + 2))
        other = dialer.PgTokenBucket(pools[0], "other", rate=5.0)
        assert await other.acquire(10, now=loop.time()) == 5  # each trunk its own burst
    finally:
        for p in pools:
            await p.close()
