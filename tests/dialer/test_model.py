"""Campaign settings, the campaign state table, retry delays, adapting store rows."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from dialer import (
    ATTEMPT_OUTCOMES,
    CAMPAIGN_TRANSITIONS,
    DEFAULT_RETRY_DELAYS,
    Attempt,
    Campaign,
    CampaignCommand,
    CampaignProgress,
    CampaignState,
    Claim,
    InvalidCampaign,
    InvalidTransition,
    Lead,
    next_campaign_state,
    retry_delay,
)

S, C = CampaignState, CampaignCommand


def test_the_lifecycle() -> None:
    campaign = Campaign("spring")
    assert campaign.state is S.DRAFT
    campaign = campaign.apply("start")
    assert campaign.state is S.RUNNING
    campaign = campaign.apply(C.PAUSE).apply(C.RESUME).apply(C.STOP)
    assert campaign.state is S.FINISHED


@pytest.mark.parametrize(("state", "command"), list(itertools.product(S, C)))
def test_every_pair_is_either_in_the_table_or_refused(
    state: CampaignState, command: CampaignCommand
) -> None:
    if (state, command) in CAMPAIGN_TRANSITIONS:
        assert next_campaign_state(state, command) is CAMPAIGN_TRANSITIONS[state, command]
    else:
        with pytest.raises(InvalidTransition) as info:
            next_campaign_state(state, command)
        assert info.value.status == 409
        assert command.value in str(info.value)


def test_finished_is_final_and_unknown_words_are_refused() -> None:
    assert not [k for k in CAMPAIGN_TRANSITIONS if k[0] is S.FINISHED]
    with pytest.raises(InvalidTransition):
        next_campaign_state("running", "explode")
    with pytest.raises(InvalidTransition):
        Campaign("x").apply("resume")


@pytest.mark.parametrize(
    "settings",
    [
        {"name": " "},
        {"mode": "preview"},
        {"ratio": 0.5},
        {"ratio": 5.5},
        {"abandon_cap": 1.5},
        {"max_attempts": 0},
        {"max_ring_seconds": 10},
        {"machine_action": "sing"},
        {"window_days": (0, 1)},
        {"retry_delays": {"on-fire": 10}},
        {"retry_delays": {"busy": -1}},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    args = {"name": "c", **settings}
    with pytest.raises(InvalidCampaign):
        Campaign(**args)  # type: ignore[arg-type]


def test_defaults_follow_the_issue() -> None:
    campaign = Campaign("c")
    assert campaign.abandon_cap == 0.03 and campaign.abandon_window_days == 30
    assert campaign.max_ring_seconds == 20
    assert set(campaign.retry_delays) == {
        "busy",
        "no-answer",
        "failed",
        "answered-machine",
        "abandoned",
        "outcome-unknown",
    }


def test_retry_delay_per_outcome() -> None:
    assert retry_delay(DEFAULT_RETRY_DELAYS, "busy") == 300
    assert retry_delay({"busy": 60}, "busy") == 60
    assert retry_delay(DEFAULT_RETRY_DELAYS, "answered-human") is None
    assert retry_delay(DEFAULT_RETRY_DELAYS, "dnc") is None
    with pytest.raises(ValueError):
        retry_delay(DEFAULT_RETRY_DELAYS, "exploded")


def test_outcomes_are_the_issues() -> None:
    assert set(ATTEMPT_OUTCOMES) == {
        "answered-human",
        "answered-machine",
        "busy",
        "no-answer",
        "failed",
        "abandoned",
        "rejected",
        "dnc",
        "outcome-unknown",
    }


@dataclass
class Row:
    """Stands for a store row: same names, some extra."""

    id: int
    lead_id: int
    campaign_id: int
    attempt_no: int
    reserved_at: datetime
    node: str
    extra: str = "ignored"


def test_records_adapt_from_any_row() -> None:
    now = datetime(2024, 6, 12, tzinfo=UTC)
    attempt = Attempt.from_record(Row(1, 2, 3, 1, now, "n1"))
    assert attempt == Attempt(1, 2, 3, 1, now, "n1")
    lead = Lead.from_record({"id": 2, "campaign_id": 3, "phone": "+1", "tz": "UTC", "x": 1})
    assert lead.status == "pending"

    @dataclass
    class Pair:
        lead: object
        attempt: object

    claim = Claim.from_record(Pair(lead, Row(1, 2, 3, 1, now, "n1")))
    assert claim.lead == lead and claim.attempt == attempt
    campaign = Campaign.from_record({"name": "c", "state": "running", "id": 4, "agents": ["1"]})
    assert campaign.state is S.RUNNING and campaign.agents == ("1",)


def test_progress_abandon_rate() -> None:
    progress = CampaignProgress(10, 8, 4, 2, 3, 1, 2, 6, 2, 0)
    assert progress.abandon_rate == 0.25
    assert CampaignProgress(0, 0, 0, 0, 0, 0, 0, 0, 0, 0).abandon_rate == 0


def test_amd_settings_are_checked_and_match_the_detector() -> None:
    from dialer import AmdConfig

    campaign = Campaign("c")
    assert campaign.amd and campaign.amd_unsure == "connect"
    assert campaign.amd_max_seconds * 1000 == AmdConfig().max_analysis_ms
    assert campaign.amd_initial_silence_seconds * 1000 == AmdConfig().initial_silence_ms
    for bad in (
        {"amd_unsure": "maybe"},
        {"amd_max_seconds": 0.5},
        {"amd_max_seconds": 31.0},
        {"amd_initial_silence_seconds": 0.1},
    ):
        with pytest.raises(InvalidCampaign):
            Campaign("c", **bad)  # type: ignore[arg-type]
