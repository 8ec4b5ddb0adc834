"""SIGKILL the flow process or the serving process anywhere: the run resumes by itself and
completes, and every side effect on the backend happened exactly once."""

from __future__ import annotations

import os
import signal

import pytest

from autopilot.run import crashpoints
from autopilot.worker.executors import living_executor
from tests.helpers import wait_until
from tests.prefect_stack import launch, read_flow_run, running_task, wait_for_state
from tests.stack_fixtures import Stack


def crash_count(flow_run_id) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        history = client.read_flow_run_states(flow_run_id)
    return sum(1 for state in history if state.type.value == "CRASHED")


def kill_flow_process(stack: Stack, flow_run_id) -> int:
    pid = wait_until(
        lambda: living_executor(stack.data_dir, flow_run_id), timeout=30, message="flow process"
    )
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("step", ["preparing", "monitoring", "generating_report"])
def test_sigkill_of_the_flow_process_during_a_step_resumes_and_completes(stack: Stack, step):
    sim = stack.create_simulation(rounds=15)
    run_id = launch(sim)

    wait_until(lambda: running_task(run_id) == step, timeout=90, interval=0.1, message=step)
    if step == "monitoring":
        wait_until(lambda: stack.run_status(sim)["current_round"] >= 3, timeout=30)
    killed = kill_flow_process(stack, run_id)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert living_executor(stack.data_dir, run_id) != killed
    assert crash_count(run_id) == 1
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


@pytest.mark.parametrize(
    "point", ["prepare-requested", "start-accepted", "report-requested", "report-done"]
)
def test_crash_right_after_a_side_effect_does_not_repeat_it(stack: Stack, point):
    sim = stack.create_simulation(rounds=5)
    crashpoints.arm(stack.data_dir, sim, point)
    run_id = launch(sim)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)

    assert crash_count(run_id) == 1
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_a_run_that_keeps_crashing_is_given_up_with_a_reason(stack: Stack):
    sim = stack.create_simulation(rounds=50)
    crashpoints.arm(stack.data_dir, sim, "monitor-polled", times=10)
    run_id = launch(sim)

    run = wait_for_state(run_id, {"FAILED"}, timeout=120)

    assert "gave up after 3 automatic restarts" in run.state.message
    assert crash_count(run_id) == 4


def test_serving_process_killed_with_its_flow_processes_resumes_after_restart(stack: Stack):
    sim = stack.create_simulation(rounds=40)
    run_id = launch(sim)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 3, timeout=90)

    stack.worker.kill(with_flow_processes=True)
    round_at_kill = stack.run_status(sim)["current_round"]
    stack.worker.start()

    wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    assert stack.run_status(sim)["current_round"] >= round_at_kill
    assert crash_count(run_id) == 1
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_a_flow_process_that_outlived_its_runner_gets_no_twin(stack: Stack):
    sim = stack.create_simulation(rounds=40)
    run_id = launch(sim)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 2, timeout=90)
    survivor = living_executor(stack.data_dir, run_id)
    assert survivor is not None

    stack.worker.kill(with_flow_processes=False)
    stack.worker.start()

    wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    assert crash_count(run_id) == 0
    assert read_flow_run(run_id).run_count == 1
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_an_orphaned_flow_process_that_dies_later_is_restarted(stack: Stack):
    sim = stack.create_simulation(rounds=80)
    run_id = launch(sim)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 2, timeout=90)
    stack.worker.kill(with_flow_processes=False)
    stack.worker.start()
    orphan = living_executor(stack.data_dir, run_id)
    assert orphan is not None

    os.kill(orphan, signal.SIGKILL)  # no runner watches it: only the sweep can notice

    wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    assert crash_count(run_id) == 1
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_a_worker_stopped_with_sigterm_leaves_the_simulation_running_and_is_resumed(
    stack: Stack,
):
    # A restart or a deploy: SIGTERM to the worker makes Prefect's runner cancel its runs.
    # Nobody asked to stop: the simulation must run on, and the next worker resume the run.
    sim = stack.create_simulation(rounds=40)
    run_id = launch(sim)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 3, timeout=90)
    assert stack.worker.proc is not None

    stack.worker.proc.send_signal(signal.SIGTERM)
    stack.worker.proc.wait(timeout=60)
    shut_down = read_flow_run(run_id)
    assert shut_down.state is not None and shut_down.state.type.value == "CANCELLED"
    assert stack.run_status(sim)["runner_status"] in {"running", "completed"}

    stack.worker.start()

    def completed() -> bool:
        state = read_flow_run(run_id).state
        return state is not None and state.type.value == "COMPLETED"

    # Not wait_for_state: Cancelled is final to it, and here it is where the run waits.
    wait_until(completed, timeout=180, interval=0.5, message="the resumed run completing")
    assert crash_count(run_id) == 0  # a shutdown is not a crash: no restart budget spent
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
