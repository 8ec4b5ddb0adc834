"""The real stack (Prefect server, bundled simulator, serving worker) as pytest fixtures.

Registered for every suite through `pytest_plugins` in tests/conftest.py; each piece starts
only when a test asks for it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from autopilot.client import MultimoClient
from autopilot.devstack import pieces
from tests.conftest import PREFECT_PORT, SESSION_DIR
from tests.helpers import free_port, kill_leftover_runs, start_simulator, stop_process, wait_until
from tests.prefect_stack import NamedWorker, Worker, deployment_ready, start_prefect_server

# Timings are injected so a test takes seconds: the defaults are for 72-hour runs.
WORKER_SETTINGS = {
    "AUTOPILOT_CONTROL_CHECK_INTERVAL": "0.25",
    "AUTOPILOT_POLL_INTERVAL": "0.25",
    "AUTOPILOT_CONNECT_TIMEOUT": "2",
    "AUTOPILOT_HTTP_TIMEOUT": "10",
}


@dataclass
class Stack:
    """Handles on the running pieces and helpers to drive the simulator."""

    worker: Worker
    simulator_url: str
    simulator_log: Path
    data_dir: Path

    def backend(self) -> MultimoClient:
        return MultimoClient(self.simulator_url)

    def create_simulation(self, rounds: int = 8, **fields: Any) -> str:
        fields.setdefault("agents", 20)
        fields.setdefault("total_simulation_hours", rounds)
        fields.setdefault("minutes_per_round", 60)
        with self.backend() as client:
            return client.create_simulation(**fields)

    def ledger(self, simulation_id: str) -> dict[str, int]:
        response = httpx.get(
            f"{self.simulator_url}/api/sim/ledger", params={"simulation_id": simulation_id}
        )
        return dict(response.json()["data"]["counts"])

    def set_faults(self, simulation_id: str, **faults: Any) -> None:
        response = httpx.post(
            f"{self.simulator_url}/api/sim/faults", json={"simulation_id": simulation_id, **faults}
        )
        assert response.status_code == 200, response.text

    def run_status(self, simulation_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.simulator_url}/api/simulation/{simulation_id}/run-status")
        return dict(response.json()["data"])


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    # With its UI: the browser test looks at what it shows of the session's runs.
    proc = start_prefect_server(
        SESSION_DIR / "prefect-server", PREFECT_PORT, SESSION_DIR / "prefect-server.log", ui=True
    )
    yield
    pieces.stop_group(proc, timeout=20)


@pytest.fixture(scope="session")
def simulator() -> Iterator[tuple[str, Path]]:
    data_dir = SESSION_DIR / "simulator"
    port = free_port()
    proc = start_simulator(
        data_dir, port, round_seconds=0.1, prepare_seconds=1.5, report_seconds=1.5
    )
    yield f"http://127.0.0.1:{port}", data_dir / f"server-{port}.log"
    stop_process(proc)
    kill_leftover_runs(data_dir)


@pytest.fixture(scope="session")
def session_worker(prefect_server: None, simulator: tuple[str, Path]) -> Iterator[Worker]:
    env = {**os.environ, **WORKER_SETTINGS, "AUTOPILOT_BACKEND_URL": simulator[0]}
    worker = Worker(env, SESSION_DIR / "worker.log")
    worker.start()
    wait_until(deployment_ready, timeout=90, interval=0.5, message="deployment auto-pilot/local")
    yield worker
    worker.stop()


@pytest.fixture
def stack(session_worker: Worker, simulator: tuple[str, Path]) -> Stack:
    """The stack with a live worker (a test before may have killed it)."""
    if not session_worker.alive():
        session_worker.start()
        wait_until(deployment_ready, timeout=60, interval=0.5, message="deployment")
    return Stack(
        worker=session_worker,
        simulator_url=simulator[0],
        simulator_log=simulator[1],
        data_dir=Path(os.environ["AUTOPILOT_DATA_DIR"]),
    )


def start_shim(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the REST shim (`autopilot api`) on a free loopback port; wait for /healthz."""
    port = free_port()
    api = pieces.shim(port)
    proc = pieces.spawn(api, env, log_path)
    pieces.wait_up(api, proc, log_path)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def shim_url(session_worker: Worker, simulator: tuple[str, Path]) -> Iterator[str]:
    """The REST shim over the live stack (no token)."""
    env = {**os.environ, "AUTOPILOT_BACKEND_URL": simulator[0]}
    proc, url = start_shim(env, SESSION_DIR / "shim.log")
    yield url
    stop_process(proc)


@contextmanager
def named_stack(name: str, simulator_url: str, simulator_log: Path, **env: str) -> Iterator[Stack]:
    """A worker of the test module's own, serving `auto-pilot/<name>` with the test settings
    and `env` on top, against the given simulator; stopped on the way out."""
    worker_env = {**os.environ, **WORKER_SETTINGS, "AUTOPILOT_BACKEND_URL": simulator_url, **env}
    worker = NamedWorker(name, worker_env, SESSION_DIR / f"{name}-worker.log")
    worker.start()
    try:
        wait_until(
            lambda: deployment_ready(f"auto-pilot/{name}"), timeout=90, interval=0.5,
            message=f"deployment auto-pilot/{name}",
        )  # fmt: skip
        yield Stack(
            worker=worker,
            simulator_url=simulator_url,
            simulator_log=simulator_log,
            data_dir=Path(os.environ["AUTOPILOT_DATA_DIR"]),
        )
    finally:
        worker.stop()
