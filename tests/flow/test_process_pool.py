"""prefect.yaml works as documented: `prefect deploy` + a process worker + `deployment run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import stop_process
from tests.prefect_stack import REPO_ROOT, read_flow_run, wait_for_state
from tests.stack_fixtures import SESSION_DIR, Stack


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


def test_prefect_deploy_and_a_process_worker_run_the_auto_pilot(stack: Stack):
    env = {
        **os.environ,
        "AUTOPILOT_REPO_DIR": str(REPO_ROOT),
        "AUTOPILOT_BACKEND_URL": stack.simulator_url,
        "AUTOPILOT_POLL_INTERVAL": "0.25",
    }
    prefect_cli("work-pool", "create", "autopilot-process", "--type", "process", "--overwrite",
                env=env)  # fmt: skip
    prefect_cli("--no-prompt", "deploy", "--all", env=env)
    with Path(SESSION_DIR / "process-worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "autopilot-process"],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        sim = stack.create_simulation(rounds=5)
        out = prefect_cli(
            "deployment", "run", "auto-pilot/process", "--param", f"simulation_id={sim}", env=env
        )
        flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
        run = wait_for_state(flow_run_id, {"COMPLETED"}, timeout=120)
        assert read_flow_run(run.id).deployment_id is not None
        assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
    finally:
        stop_process(worker)
