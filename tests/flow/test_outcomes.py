"""How an auto-pilot run ends: completed, failed with the real step and text, new generations."""

from __future__ import annotations

from tests.helpers import wait_until
from tests.prefect_stack import launch, task_runs, wait_for_state
from tests.stack_fixtures import Stack


def step_states(flow_run_id) -> dict[str, list[str]]:
    """Each step's task-run state names, oldest first (e.g. Completed, Cached)."""
    states: dict[str, list[str]] = {}
    for run in task_runs(flow_run_id):
        states.setdefault(run.name.split("-")[0], []).append(run.state.name if run.state else "?")
    return states


def test_happy_path_completes_with_one_of_each_side_effect(stack: Stack):
    sim = stack.create_simulation(rounds=6)
    run_id = launch(sim)

    wait_for_state(run_id, {"COMPLETED"}, timeout=90)

    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
    status = stack.run_status(sim)
    assert status["runner_status"] == "completed"
    assert status["current_round"] == status["total_rounds"] == 6
    assert list(step_states(run_id)) == [
        "preparing",
        "starting",
        "monitoring",
        "generating_report",
        "completed",
    ]


def test_simulation_failure_fails_the_monitoring_step_with_the_backend_text(stack: Stack):
    sim = stack.create_simulation(rounds=10, faults={"fail_at_round": 3})
    run_id = launch(sim)

    run = wait_for_state(run_id, {"FAILED"}, timeout=90)

    assert "injected failure at round 3" in run.state.message
    failed_steps = [name for name, states in step_states(run_id).items() if states[-1] == "Failed"]
    assert failed_steps == ["monitoring"]
    assert stack.ledger(sim)["report"] == 0


def test_short_backend_outage_is_ridden_out(stack: Stack):
    sim = stack.create_simulation(rounds=30)
    run_id = launch(sim, outage_tolerance=20)
    wait_for_state(run_id, {"RUNNING"}, timeout=60)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 2, timeout=60)
    stack.set_faults(sim, unavailable_seconds=3)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert stack.ledger(sim)["start"] == 1


def test_backend_outage_longer_than_tolerance_fails_clearly(stack: Stack):
    sim = stack.create_simulation(rounds=200)
    run_id = launch(sim, outage_tolerance=2)
    wait_until(lambda: stack.run_status(sim)["current_round"] >= 2, timeout=60)
    stack.set_faults(sim, unavailable_seconds=60)

    run = wait_for_state(run_id, {"FAILED"}, timeout=60)
    assert "backend unavailable for" in run.state.message
    stack.set_faults(sim, unavailable_seconds=0)


def test_a_new_generation_runs_every_step_again_and_keeps_history(stack: Stack):
    sim = stack.create_simulation(rounds=4)
    first = launch(sim, generation=0)
    wait_for_state(first, {"COMPLETED"}, timeout=90)

    second = launch(sim, generation=1)
    wait_for_state(second, {"COMPLETED"}, timeout=90)

    ledger = stack.ledger(sim)
    assert ledger["start"] == 2 and ledger["report"] == 2
    assert all(states == ["Completed"] for states in step_states(second).values())
    wait_for_state(first, {"COMPLETED"}, timeout=5)  # the old run's history stays
