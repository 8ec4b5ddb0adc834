"""The shipped crash-consistency harness: its invariants, and a short run of it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from autopilot.devstack.chaos import INJECTIONS, TARGETS, check_invariants
from autopilot.worker.executors import process_alive, process_environments
from tests.helpers import wait_until

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def one_run(*rounds: int, started: str = "t0") -> list[tuple[str | None, int]]:
    """Polled rounds of one backend run (its start time, then its round)."""
    return [(started, number) for number in rounds]


def test_invariants_accept_one_of_each_and_monotonic_rounds():
    assert check_invariants(ONE_OF_EACH, "completed", one_run(0, 1, 1, 5, 12)) == []


def test_invariants_catch_twins_missing_reports_failures_and_rewinds():
    ledger = {**ONE_OF_EACH, "start": 2, "report": 0}
    violations = check_invariants(ledger, "failed", one_run(3, 4, 2))
    assert violations == ["start x2", "report x0", "ended failed", "round counter went backwards"]


def test_invariants_catch_a_report_asked_for_twice():
    assert check_invariants({**ONE_OF_EACH, "report_repeat": 1}, "completed", one_run(1)) == [
        "report asked again x1"
    ]


def test_a_restart_expects_exactly_what_its_step_and_the_later_ones_do_again():
    # From starting: a second run of the simulation (its rounds begin again) and report.
    rounds = one_run(10, 12) + one_run(0, 3, 12, started="t1")
    again = {**ONE_OF_EACH, "start": 2, "report": 2}
    assert check_invariants(again, "completed", rounds, "starting") == []
    assert check_invariants(ONE_OF_EACH, "completed", rounds, "starting") == [
        "start x1",
        "report x1",
    ]
    report_again = {**ONE_OF_EACH, "report": 2}
    assert check_invariants(report_again, "completed", one_run(12), "generating_report") == []
    assert check_invariants(ONE_OF_EACH, "completed", one_run(4, 12), "monitoring") == []
    # The first run had asked for its report when the restart at monitoring was asked for:
    # the restart makes one more, and only one.
    report_again = {**ONE_OF_EACH, "report": 2}
    assert check_invariants(report_again, "completed", one_run(12), "monitoring", 1) == []
    assert check_invariants(report_again, "completed", one_run(12), "monitoring", 0) == [
        "report x2"
    ]
    # Watching a running simulation from a fresh attempt must never stop it.
    stopped = {**ONE_OF_EACH, "stop": 1}
    assert check_invariants(stopped, "completed", one_run(12), "monitoring") == ["stop x1"]


def test_a_short_chaos_run_across_every_target_has_no_violation(tmp_path):
    """About ten trials: each SIGKILLs a target (or fires an injection point) at a random
    moment, some of them in a restart from a step, some in manual mode (the harness confirms
    each step); the harness exits non-zero on any violated invariant."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOPILOT_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    result = subprocess.run(
        [sys.executable, "-c", "from autopilot.cli import main; main()", "chaos",
         "--trials", "10", "--seed", "821", "--parallel", "2", "--rounds", "10",
         "--restarts", "0.4", "--manual", "0.6", "--targets", ",".join(TARGETS + INJECTIONS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "10 trials, 0 violations" in output
    assert re.search(r"from (starting|monitoring|generating_report)", output), output[-4000:]
    assert re.search(r"\bmanual\b", output), output[-4000:]


def test_a_short_chaos_run_killing_whole_hosts_has_no_violation(tmp_path):
    """Three hosts (workers with their own identity and data dir) on one Prefect server; each
    trial kills the host running the auto-pilot (worker and flow processes, kept down for 20 s):
    another host must take the run over through its lease, once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOPILOT_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    result = subprocess.run(
        [sys.executable, "-c", "from autopilot.cli import main; main()", "chaos",
         "--trials", "4", "--seed", "12", "--parallel", "2", "--rounds", "10",
         "--hosts", "3", "--host-down", "20", "--targets", "host"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "4 trials, 0 violations" in output
    assert output.count("(down 20s)") == 4  # every trial killed a whole host


def test_an_interrupted_chaos_run_reports_the_trials_done_and_stops_its_stack(tmp_path):
    """SIGTERM (as Ctrl-C) after the first trial: the trials not begun are dropped, the one
    under way stops looking, the summary of those done is printed, nothing is left running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOPILOT_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    log = tmp_path / "chaos.log"
    with log.open("wb") as out:
        chaos = subprocess.Popen(
            [sys.executable, "-c", "from autopilot.cli import main; main()", "chaos",
             "--trials", "50", "--seed", "3", "--rounds", "10", "--targets", "simulator"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(lambda: "recovery" in log.read_text(), timeout=300, interval=0.5,
                       message="the first trial done")  # fmt: skip
            chaos.send_signal(signal.SIGTERM)
            code = chaos.wait(timeout=120)
        finally:
            if chaos.poll() is None:
                chaos.kill()
    output = log.read_text()
    assert code == 130, output[-3000:]
    done = re.search(r"interrupted after (\d+) of 50 trials", output)
    assert done and 1 <= int(done.group(1)) < 50, output[-3000:]
    assert "chaos summary" in output and f"{done.group(1)} trials, 0 violations" in output
    workdir = re.search(r"chaos: stack in (\S+)", output)
    assert workdir is not None
    wait_until(lambda: not processes_mentioning(workdir.group(1)), timeout=30,
               message="the harness's stack gone")  # fmt: skip


def processes_mentioning(text: str) -> list[int]:
    """Living processes whose environment names `text` (a stack's folder: each piece gets its
    data dir, Prefect home or result path there)."""
    wanted = text.encode()
    return [
        pid
        for pid, environ in process_environments()
        if process_alive(pid) and any(wanted in value for value in environ.values())
    ]
