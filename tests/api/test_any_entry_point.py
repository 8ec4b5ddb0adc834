"""Runs started outside the shim are auto-pilots like any other, and the shim's stop/reset
touch only what an auto-pilot started."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.api.shim import Api
from tests.helpers import wait_until
from tests.prefect_stack import REPO_ROOT, wait_for_state
from tests.stack_fixtures import Stack

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def prefect_deployment_run(simulation_id: str) -> str:
    """`prefect deployment run 'auto-pilot/local' --param simulation_id=…`: the flow run id."""
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "auto-pilot/local",
         "--param", f"simulation_id={simulation_id}"],
        env=os.environ, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return next(line.split()[-1] for line in result.stdout.splitlines() if "UUID" in line)


def test_a_prefect_deployment_run_is_visible_and_completes_as_an_auto_pilot(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=60)
    api.configure_auto(sim)  # in manual mode it would wait after each step (test_manual_mode)

    flow_run_id = prefect_deployment_run(sim)

    active = api.wait_status(sim, lambda d: d["status"] == "active", 60, "active")
    assert active["flow_run_id"] == flow_run_id and active["generation"] == 0
    done = api.wait_for(sim, "completed", timeout=120)
    assert done["flow_run_id"] == flow_run_id
    assert done["last_completed_step"] == "completed" and done["step_progress"] == 100
    assert stack.ledger(sim) == ONE_OF_EACH


def test_a_deployment_run_while_a_shim_run_is_active_ends_without_acting(api: Api, stack: Stack):
    # 200 rounds of 0.1 s: still running when `prefect deployment run` has started (~5 s).
    sim = stack.create_simulation(rounds=200)
    api.configure_auto(sim)
    started = api.ok("start", simulation_id=sim)
    api.wait_monitoring(sim)

    intruder = prefect_deployment_run(sim)

    refused = wait_for_state(intruder, {"CANCELLED"}, timeout=60)
    assert started["flow_run_id"] in refused.state.message
    assert api.status(sim)["flow_run_id"] == started["flow_run_id"]
    api.wait_for(sim, "completed", timeout=120)
    assert stack.ledger(sim) == ONE_OF_EACH


def test_reset_and_stop_leave_a_simulation_started_by_hand_running(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=200)
    with stack.backend() as backend:
        task_id = backend.prepare(sim).task_id
        wait_until(lambda: backend.prepare_status(sim, task_id).status == "completed", timeout=30)
        backend.start(sim)
    api.ok("config", simulation_id=sim, mode="manual")

    api.ok("reset", simulation_id=sim)
    api.ok("stop", simulation_id=sim)

    assert stack.run_status(sim)["runner_status"] == "running"
    assert stack.ledger(sim)["stop"] == 0
    httpx.post(f"{stack.simulator_url}/api/simulation/stop", json={"simulation_id": sim})
