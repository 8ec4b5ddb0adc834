"""A real simulator server (subprocess) and a small client for the simulator tests."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    free_port,
    kill_leftover_runs,
    start_simulator,
    stop_process,
    wait_until,
)


class SimClient:
    """Thin wrapper over httpx for one simulator server."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def data(self, response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["success"] is True, payload
        return payload["data"]

    def create(self, **body: Any) -> str:
        body.setdefault("agents", 50)
        body.setdefault("total_simulation_hours", 12)
        return str(self.data(self.post("/api/simulation/create", body))["simulation_id"])

    def prepare(self, sim_id: str, timeout: float = 10.0) -> str:
        task_id = self.data(self.post("/api/simulation/prepare", {"simulation_id": sim_id}))[
            "task_id"
        ]

        def done() -> bool:
            status = self.data(
                self.post(
                    "/api/simulation/prepare/status",
                    {"simulation_id": sim_id, "task_id": task_id},
                )
            )
            assert status["status"] != "failed", status
            return bool(status["status"] == "completed")

        wait_until(done, timeout=timeout, message="preparation")
        return str(task_id)

    def create_prepared(self, **body: Any) -> str:
        sim_id = self.create(**body)
        self.prepare(sim_id)
        return sim_id

    def run_status(self, sim_id: str) -> dict[str, Any]:
        return dict(self.data(self.get(f"/api/simulation/{sim_id}/run-status")))

    def wait_run(
        self, sim_id: str, statuses: tuple[str, ...] = ("completed",), timeout: float = 15.0
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.run_status(sim_id)
            return status if status["runner_status"] in statuses else None

        return wait_until(reached, timeout=timeout, message=f"run status in {statuses}")

    def ledger_counts(self, sim_id: str) -> dict[str, int]:
        data = self.data(self.get("/api/sim/ledger", params={"simulation_id": sim_id}))
        return dict(data["counts"])

    def close(self) -> None:
        self.http.close()


def stored_actions(data_dir: Path, sim_id: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(data_dir / "simulator.db")) as conn:
        return conn.execute(
            "SELECT round, platform, agent_id, action_type, post_id, target_post_id,"
            " target_agent_id, content FROM actions WHERE simulation_id = ? ORDER BY id",
            (sim_id,),
        ).fetchall()


class ServerHandle:
    """A simulator process that a test may kill and restart on the same data dir."""

    def __init__(self, data_dir: Path, **opts: Any) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.opts = opts
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = SimClient(self.port, data_dir)

    def start(self) -> SimClient:
        self.proc = start_simulator(self.data_dir, self.port, **self.opts)
        return self.client

    def kill(self) -> None:
        assert self.proc is not None
        stop_process(self.proc, signal.SIGKILL)

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.client.close()
        kill_leftover_runs(self.data_dir)


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimClient]:
    handle = ServerHandle(tmp_path_factory.mktemp("simulator"))
    client = handle.start()
    yield client
    handle.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    handles: list[ServerHandle] = []

    def make(**opts: Any) -> ServerHandle:
        handle = ServerHandle(tmp_path / f"data{len(handles)}", **opts)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.close()
