"""What the vendor adapters send for a transferred call (pure: render only, no I/O).

amoCRM (https://www.amocrm.ru/developers/content/crm_platform/calls-api): one call, the agent
who ended it as `call_responsible`, the chain of agents in the free-text `call_result`.
Bitrix24: register and finish with the final agent's user (telephony.externalcall.finish: "the
responsible of a lead the register created becomes USER_ID"); attachRecord's FILENAME "must end
in wav or mp3" (telephony_externalCall_attachRecord.php) and names the link's format.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from crm_bridge import AmoCrmAdapter, Attempt, CrmEndpoint, OutboxEvent
from crm_bridge.adapters import agent_chain
from crm_bridge.bitrix24 import Bitrix24Adapter

LINK = "https://pbx.example/recordings/{id}.{format}?expires={expires}&signature={signature}"
NOW = 1_800_000_000.0


def transferred(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": 42,
        "direction": "inbound",
        "from_number": "+12125558800",
        "to_number": "+12025550101",
        "contact_phone": "+12125558800",
        "agent": "102",
        "outcome": "answered",
        "sip_status": 200,
        "talk_seconds": 6.4,
        "started_at": "2027-01-15T08:00:00+00:00",
        "recording_path": "2027/01/15/42.wav",
        "transfers": [
            {"from": "101", "to": "103", "mode": "blind", "result": "failed"},
            {"from": "101", "to": "102", "mode": "blind", "result": "completed"},
        ],
    }
    return {**payload, **changes}


def event(payload: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(
        7, "call/42", "call.ended", payload, "key-42", datetime.fromtimestamp(NOW, UTC)
    )


def test_the_chain_is_the_completed_transfers_then_the_final_agent() -> None:
    assert agent_chain(transferred()) == ["101", "102"]
    assert agent_chain(transferred(transfers=[])) == ["102"]
    chain = [{"from": "101", "result": "completed"}, {"from": "102", "result": "completed"}]
    assert agent_chain(transferred(agent="103", transfers=chain)) == ["101", "102", "103"]
    assert agent_chain(transferred(agent=None, transfers=[])) == []


def test_amocrm_gets_one_call_with_the_final_agent_responsible() -> None:
    endpoint = CrmEndpoint(
        "amo", "amocrm", "https://example.amocrm.ru", secret="token",
        user_map={"101": 5001, "102": 5002}, recording_link=LINK, link_secret="s" * 16,
    )  # fmt: skip
    attempt = Attempt(NOW, refs={"contact_id": 9, "responsible_user_id": 5009})
    request = AmoCrmAdapter().render(endpoint, event(transferred()), attempt)
    assert request is not None and request.url.endswith("/api/v4/calls")
    (call,) = json.loads(request.body)
    assert (call["call_responsible"], call["responsible_user_id"]) == (5002, 5002)
    assert call["call_result"] == "Conversation (101 → 102)"
    assert (call["duration"], call["uniq"], call["call_status"]) == (6, "key-42", 4)
    assert call["link"].startswith("https://pbx.example/recordings/42.wav?expires=")


def test_bitrix24_files_it_under_the_final_agent_with_the_links_file_name() -> None:
    endpoint = CrmEndpoint(
        "b24", "bitrix24", "https://example.bitrix24.ru/rest/1/code/",
        user_map={"*": 1, "101": 7, "102": 9}, recording_link=LINK, recording_format="mp3",
        link_secret="s" * 16,
    )  # fmt: skip
    request = Bitrix24Adapter().render(endpoint, event(transferred()), Attempt(NOW))
    assert request is not None and request.url.endswith("/batch.json")
    commands = {
        name: dict(urllib.parse.parse_qsl(command.partition("?")[2]))
        for name, command in json.loads(request.body)["cmd"].items()
    }
    assert commands["register"]["USER_ID"] == commands["finish"]["USER_ID"] == "9"
    assert commands["finish"]["DURATION"] == "6"
    assert commands["record"]["FILENAME"] == "call-42.mp3"
    assert "/recordings/42.mp3?" in commands["record"]["RECORD_URL"]
