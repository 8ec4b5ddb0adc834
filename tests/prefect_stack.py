"""Real processes for the flow tests: a Prefect server, the serving worker, and their helpers.

Nothing here is mocked: the server is `prefect server start` on a free loopback port with its
own SQLite database, the worker is `python -m deployments.serve` in its own session so a test
can SIGKILL the worker alone or the worker with its flow processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from autopilot.devstack import pieces
from tests.helpers import wait_until

REPO_ROOT = pieces.REPO_ROOT
DEPLOYMENT = "auto-pilot/local"


def start_prefect_server(
    home: Path,
    port: int,
    log_path: Path,
    database_url: str | None = None,
    timeout: float = 120,
    ui: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `prefect server start` (SQLite in `home` unless `database_url` is given) and wait
    until it answers /api/health."""
    server = pieces.prefect_server(port, home, database_url, ui=ui)
    proc = pieces.spawn(server, os.environ, log_path)
    pieces.wait_up(server, proc, log_path, timeout=timeout)
    return proc


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
        worker = pieces.worker(
            "--poll-seconds", str(self.poll_seconds), "--sweep-seconds", "3", *self.extra_args
        )
        self.proc = pieces.spawn(worker, self.env, self.log_path)

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
        pieces.stop_group(self.proc)


class NamedWorker(Worker):
    """`python -m deployments.serve --name <name>`: serves deployment `auto-pilot/<name>`, so
    a test module can have a worker (and settings) of its own beside the session's."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path, extra_args=["--name", name])
        self.name = name


def deployment_ready(deployment: str = DEPLOYMENT) -> bool:
    """Whether the Prefect server knows `deployment`."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(deployment)
        return True
    except Exception:
        return False


def set_mode(simulation_id: str, mode: str = "auto") -> None:
    """What `config` does: the simulation's mode in its Prefect variable (the rest kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    from autopilot import names
    from autopilot.api_models import Mode
    from autopilot.models import SimulationConfig
    from autopilot.run.claim import read_config

    name = names.variable_name(simulation_id)
    with get_client(sync_client=True) as client:
        config = read_config(client, simulation_id)
        if config is None:
            value = SimulationConfig(mode=Mode(mode)).model_dump(mode="json")
            client.create_variable(VariableCreate(name=name, value=value))
            return
        config.mode = Mode(mode)
        client.update_variable(VariableUpdate(name=name, value=config.model_dump(mode="json")))


def launch(
    simulation_id: str,
    generation: int = 0,
    *,
    deployment: str = DEPLOYMENT,
    mode: str = "auto",
    **options: Any,
) -> UUID:
    """Create a flow run of the deployment without waiting for it; the simulation's mode is
    set first (auto: unattended, as these tests and benchmarks want)."""
    from prefect.deployments import run_deployment

    set_mode(simulation_id, mode)

    flow_run = run_deployment(
        name=deployment,
        parameters={"simulation_id": simulation_id, "generation": generation, "options": options},
        timeout=0,
    )
    return flow_run.id  # type: ignore[union-attr]


def accepted_and_never_started(simulation_id: str, deployment: str) -> UUID:
    """A flow run of `deployment` created directly in Pending: what a runner leaves that
    accepted it and has not (or never will have) proposed Running. No runner picks it up."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    set_mode(simulation_id, "auto")
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        run = client.create_flow_run_from_deployment(
            found.id, parameters={"simulation_id": simulation_id}, state=Pending()
        )
    return run.id


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
