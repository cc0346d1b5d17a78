"""`tulle --help` lists every command without importing any of them."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tulle.cli.main import COMMANDS, cli


def _command(name: str) -> click.Command:
    module_name, attribute = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module_name), attribute)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_first_paragraph_of_the_commands_help(name: str) -> None:
    help_text = inspect.cleandoc(_command(name).help or "")
    assert COMMANDS[name][1] == " ".join(help_text.split("\n\n")[0].split())


def test_help_lists_every_command_as_click_would() -> None:
    listed = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert listed.exit_code == 0
    imported = click.Group(commands={name: _command(name) for name in COMMANDS})
    expected = CliRunner().invoke(imported, ["--help"], terminal_width=80)
    section = expected.output[expected.output.index("Commands:"):]
    assert listed.output.endswith(section)


def test_help_imports_no_command() -> None:
    probe = (
        "import sys; from tulle.cli.main import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('tulle.') and m != 'tulle.cli.main'"
        " and m != 'tulle.cli'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
