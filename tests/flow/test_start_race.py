"""A POST /start that lands between the start step's look and its own request (an attempt
taken over while its request was under way: seen under a start storm on a loaded host) is
adopted, not a failure, and starts nothing twice."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from autopilot.run import crashpoints
from autopilot.worker.executors import living_executor, process_state
from tests.helpers import wait_until
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import Stack


def test_a_start_that_landed_after_the_look_is_adopted(stack: Stack):
    sim = stack.create_simulation(rounds=4)
    # The attempt looks (not started), then freezes right before its POST /start.
    crashpoints.arm(stack.data_dir, sim, "start-about-to-request", action="stall")
    run_id = launch(sim)
    pid = wait_until(
        lambda: (p := living_executor(stack.data_dir, run_id)) and process_state(p) == "T" and p,
        timeout=90, interval=0.2, message="the attempt frozen before POST /start",
    )  # fmt: skip
    # Flow processes retry a Prefect server error (a PostgreSQL server out of pooled
    # connections answers 500): they inherit the worker's setting.
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"PREFECT_CLIENT_RETRY_EXTRA_CODES=500" in environ
    # The other request lands meanwhile.
    with stack.backend() as backend:
        backend.start(sim)
    assert stack.run_status(sim)["runner_status"] in {"starting", "running", "completed"}
    os.kill(pid, signal.SIGCONT)

    wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
