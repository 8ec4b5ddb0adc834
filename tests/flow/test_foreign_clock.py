"""A backend whose clock is an hour fast and that writes naive local times in UTC+8 (as the
real multimo writes naive local times): whether an old run or report belongs to a new
generation is decided by the backend's own records, never across the two clocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SESSION_DIR
from tests.flow.test_outcomes import step_states
from tests.helpers import free_port, kill_leftover_runs, start_simulator, stop_process
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import Stack, named_stack

DEPLOYMENT = "auto-pilot/foreign-clock"


@pytest.fixture(scope="module")
def foreign(prefect_server: None) -> Iterator[Stack]:
    data_dir = SESSION_DIR / "foreign-clock"
    port = free_port()
    simulator = start_simulator(
        data_dir, port, round_seconds=0.1, prepare_seconds=0.5, report_seconds=0.5,
        clock_offset_seconds=3600, timestamp_zone="+08:00",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with named_stack("foreign-clock", url, data_dir / f"server-{port}.log") as stack:
            yield stack
    finally:
        stop_process(simulator)
        kill_leftover_runs(data_dir)


def test_a_new_generation_runs_again_on_a_backend_whose_clock_is_ahead(foreign: Stack):
    sim = foreign.create_simulation(rounds=3)
    wait_for_state(launch(sim, deployment=DEPLOYMENT), {"COMPLETED"}, timeout=90)
    started_at = foreign.run_status(sim)["started_at"]
    assert started_at and "+" not in started_at and not started_at.endswith("Z")  # naive

    second = launch(sim, generation=1, deployment=DEPLOYMENT)
    wait_for_state(second, {"COMPLETED"}, timeout=90)

    # The old completed run and its report are the backend's from before generation 1.
    assert foreign.ledger(sim) == {"prepare": 1, "start": 2, "stop": 0, "report": 2}
    assert foreign.run_status(sim)["started_at"] != started_at
    assert step_states(second)["starting"] == ["Completed"]
