"""Flow files are validated at load: every refusal names the file, the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr import FlowError, Menu, Transfer, load_flow, parse_flow
from sip_test_env.audio import write_tone_wav

GOOD = """\
start = "welcome"

[nodes.welcome]
kind = "menu"
prompts = ["menu.wav", { text = "Press 1 for sales" }]
choices = { "1" = "sales", "9" = "optout" }
timeout = 4
retries = 1
invalid_prompts = ["sorry.wav"]
fallback = "bye"

[nodes.sales]
kind = "transfer"
target = "ringgroup:sales"
fallback = "later"

[nodes.later]
kind = "callback"
due_minutes = 30
next = "bye"

[nodes.optout]
kind = "opt-out"
next = "bye"

[nodes.bye]
kind = "hangup"
prompts = ["sorry.wav"]
"""


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    write_tone_wav(tmp_path / "menu.wav", 500, 0.2)
    write_tone_wav(tmp_path / "sorry.wav", 700, 0.2)
    return tmp_path


def write(flow_dir: Path, text: str, name: str = "main.toml") -> Path:
    path = flow_dir / name
    path.write_text(text)
    return path


def refused(path: Path) -> FlowError:
    with pytest.raises(FlowError) as info:
        load_flow(path)
    return info.value


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_a_good_flow_loads(flow_dir: Path) -> None:
    flow = load_flow(write(flow_dir, GOOD))
    assert flow.name == "main" and flow.start == "welcome"
    menu = flow.nodes["welcome"]
    assert isinstance(menu, Menu)
    assert menu.choices == {"1": "sales", "9": "optout"} and menu.retries == 1
    assert menu.prompts[0].file == flow_dir / "menu.wav" and menu.prompts[1].text
    assert isinstance(flow.nodes["sales"], Transfer)


def test_unknown_node_is_refused_with_its_line(flow_dir: Path) -> None:
    text = GOOD.replace('"9" = "optout"', '"9" = "nowhere"')
    error = refused(write(flow_dir, text))
    assert "unknown node 'nowhere'" in error.reason
    assert error.line == line_of(text, "choices =")
    assert str(error).startswith(f"{flow_dir / 'main.toml'}:{error.line}: ")


def test_unknown_next_is_refused_with_its_line(flow_dir: Path) -> None:
    text = GOOD.replace('due_minutes = 30\nnext = "bye"', 'due_minutes = 30\nnext = "byee"')
    error = refused(write(flow_dir, text))
    assert "next goes to unknown node 'byee'" in error.reason
    assert error.line == line_of(text, 'next = "byee"')


def test_missing_prompt_file_is_refused_with_its_line(flow_dir: Path) -> None:
    text = GOOD.replace('prompts = ["sorry.wav"]', 'prompts = ["gone.wav"]')
    error = refused(write(flow_dir, text))
    assert "prompt file gone.wav does not exist" in error.reason
    assert error.line == line_of(text, '["gone.wav"]')


def test_bad_digit_map_is_refused(flow_dir: Path) -> None:
    text = GOOD.replace('"1" = "sales"', '"12" = "sales"')
    error = refused(write(flow_dir, text))
    assert "'12' is not one DTMF key" in error.reason
    assert error.line == line_of(text, "choices =")


def test_unreachable_node_is_refused_at_its_header(flow_dir: Path) -> None:
    text = GOOD + '\n[nodes.orphan]\nkind = "hangup"\n'
    error = refused(write(flow_dir, text))
    assert "'orphan' is unreachable" in error.reason
    assert error.line == line_of(text, "[nodes.orphan]")


def test_missing_and_unknown_start(flow_dir: Path) -> None:
    error = refused(write(flow_dir, GOOD.replace('start = "welcome"\n', "")))
    assert "missing `start`" in error.reason
    text = GOOD.replace('start = "welcome"', 'start = "hello"')
    error = refused(write(flow_dir, text))
    assert "unknown node 'hello'" in error.reason and error.line == 1


def test_unknown_kind_and_key(flow_dir: Path) -> None:
    text = GOOD.replace('kind = "opt-out"', 'kind = "optout"')
    error = refused(write(flow_dir, text))
    assert "kind must be one of" in error.reason and error.line == line_of(text, 'kind = "optout"')
    text = GOOD.replace("due_minutes = 30", "due_minute = 30")
    error = refused(write(flow_dir, text))
    assert "unknown key 'due_minute'" in error.reason
    assert error.line == line_of(text, "due_minute =")


def test_bad_numbers_and_targets(flow_dir: Path) -> None:
    text = GOOD.replace("retries = 1", "retries = -1")
    error = refused(write(flow_dir, text))
    assert "retries must be a whole number >= 0" in error.reason
    assert error.line == line_of(text, "retries =")
    text = GOOD.replace('"ringgroup:sales"', '"park:sales"')
    error = refused(write(flow_dir, text))
    assert "target must be agent:EXT" in error.reason
    assert error.line == line_of(text, "target =")


def test_toml_syntax_error_has_its_line(flow_dir: Path) -> None:
    text = GOOD.replace("timeout = 4", "timeout = = 4")
    error = refused(write(flow_dir, text))
    assert error.line == line_of(text, "timeout = = 4")


JSON_FLOW = """\
{
  "start": "welcome",
  "nodes": {
    "welcome": {
      "kind": "menu",
      "prompts": ["menu.wav"],
      "choices": {"1": "bye"},
      "fallback": "bye"
    },
    "bye": {
      "kind": "hangup",
      "prompts": ["sorry.wav"]
    }
  }
}
"""


def test_json_flows_load_and_fail_with_lines(flow_dir: Path) -> None:
    flow = load_flow(write(flow_dir, JSON_FLOW, "main.json"))
    assert set(flow.nodes) == {"welcome", "bye"}
    text = JSON_FLOW.replace('"prompts": ["sorry.wav"]', '"prompts": ["missing.wav"]')
    error = refused(write(flow_dir, text, "main.json"))
    assert "missing.wav does not exist" in error.reason
    assert error.line == line_of(text, "missing.wav")
    text = JSON_FLOW.replace('{"1": "bye"}', '{"1": "nobody"}')
    error = refused(write(flow_dir, text, "main.json"))
    assert "unknown node 'nobody'" in error.reason and error.line == line_of(text, '"choices"')
    error = refused(write(flow_dir, JSON_FLOW.replace('"bye"\n', '"bye",\n', 1), "main.json"))
    assert "not valid JSON" in error.reason and error.line is not None


def test_branch_needs_exactly_one_condition(flow_dir: Path) -> None:
    text = (
        'start = "b"\n[nodes.b]\nkind = "branch"\nhours = "mon-fri 09:00-17:00"\n'
        'field = "vip"\nthen = "x"\nelse = "x"\n[nodes.x]\nkind = "hangup"\n'
    )
    with pytest.raises(FlowError, match="exactly one of") as info:
        parse_flow(text)
    assert info.value.line == line_of(text, "field =")
    bad_hours = text.replace('field = "vip"\n', "").replace("09:00-17:00", "9-5")
    with pytest.raises(FlowError, match="hours must look like") as info:
        parse_flow(bad_hours)
    assert info.value.line == line_of(bad_hours, "hours =")


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prompts")
    write_tone_wav(folder / "menu.wav", 500, 0.1)
    return folder


def chain(names: list[str], broken: int, kind: str) -> tuple[str, int]:
    """A flow of play nodes in a chain whose `broken`-th `next` names a missing node, and the
    line of that `next`."""
    lines: list[str] = []
    bad_line = 0
    if kind == "toml":
        lines.append(f'start = "{names[0]}"')
        for i, name in enumerate(names):
            target = names[i + 1] if i + 1 < len(names) else names[0]
            if i == broken:
                target = "missing_node"
            lines += ["", f"[nodes.{name}]", 'kind = "play"', 'prompts = ["menu.wav"]']
            lines.append(f'next = "{target}"')
            if i == broken:
                bad_line = len(lines)
    else:
        lines += ["{", f'  "start": "{names[0]}",', '  "nodes": {']
        for i, name in enumerate(names):
            target = names[i + 1] if i + 1 < len(names) else names[0]
            if i == broken:
                target = "missing_node"
            lines += [
                f'    "{name}": {{',
                '      "kind": "play",',
                '      "prompts": ["menu.wav"],',
            ]
            lines.append(f'      "next": "{target}"')
            if i == broken:
                bad_line = len(lines)
            lines.append("    }," if i + 1 < len(names) else "    }")
        lines += ["  }", "}"]
    return "\n".join(lines) + "\n", bad_line


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=8,
                   unique=True).filter(lambda ns: "missing_node" not in ns),
    data=st.data(),
    kind=st.sampled_from(["toml", "json"]),
)  # fmt: skip
def test_the_line_of_a_bad_reference_is_found(
    prompt_dir: Path, names: list[str], data: st.DataObject, kind: str
) -> None:
    broken = data.draw(st.integers(0, len(names) - 1))
    text, line = chain(names, broken, kind)
    with pytest.raises(FlowError) as info:
        parse_flow(text, kind=kind, base=prompt_dir)
    assert "unknown node 'missing_node'" in info.value.reason
    assert info.value.line == line
