"""What an operator reads in the worker's log: a pause is one INFO line, a failed run one
ERROR line naming the step and the reason, and no tracebacks for either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import Stack, named_stack

DEPLOYMENT = "auto-pilot/quiet-logs"


@pytest.fixture(scope="module")
def logged(prefect_server: None, simulator: tuple[str, Path]) -> Iterator[Stack]:
    with named_stack("quiet-logs", *simulator) as stack:
        yield stack


def test_a_pause_and_a_failure_are_one_line_each_without_tracebacks(logged: Stack):
    from prefect.flow_runs import resume_flow_run, suspend_flow_run

    paused_sim = logged.create_simulation(rounds=40)
    paused = launch(paused_sim, deployment=DEPLOYMENT)
    wait_until(lambda: logged.run_status(paused_sim)["current_round"] >= 2, timeout=90)
    suspend_flow_run(flow_run_id=paused)
    wait_for_state(paused, {"PAUSED"}, timeout=30)
    resume_flow_run(paused)
    failed_sim = logged.create_simulation(rounds=10, faults={"fail_at_round": 2})
    failed = launch(failed_sim, deployment=DEPLOYMENT)
    wait_for_state(failed, {"FAILED"}, timeout=90)
    wait_for_state(paused, {"COMPLETED"}, timeout=120)

    log = logged.worker.log_path.read_text(errors="replace").splitlines()
    assert not [line for line in log if "Traceback" in line]
    pause_lines = [line for line in log if paused_sim in line and "paused" in line.lower()]
    assert len(pause_lines) == 1 and "INFO" in pause_lines[0], pause_lines
    errors = [line for line in log if "ERROR" in line]
    assert len(errors) == 1, errors
    assert "failed at monitoring" in errors[0] and "injected failure at round 2" in errors[0]
