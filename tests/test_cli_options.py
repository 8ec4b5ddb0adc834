"""The command line hands every option to the code that uses it, and refuses bad ones clearly
(real `autopilot` processes)."""

from __future__ import annotations

import subprocess
import sys

AUTOPILOT = [sys.executable, "-c", "from autopilot.cli import main; main()"]


def autopilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AUTOPILOT, *args], capture_output=True, text=True, timeout=60)


def test_chaos_hands_its_database_to_the_harness():
    # Refused by the harness itself, before any stack starts: the option reached it.
    result = autopilot("chaos", "--trials", "1", "--db", "mysql")
    assert result.returncode == 1
    assert "unknown database 'mysql'" in result.stderr
    assert "Traceback" not in result.stderr
