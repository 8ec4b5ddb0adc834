"""The command line hands every option to the code that uses it, and refuses bad ones clearly
(real `autopilot` processes)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from tests.helpers import AUTOPILOT


def autopilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AUTOPILOT, *args], capture_output=True, text=True, timeout=60)


def test_chaos_hands_its_database_to_the_harness():
    # Refused by the harness itself, before any stack starts: the option reached it.
    result = autopilot("chaos", "--trials", "1", "--db", "mysql")
    assert result.returncode == 1
    assert "unknown database 'mysql'" in result.stderr
    assert "Traceback" not in result.stderr


def every_command_path() -> list[list[str]]:
    """Every command's words, e.g. ["start"], ["sim", "serve"]."""
    import typer.main

    from autopilot.cli.app import app

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        if hasattr(command, "commands"):  # a group (typer carries its own click)
            found = [path]
            for name, sub in command.commands.items():
                found += walk(sub, [*path, name])
            return found
        return [path]

    return walk(typer.main.get_command(app), [])


def test_every_help_screen_is_conventional_and_shows_an_example():
    from typer.testing import CliRunner

    from autopilot.cli.app import app

    paths = every_command_path()
    assert ["start"] in paths and ["sim", "serve"] in paths and ["up"] in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        shown = result.output
        assert "Example: " in shown and "autopilot" in shown.split("Example: ", 1)[1], path
        # Flags take no value, and types read as click's (INTEGER RANGE, FLOAT, TEXT).
        for odd in ("<bool>", "<int", "<float>", "<str>", "<Path>"):
            assert odd not in shown, (path, odd, shown)
    chaos = runner.invoke(app, ["chaos", "--help"], env={"COLUMNS": "120"}).output
    assert "INTEGER RANGE [x>=1]" in chaos


def test_an_unknown_log_format_is_refused_clearly():
    result = subprocess.run(
        [*AUTOPILOT, "status", "sim_x"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "AUTOPILOT_LOG_FORMAT": "xml"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_LOG_FORMAT" in result.stderr and "Traceback" not in result.stderr
