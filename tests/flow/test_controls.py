"""Pause (suspend), resume and cancel reach the running flow, measured from the outside."""

from __future__ import annotations

import time

from autopilot.worker.executors import living_executor
from tests.flow.test_outcomes import step_states
from tests.helpers import run_status_poll_times, wait_until
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import Stack


def test_suspend_stops_polling_and_resume_continues_without_repeating_steps(stack: Stack):
    from prefect.flow_runs import resume_flow_run, suspend_flow_run

    sim = stack.create_simulation(rounds=60)
    run_id = launch(sim)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 3, timeout=90)

    suspended_at = time.time()
    suspend_flow_run(flow_run_id=run_id)
    wait_for_state(run_id, {"PAUSED"}, timeout=10)
    wait_until(lambda: living_executor(stack.data_dir, run_id) is None, timeout=30, message="exit")
    last_poll = max(run_status_poll_times(stack.simulator_log, sim))
    assert last_poll - suspended_at <= 2.0, f"polled {last_poll - suspended_at:.2f}s after"

    resume_flow_run(run_id)
    wait_for_state(run_id, {"COMPLETED"}, timeout=180)

    states = step_states(run_id)
    assert states["preparing"] == ["Completed", "Cached"]
    assert states["starting"] == ["Completed", "Cached"]
    assert states["generating_report"] == ["Completed"]
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_cancel_kills_the_flow_process_and_stops_the_simulation(stack: Stack):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    sim = stack.create_simulation(rounds=100)
    run_id = launch(sim)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 2, timeout=90)
    pid = living_executor(stack.data_dir, run_id)
    assert pid is not None

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Cancelling(), force=True)

    wait_for_state(run_id, {"CANCELLED"}, timeout=30)
    wait_until(lambda: living_executor(stack.data_dir, run_id) is None, timeout=10)
    wait_until(lambda: stack.run_status(sim)["runner_status"] == "stopped", timeout=15)
    assert stack.ledger(sim)["stop"] == 1
