"""`callcenter --help` and every subcommand's help run and describe each command and option."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


COMMANDS = [path for path, _ in _subcommands(build_parser())]


def test_top_level_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "--help"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    for name in ("serve", "campaign", "check-config", "examples:"):
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_each_subcommand_help_runs(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: callcenter " + " ".join(command) in capsys.readouterr().out


@pytest.mark.parametrize("command", [("serve",), ("check-config",)], ids=" ".join)
def test_every_option_of_our_commands_is_described(command: tuple[str, ...]) -> None:
    parser = dict(_subcommands(build_parser()))[command]
    assert parser.description
    for action in parser._actions:
        assert action.help, f"{' '.join(command)} {action.option_strings or action.dest}"
