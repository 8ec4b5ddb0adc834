"""Side effects and state that used to go wrong, through the real stack, counted in the
simulator's ledger: a preparation that "completed" but failed, ids that shared checkpoints,
retries that redid the wrong things or too much."""

from __future__ import annotations

import json
import os
from pathlib import Path
from uuid import uuid4

from autopilot import names
from tests.flow.test_outcomes import step_states
from tests.helpers import wait_until
from tests.prefect_stack import launch, running_task, wait_for_state
from tests.stack_fixtures import Stack

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_a_preparation_that_completes_with_a_failed_result_fails_at_preparing(stack: Stack):
    reason = "没有找到符合条件的实体 (no matching entities)"
    sim = stack.create_simulation(rounds=4, faults={"prepare_result_failed": reason})

    run = wait_for_state(launch(sim), {"FAILED"}, timeout=90)

    assert reason in run.state.message
    assert [name for name, states in step_states(run.id).items() if states[-1] == "Failed"] == [
        "preparing"
    ]
    assert stack.ledger(sim)["start"] == 0
    # Never checkpointed: a retry prepares again (the fault was spent) and goes on to the end.
    wait_for_state(launch(sim), {"COMPLETED"}, timeout=90)
    assert stack.ledger(sim) == {"prepare": 2, "start": 1, "stop": 0, "report": 1}


def test_ids_that_differ_only_in_punctuation_get_their_own_checkpoints(stack: Stack):
    suffix = uuid4().hex[:8]
    first = stack.create_simulation(rounds=3, simulation_id=f"col.{suffix}")
    second = stack.create_simulation(rounds=3, simulation_id=f"col-{suffix}")

    wait_for_state(launch(first), {"COMPLETED"}, timeout=90)
    run = wait_for_state(launch(second), {"COMPLETED"}, timeout=90)

    assert stack.ledger(first) == ONE_OF_EACH
    assert stack.ledger(second) == ONE_OF_EACH
    assert "Cached" not in {state for states in step_states(run.id).values() for state in states}


def test_a_retry_after_the_simulation_failed_starts_it_again(stack: Stack):
    sim = stack.create_simulation(rounds=6, faults={"fail_at_round": 2})
    wait_for_state(launch(sim), {"FAILED"}, timeout=90)
    stack.set_faults(sim, clear=True)

    retry = wait_for_state(launch(sim), {"COMPLETED"}, timeout=90)

    # The same generation: preparation is not redone, the dead run is started again.
    assert stack.ledger(sim) == {"prepare": 1, "start": 2, "stop": 0, "report": 1}
    assert step_states(retry.id)["preparing"] == ["Cached"]
    assert stack.run_status(sim)["current_round"] == 6


def test_a_retry_after_the_report_step_lost_the_backend_adopts_the_finished_report(
    stack: Stack,
):
    sim = stack.create_simulation(rounds=3)
    first = launch(sim, outage_tolerance=2, outage_base_delay=0.2)
    wait_until(lambda: stack.ledger(sim)["report"] == 1, timeout=90, interval=0.02)
    # The report is being written; the backend stops answering the auto-pilot meanwhile.
    stack.set_faults(sim, unavailable_seconds=30)
    run = wait_for_state(first, {"FAILED"}, timeout=60)
    assert "backend unavailable" in run.state.message
    stack.set_faults(sim, unavailable_seconds=0)

    wait_for_state(launch(sim), {"COMPLETED"}, timeout=90)

    assert stack.ledger(sim) == ONE_OF_EACH


def test_a_second_run_of_a_simulation_with_an_active_one_ends_without_acting(stack: Stack):
    sim = stack.create_simulation(rounds=40)
    first = launch(sim)
    wait_until(lambda: running_task(first) == "monitoring", timeout=90, interval=0.1)

    second = wait_for_state(launch(sim), {"CANCELLED"}, timeout=60)

    assert str(first) in second.state.message
    wait_for_state(first, {"COMPLETED"}, timeout=120)
    assert stack.ledger(sim) == ONE_OF_EACH


def test_checkpoints_are_json_data_not_pickles(stack: Stack):
    sim = stack.create_simulation(rounds=3)
    wait_for_state(launch(sim), {"COMPLETED"}, timeout=90)

    results = Path(os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"])
    prefix = f"autopilot-{names.simulation_token(sim)}--"
    checkpoints = sorted(p for p in results.iterdir() if p.name.startswith(prefix))
    # autopilot-{token}--g{n}-{identity}--{step}[--{attempt}]
    steps = {path.name.split("--")[2] for path in checkpoints}
    assert {"preparing", "starting", "generating_report", "completed"} <= steps, checkpoints
    for path in checkpoints:
        record = json.loads(path.read_text())
        stored = json.loads(record["result"])
        assert stored["__class__"].startswith("autopilot.models."), stored
        assert stored["data"]["simulation_id"] == sim
