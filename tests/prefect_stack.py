"""Real processes for the flow tests: a Prefect server, the serving worker, and their helpers.

Nothing here is mocked: the server is `prefect server start` on a free loopback port with its
own SQLite database, the worker is `python -m deployments.serve` in its own session so a test
can SIGKILL the worker alone or the worker with its flow processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from tests.helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = "auto-pilot/local"


def start_prefect_server(
    home: Path,
    port: int,
    log_path: Path,
    database_url: str | None = None,
    timeout: float = 120,
) -> subprocess.Popen[bytes]:
    """Start `prefect server start` (SQLite in `home` unless `database_url` is given) and wait
    until it answers /api/health."""
    home.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
    }
    env.pop("PREFECT_API_URL", None)
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/health"
    wait_until(lambda: _healthy(url) or proc.poll() is not None, timeout=timeout, interval=0.25)
    if proc.poll() is not None:
        raise RuntimeError(f"prefect server exited: see {log_path}")
    return proc


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Worker:
    """The serving process (`python -m deployments.serve`), restartable and killable."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        poll_seconds: float = 1.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.poll_seconds = poll_seconds
        self.extra_args = list(extra_args)  # more `deployments.serve` options
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve", "--poll-seconds", str(self.poll_seconds),
             "--sweep-seconds", "3", *self.extra_args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, with_flow_processes: bool) -> None:
        """SIGKILL the worker alone, or its whole session (the worker and its flow processes)."""
        assert self.proc is not None
        if with_flow_processes:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def deployment_ready() -> bool:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(DEPLOYMENT)
        return True
    except Exception:
        return False


def launch(
    simulation_id: str, generation: int = 0, *, deployment: str = DEPLOYMENT, **options: Any
) -> UUID:
    """Create a flow run of the deployment without waiting for it."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(
        name=deployment,
        parameters={"simulation_id": simulation_id, "generation": generation, "options": options},
        timeout=0,
    )
    return flow_run.id  # type: ignore[union-attr]


def read_flow_run(flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def state_type(flow_run_id: UUID) -> str | None:
    run = read_flow_run(flow_run_id)
    return run.state.type.value if run.state else None


def wait_for_state(flow_run_id: UUID, wanted: Iterable[str], timeout: float) -> Any:
    """Wait until the run is in one of `wanted` (StateType values); fail at once on other ends."""
    wanted = set(wanted)
    # Crashed is not an end here: recovery restarts it.
    final = {"COMPLETED", "FAILED", "CANCELLED"}

    def settled() -> Any:
        run = read_flow_run(flow_run_id)
        current = run.state.type.value if run.state else None
        return run if current in wanted | final else None

    run = wait_until(settled, timeout=timeout, interval=0.2, message=f"flow run in {wanted}")
    ended = run.state.type.value
    assert ended in wanted, f"flow run ended {ended}: {run.state.message}"
    return run


def task_runs(flow_run_id: UUID) -> list[Any]:
    """The run's task runs, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )


def running_task(flow_run_id: UUID) -> str | None:
    """The name of the step now running in the run, if any."""
    for run in task_runs(flow_run_id):
        if run.state and run.state.type.value == "RUNNING":
            return run.name.split("-")[0]
    return None
