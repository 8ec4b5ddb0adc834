"""prefect.yaml works as documented: `prefect deploy` + a process worker + `deployment run`,
and, with `autopilot recover` watching the pool's deployment, a flow process killed under the
process worker is restarted without a human."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot.devstack import pieces
from autopilot.worker.executors import living_executor
from tests.helpers import stop_process, wait_until
from tests.prefect_stack import (
    REPO_ROOT,
    read_flow_run,
    running_task,
    set_mode,
    wait_for_state,
)
from tests.stack_fixtures import SESSION_DIR, Stack

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def prefect_cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def pool_env(prefect_server: None, simulator: tuple[str, Path]) -> Iterator[dict[str, str]]:
    """The work pool, the deployment from prefect.yaml and a process worker, as documented."""
    env = {
        **os.environ,
        "AUTOPILOT_REPO_DIR": str(REPO_ROOT),
        "AUTOPILOT_BACKEND_URL": simulator[0],
        "AUTOPILOT_POLL_INTERVAL": "0.25",
        "AUTOPILOT_CONTROL_CHECK_INTERVAL": "0.25",
    }
    prefect_cli("work-pool", "create", "autopilot-process", "--type", "process", "--overwrite",
                env=env)  # fmt: skip
    prefect_cli("--no-prompt", "deploy", "--all", env=env)
    with Path(SESSION_DIR / "process-worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "autopilot-process"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        recoverer = subprocess.Popen(
            [sys.executable, "-c", pieces.CLI, "recover",
             "--deployment", "auto-pilot/process", "--sweep-seconds", "1"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    yield env
    stop_process(recoverer)
    stop_process(worker)


def run_on_pool(simulation_id: str, env: dict[str, str]) -> str:
    set_mode(simulation_id, "auto")  # in manual mode it would wait after each step
    out = prefect_cli(
        "deployment", "run", "auto-pilot/process", "--param", f"simulation_id={simulation_id}",
        env=env,
    )  # fmt: skip
    return next(line.split()[-1] for line in out.splitlines() if "UUID" in line)


def test_prefect_deploy_and_a_process_worker_run_the_auto_pilot(stack: Stack, pool_env):
    sim = stack.create_simulation(rounds=5)
    flow_run_id = run_on_pool(sim, pool_env)
    run = wait_for_state(flow_run_id, {"COMPLETED"}, timeout=120)
    assert read_flow_run(run.id).deployment_id is not None
    assert stack.ledger(sim) == ONE_OF_EACH


def test_a_flow_process_killed_on_the_process_pool_is_restarted_without_a_human(
    stack: Stack, pool_env
):
    sim = stack.create_simulation(rounds=60)
    flow_run_id = run_on_pool(sim, pool_env)
    wait_until(lambda: running_task(flow_run_id) == "monitoring", timeout=90, message="monitoring")
    pid = wait_until(lambda: living_executor(stack.data_dir, flow_run_id), timeout=30)
    os.kill(pid, signal.SIGKILL)
    run = wait_for_state(flow_run_id, {"COMPLETED"}, timeout=180)
    history = [state.type.value for state in read_flow_run_states(run.id)]
    assert "CRASHED" in history
    assert stack.ledger(sim) == ONE_OF_EACH


def read_flow_run_states(flow_run_id):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run_states(flow_run_id)
