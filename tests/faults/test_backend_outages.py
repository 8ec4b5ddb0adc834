"""Backend outages while MONITORING: the run rides out one shorter than its `outage_tolerance`
(and every side effect still happens once), and fails clearly on one that lasts longer.

Three kinds of outage, all real: the simulator process SIGKILLed (refused connections) and
started again on the same port and data dir; 503 answers (`unavailable_seconds`); answers
slower than the worker's 1 s HTTP timeout (`delay_seconds`). The runs belong to this module's
own simulator and worker (tests/faults/outage_stack.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import SESSION_DIR
from tests.faults.outage_stack import (
    OUTAGE_DEPLOYMENT,
    OUTAGE_DEPLOYMENT_NAME,
    OUTAGE_WORKER_SETTINGS,
    KillableBackend,
    NamedWorker,
    OutageStack,
    deployment_ready,
)
from tests.helpers import free_port, wait_until
from tests.prefect_stack import running_task, task_runs, wait_for_state

SHORT_TOLERANCE = 8.0  # comfortably longer than noticing an outage and ending it (~1-3 s)
LONG_TOLERANCE = 3.0
SLOW_ANSWER_SECONDS = 4.0  # > the outage worker's 1 s HTTP timeout

# What the client makes of each kind of outage; it ends up in the log and the failure text.
SYMPTOMS = {
    "refused": "unreachable on",
    "error-503": "backend error 503",
    "slow": "timed out on",
}
KINDS = list(SYMPTOMS)


@pytest.fixture(scope="module")
def outages(prefect_server: None) -> Iterator[OutageStack]:
    base = SESSION_DIR / "outage"
    backend = KillableBackend(base / "simulator", free_port())
    backend.start()
    env = {
        **os.environ,
        **OUTAGE_WORKER_SETTINGS,
        "AUTOPILOT_BACKEND_URL": backend.url,
        "AUTOPILOT_DATA_DIR": str(base / "autopilot-data"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(base / "results"),
    }
    worker = NamedWorker(OUTAGE_DEPLOYMENT_NAME, env, SESSION_DIR / "outage-worker.log")
    stack = OutageStack(worker, backend, base / "autopilot-data")
    try:
        worker.start()
        wait_until(
            lambda: deployment_ready(OUTAGE_DEPLOYMENT), timeout=90, interval=0.5,
            message=OUTAGE_DEPLOYMENT,
        )  # fmt: skip
        yield stack
    finally:
        stack.shutdown()


@pytest.fixture
def outage_stack(outages: OutageStack) -> OutageStack:
    outages.ensure_up()
    return outages


def begin_outage(stack: OutageStack, kind: str, simulation_id: str) -> None:
    if kind == "refused":
        stack.killable.kill()
    elif kind == "error-503":
        stack.set_faults(simulation_id, unavailable_seconds=120)
    else:
        stack.set_faults(simulation_id, delay_seconds=SLOW_ANSWER_SECONDS)


def end_outage(stack: OutageStack, kind: str, simulation_id: str) -> None:
    if kind == "refused":
        stack.killable.start()  # same port, same data dir: the run process is adopted
    else:
        stack.set_faults(simulation_id, clear=True)


def wait_until_monitoring(stack: OutageStack, run_id, simulation_id: str) -> None:
    def monitoring_past_round_two() -> bool:
        return (
            running_task(run_id) == "monitoring"
            and stack.run_status(simulation_id)["current_round"] >= 2
        )

    wait_until(monitoring_past_round_two, timeout=90, interval=0.2, message="monitoring")


def failed_steps(run_id) -> list[str]:
    return [
        run.name.split("-")[0]
        for run in task_runs(run_id)
        if run.state is not None and run.state.type.value == "FAILED"
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_outage_shorter_than_the_tolerance_is_ridden_out(outage_stack: OutageStack, kind: str):
    stack = outage_stack
    # 30 rounds of 0.15 s: the simulation usually still runs when the outage ends.
    sim = stack.create_simulation(rounds=30, round_seconds=0.15)
    run_id = stack.launch(sim, outage_tolerance=SHORT_TOLERANCE)
    wait_until_monitoring(stack, run_id, sim)

    begin_outage(stack, kind, sim)
    try:
        wait_until(
            lambda: stack.worker_noticed(sim, SYMPTOMS[kind]), timeout=SHORT_TOLERANCE,
            interval=0.1, message=f"the worker noticing the {kind} outage",
        )  # fmt: skip
    finally:
        end_outage(stack, kind, sim)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
    status = stack.run_status(sim)
    assert status["runner_status"] == "completed"
    assert status["current_round"] == status["total_rounds"] == 30


@pytest.mark.parametrize("kind", KINDS)
def test_outage_longer_than_the_tolerance_fails_the_run_clearly(
    outage_stack: OutageStack, kind: str
):
    stack = outage_stack
    # Long enough that the simulation itself is still running when the run gives up.
    sim = stack.create_simulation(rounds=300, round_seconds=0.1)
    run_id = stack.launch(sim, outage_tolerance=LONG_TOLERANCE)
    wait_until_monitoring(stack, run_id, sim)

    began = time.monotonic()
    begin_outage(stack, kind, sim)
    try:
        run = wait_for_state(run_id, {"FAILED"}, timeout=60)
        gave_up_after = time.monotonic() - began
    finally:
        end_outage(stack, kind, sim)

    message = run.state.message
    assert "backend unavailable for" in message, message
    assert f"tolerance {LONG_TOLERANCE:.0f}s" in message, message
    assert SYMPTOMS[kind] in message, message
    assert gave_up_after >= LONG_TOLERANCE  # ridden out for the tolerance, not failed at once
    assert failed_steps(run_id) == ["monitoring"]
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 0}
    stack.stop_simulation(sim)


def test_the_first_call_of_every_step_rides_out_an_outage(outage_stack: OutageStack):
    stack = outage_stack
    # Each step's first call that changes the backend answers 503 five times in a row: more
    # than the three task-level retries could cover, well within the run's tolerance.
    routes = {
        "POST /api/simulation/prepare": 5,
        "POST /api/simulation/start": 5,
        "POST /api/report/generate": 5,
    }
    sim = stack.create_simulation(rounds=3, faults={"unavailable_routes": routes})

    run_id = stack.launch(sim, outage_tolerance=60, outage_base_delay=0.2)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
    remaining = httpx.get(
        f"{stack.simulator_url}/api/sim/faults", params={"simulation_id": sim}, timeout=10
    ).json()["data"]["unavailable_routes"]
    assert remaining == dict.fromkeys(routes, 0), remaining


# -- a backend that answers nonsense (the simulator's malformed_routes: HTTP 200, bad body) ----


@pytest.mark.parametrize("answer", ["truncated", "wrong_types"])
def test_nonsense_answers_are_ridden_out_like_an_outage(outage_stack: OutageStack, answer: str):
    stack = outage_stack
    sim = stack.create_simulation(rounds=3)
    # Every step's first look and first act answer nonsense three times in a row.
    routes = {
        "POST /api/simulation/prepare": 3,
        f"GET /api/simulation/{sim}": 3,
        "POST /api/simulation/start": 3,
        f"GET /api/simulation/{sim}/run-status": 3,
        "POST /api/report/generate": 3,
    }
    stack.set_faults(sim, malformed_routes=routes, malformed_answer=answer)

    run_id = stack.launch(sim, outage_tolerance=60, outage_base_delay=0.2)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
    remaining = httpx.get(
        f"{stack.simulator_url}/api/sim/faults", params={"simulation_id": sim}, timeout=10
    ).json()["data"]["malformed_routes"]
    assert remaining == dict.fromkeys(routes, 0), remaining
    assert stack.worker_noticed(sim, "the backend answered")


def test_nonsense_past_the_tolerance_fails_the_run_in_one_sentence(outage_stack: OutageStack):
    stack = outage_stack
    sim = stack.create_simulation(rounds=300, round_seconds=0.1)
    run_id = stack.launch(sim, outage_tolerance=LONG_TOLERANCE)
    wait_until_monitoring(stack, run_id, sim)

    stack.set_faults(
        sim,
        malformed_routes={f"GET /api/simulation/{sim}/run-status": 100_000},
        malformed_answer="wrong_types",
    )
    try:
        run = wait_for_state(run_id, {"FAILED"}, timeout=60)
    finally:
        stack.set_faults(sim, clear=True)

    message = run.state.message
    assert f"GET /api/simulation/{sim}/run-status: the backend answered" in message, message
    assert "runner_status" in message, message  # the field it could not read
    for dump in ("validation error", "pydantic", "Traceback", "input_value"):
        assert dump not in message, message
    assert failed_steps(run_id) == ["monitoring"]
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 0}
    stack.stop_simulation(sim)
