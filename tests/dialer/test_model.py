"""Campaign settings, the campaign state table, retry delays, adapting store rows."""

from __future__ import annotations

import itertools

import pytest

from dialer import (
    ATTEMPT_OUTCOMES,
    CAMPAIGN_TRANSITIONS,
    DEFAULT_RETRY_DELAYS,
    Campaign,
    CampaignCommand,
    CampaignProgress,
    CampaignState,
    InvalidCampaign,
    InvalidTransition,
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


def test_a_stored_campaign_state_reads_as_its_enum() -> None:
    campaign = Campaign("c", state="running", id=4, agents=["1"])  # type: ignore[arg-type]
    assert campaign.state is S.RUNNING and campaign.state == "running"
    assert campaign.agents == ("1",)


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
