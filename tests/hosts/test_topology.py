"""The README's many-hosts topology, run as written: `autopilot up --database-url` on the
server host (Prefect on PostgreSQL, listening at PREFECT_API_URL's address, plus that host's
worker and the shim), `autopilot worker --name local` on another host, shared results.

127.0.0.2 stands for the server host's name: the server must listen there, where the other
host reaches it, and not only on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from autopilot.devstack.pieces import processes_of_host
from autopilot.devstack.postgres import Postgres, start_postgres
from autopilot.devstack.supervisor import port_in_use
from autopilot.liveness import LeaseMark
from autopilot.names import LEASE_LABEL
from tests.conftest import SESSION_DIR
from tests.helpers import AUTOPILOT, free_port, start_simulator, stop_process, wait_until

PREFIX = "/api/simulation/auto-pilot"
SERVER_ADDRESS = "127.0.0.2"
ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = start_postgres(free_port())
    try:
        yield pg
    finally:
        pg.stop()


def host_env(root: Path, host: str, api_url: str, backend_url: str) -> dict[str, str]:
    """The `export` line of the README for one host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOPILOT_"))}
    env.update(
        PREFECT_API_URL=api_url,
        AUTOPILOT_BACKEND_URL=backend_url,
        AUTOPILOT_HOST_ID=host,
        AUTOPILOT_RESULT_DIR=str(root / "shared-results"),
        AUTOPILOT_DATA_DIR=str(root / host),
        AUTOPILOT_API_PORT=str(free_port()),
    )
    return env


def worker_group(host: str) -> int:
    """The process group of the host's serving worker (`python -m deployments.serve`)."""
    for pid in processes_of_host(host):
        if b"deployments.serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return os.getpgid(pid)
    raise AssertionError(f"{host} runs no worker")


def lease_host(api_url: str, flow_run_id: str) -> str | None:
    run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()
    mark = LeaseMark.parse(run.get("labels", {}).get(LEASE_LABEL))
    return mark.host if mark else None


@pytest.mark.timeout(900)  # PostgreSQL migrations alone take minutes on a loaded machine
def test_server_host_with_up_on_postgres_and_a_second_worker_host(postgres: Postgres):
    root = SESSION_DIR / "topology"
    sim_port, prefect_port = free_port(), free_port()
    simulator = start_simulator(root / "simulator", sim_port, round_seconds=0.1)
    backend = httpx.Client(base_url=f"http://127.0.0.1:{sim_port}", timeout=10)
    api_url = f"http://{SERVER_ADDRESS}:{prefect_port}/api"
    env_a = host_env(root, "host-a", api_url, str(backend.base_url))
    env_b = host_env(root, "host-b", api_url, str(backend.base_url))
    shim = httpx.Client(base_url=f"http://127.0.0.1:{env_a['AUTOPILOT_API_PORT']}", timeout=30)
    up = subprocess.Popen(
        [*AUTOPILOT, "up", "--database-url", postgres.url], env=env_a,
        stdout=(root / "up.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    worker_b: subprocess.Popen[bytes] | None = None

    def start(simulation_id: str) -> str:
        shim.post(f"{PREFIX}/config", json={"simulation_id": simulation_id, "mode": "auto"})
        answer = shim.post(f"{PREFIX}/start", json={"simulation_id": simulation_id})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["data"]["flow_run_id"])

    def completed(simulation_id: str) -> bool:
        status = shim.post(f"{PREFIX}/status", json={"simulation_id": simulation_id}).json()
        assert status["data"]["status"] != "failed", status
        return bool(status["data"]["status"] == "completed")

    def new_simulation() -> str:
        created = backend.post("/api/simulation/create", json={"total_simulation_hours": 4})
        return str(created.json()["data"]["simulation_id"])

    def ledger(simulation_id: str) -> dict[str, Any]:
        answer = backend.get("/api/sim/ledger", params={"simulation_id": simulation_id})
        return dict(answer.json()["data"]["counts"])

    try:
        # PostgreSQL migrations on a loaded 2-core machine take minutes.
        wait_until(
            lambda: up.poll() is not None or shim.get("/healthz").status_code == 200,
            timeout=600, interval=1, message="autopilot up on PostgreSQL",
        )  # fmt: skip
        assert up.poll() is None, (root / "up.log").read_text()[-3000:]
        # The server listens where the other hosts reach it.
        assert httpx.get(f"{api_url}/health").status_code == 200
        assert not port_in_use("127.0.0.1", prefect_port)

        first = new_simulation()
        run_a = start(first)
        wait_until(lambda: completed(first), timeout=180, interval=0.5, message="first run")
        assert lease_host(api_url, run_a) == "host-a"

        worker_b = subprocess.Popen(
            [*AUTOPILOT, "worker", "--name", "local"], env=env_b,
            stdout=(root / "host-b.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        wait_until(
            lambda: b"host-b: serving auto-pilot/local" in (root / "host-b.log").read_bytes(),
            timeout=120, interval=0.5, message="host B's worker serving",
        )  # fmt: skip
        # Host A's worker frozen (not its Prefect server or shim): only host B can pick the
        # next run up.
        a_worker = worker_group("host-a")
        os.killpg(a_worker, signal.SIGSTOP)
        try:
            second = new_simulation()
            run_b = start(second)
            wait_until(lambda: completed(second), timeout=180, interval=0.5, message="second run")
        finally:
            os.killpg(a_worker, signal.SIGCONT)
        assert lease_host(api_url, run_b) == "host-b"

        assert ledger(first) == ONE_OF_EACH
        assert ledger(second) == ONE_OF_EACH
        # Prefect's runs are in the PostgreSQL database `up` was given.
        ids = postgres.query("SELECT id FROM flow_run ORDER BY created").split()
        assert {run_a, run_b} <= {str(UUID(i)) for i in ids}
    finally:
        if worker_b is not None:
            os.killpg(worker_b.pid, signal.SIGTERM)
            worker_b.wait(timeout=60)
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)
        shim.close()
        backend.close()
        stop_process(simulator)
    assert up.returncode == 0, (root / "up.log").read_text()[-3000:]
    assert not processes_of_host("host-a") and not processes_of_host("host-b")
