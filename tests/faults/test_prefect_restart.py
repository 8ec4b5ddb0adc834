"""The Prefect server dies and comes back (same port, same database) while a run is MONITORING:
the run carries on and completes, and the simulation was started and reported once.

The session's Prefect server is shared by every other test, so this module runs its own server
and its own worker (deployment `auto-pilot/local` on that server). This test process's Prefect
settings are bound to the session server, so the run is created and read over the other
server's REST API with plain httpx.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autopilot.api_models import Mode
from autopilot.client import MultimoClient
from autopilot.models import SimulationConfig
from autopilot.names import simulation_tag, variable_name
from tests.conftest import SESSION_DIR
from tests.helpers import free_port, stop_process, wait_until
from tests.prefect_stack import Worker, start_prefect_server
from tests.stack_fixtures import WORKER_SETTINGS, start_shim

FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class OwnPrefect:
    """A `prefect server start` this module may kill and start again on its own database."""

    def __init__(self, home: Path, port: int, log_path: Path) -> None:
        self.home = home
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.api_url, timeout=httpx.Timeout(20, connect=5))

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        self.proc = start_prefect_server(self.home, self.port, self.log_path)

    def kill(self, sig: int) -> None:
        """Signal the server's whole process group and reap it (SIGKILL if it lingers)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        self.http.close()

    # -- the REST API, not the Prefect client (bound to the session server) --------------

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One REST call; SQLite answers 503 "database is locked" under load, as the Prefect
        client knows and retries: so do we, for a bounded time."""
        deadline = time.monotonic() + 30
        while True:
            response = self.http.request(method, url, **kwargs)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
            time.sleep(0.5)

    def deployment_id(self, name: str) -> str | None:
        response = self._call("GET", f"/deployments/name/{name}")
        return str(response.json()["id"]) if response.status_code == 200 else None

    def set_auto_mode(self, simulation_id: str) -> None:
        """What `config mode=auto` does (in manual mode a run waits after each step)."""
        name = variable_name(simulation_id)
        found = self._call("GET", f"/variables/name/{name}")
        if found.status_code == 404:
            value = SimulationConfig(mode=Mode.AUTO).model_dump(mode="json")
            created = self._call("POST", "/variables/", json={"name": name, "value": value})
            created.raise_for_status()
            return
        found.raise_for_status()
        config = SimulationConfig.model_validate(found.json()["value"])
        config.mode = Mode.AUTO
        value = config.model_dump(mode="json")
        self._call("PATCH", f"/variables/name/{name}", json={"value": value}).raise_for_status()

    def create_flow_run(self, deployment_id: str, parameters: dict[str, Any]) -> str:
        self.set_auto_mode(parameters["simulation_id"])
        response = self._call(
            "POST",
            f"/deployments/{deployment_id}/create_flow_run",
            # Tagged as the service tags its runs, so the shim finds it.
            json={"parameters": parameters, "tags": [simulation_tag(parameters["simulation_id"])]},
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        response = self._call("GET", f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return dict(response.json())

    def state_type(self, flow_run_id: str) -> str | None:
        state = self.flow_run(flow_run_id).get("state")
        return state["type"] if state else None

    def state_history(self, flow_run_id: str) -> list[str]:
        response = self._call("GET", "/flow_run_states/", params={"flow_run_id": flow_run_id})
        response.raise_for_status()
        ordered = sorted(response.json(), key=lambda s: s["timestamp"])
        return [s["type"] for s in ordered]

    def task_run_count(self, flow_run_id: str) -> int:
        response = self._call(
            "POST", "/task_runs/count", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
        )
        response.raise_for_status()
        return int(response.json())

    def running_task(self, flow_run_id: str) -> str | None:
        response = self.http.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
        )
        response.raise_for_status()
        for run in response.json():
            if run.get("state") and run["state"]["type"] == "RUNNING":
                return str(run["name"]).split("-")[0]
        return None


@pytest.fixture(scope="module")
def own_prefect(simulator: tuple[str, Path]) -> Iterator[tuple[OwnPrefect, Worker]]:
    base = SESSION_DIR / "restart"
    server = OwnPrefect(base / "prefect-server", free_port(), SESSION_DIR / "restart-prefect.log")
    env = {
        **os.environ,
        **WORKER_SETTINGS,
        "PREFECT_API_URL": server.api_url,
        "PREFECT_HOME": str(base / "prefect-home"),
        "AUTOPILOT_BACKEND_URL": simulator[0],
        "AUTOPILOT_DATA_DIR": str(base / "autopilot-data"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(base / "results"),
    }
    worker = Worker(env, SESSION_DIR / "restart-worker.log")
    try:
        server.start()
        worker.start()
        wait_until(
            lambda: server.deployment_id("auto-pilot/local"), timeout=90, interval=0.5,
            message="deployment auto-pilot/local on the module's Prefect server",
        )  # fmt: skip
        yield server, worker
    finally:
        worker.stop()
        server.stop()


def ledger(simulator_url: str, simulation_id: str) -> dict[str, int]:
    response = httpx.get(
        f"{simulator_url}/api/sim/ledger", params={"simulation_id": simulation_id}, timeout=10
    )
    return dict(response.json()["data"]["counts"])


def run_status(simulator_url: str, simulation_id: str) -> dict[str, Any]:
    response = httpx.get(f"{simulator_url}/api/simulation/{simulation_id}/run-status", timeout=10)
    return dict(response.json()["data"])


def launch_and_wait_for_monitoring(
    server: OwnPrefect, worker: Worker, simulator_url: str, rounds: int
) -> tuple[str, str]:
    """A simulation of `rounds` rounds of 0.25 s and a run of it, once it is MONITORING."""
    if not worker.alive():  # a test before may have killed it
        worker.start()
    with MultimoClient(simulator_url) as backend:
        sim = backend.create_simulation(
            agents=20, total_simulation_hours=rounds, minutes_per_round=60, round_seconds=0.25
        )
    deployment_id = wait_until(
        lambda: server.deployment_id("auto-pilot/local"), timeout=90, interval=0.5,
        message="deployment auto-pilot/local",
    )  # fmt: skip
    run_id = server.create_flow_run(deployment_id, {"simulation_id": sim, "generation": 0})

    def monitoring_past_round_three() -> bool:
        return (
            server.running_task(run_id) == "monitoring"
            and run_status(simulator_url, sim)["current_round"] >= 3
        )

    wait_until(monitoring_past_round_three, timeout=90, interval=0.2, message="monitoring")
    return sim, run_id


def test_prefect_server_killed_and_restarted_mid_monitoring_the_run_completes(
    own_prefect: tuple[OwnPrefect, Worker], simulator: tuple[str, Path]
):
    server, worker = own_prefect
    simulator_url = simulator[0]
    shim_proc, shim_url = start_shim(worker.env, SESSION_DIR / "restart-shim.log")
    try:
        run_through_a_prefect_restart(server, worker, simulator_url, shim_url)
    finally:
        stop_process(shim_proc)


def shim_status(shim_url: str, simulation_id: str) -> httpx.Response:
    return httpx.post(
        f"{shim_url}/api/simulation/auto-pilot/status",
        json={"simulation_id": simulation_id},
        timeout=60,
    )


def status_cache(shim_url: str) -> dict[str, Any]:
    health = httpx.get(f"{shim_url}/healthz", timeout=30).json()["data"]
    return dict(health["status_cache"])


def run_through_a_prefect_restart(
    server: OwnPrefect, worker: Worker, simulator_url: str, shim_url: str
) -> None:
    # 80 rounds of 0.25 s: still monitoring when the server is back (a restart takes ~10 s).
    sim, run_id = launch_and_wait_for_monitoring(server, worker, simulator_url, rounds=80)
    # The shim remembers the status (served from memory on the second call) ...
    wait_until(lambda: status_cache(shim_url)["healthy"], timeout=30, message="shim cache")
    assert shim_status(shim_url, sim).json()["data"]["status"] == "active"
    hits = status_cache(shim_url)["hits"]
    assert shim_status(shim_url, sim).status_code == 200
    assert status_cache(shim_url)["hits"] == hits + 1

    server.kill(signal.SIGKILL)
    round_at_kill = run_status(simulator_url, sim)["current_round"]
    # ... and drops it when Prefect goes: no remembered answer while Prefect is down.
    wait_until(
        lambda: shim_status(shim_url, sim).status_code == 503, timeout=30,
        message="status 503 while Prefect is down",
    )  # fmt: skip
    assert not status_cache(shim_url)["healthy"]
    server.start()

    def settled() -> str | None:
        current = server.state_type(run_id)
        return current if current in FINAL else None

    ended = wait_until(settled, timeout=180, interval=0.5, message="the run to end")
    history = server.state_history(run_id)
    assert ended == "COMPLETED", (
        f"run ended {ended}: {server.flow_run(run_id)['state']}; history {history}"
    )
    assert worker.alive(), "the worker exited while the Prefect server was down"
    status = run_status(simulator_url, sim)
    assert status["runner_status"] == "completed"
    assert status["current_round"] == 80 > round_at_kill
    assert ledger(simulator_url, sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
    assert "CRASHED" not in history
    # The shim reconnected to the event stream and answers the final state.
    wait_until(
        lambda: shim_status(shim_url, sim).json()["data"]["status"] == "completed"
        and status_cache(shim_url)["healthy"],
        timeout=30, message="the shim's status after the restart",
    )  # fmt: skip


# What the runner logs when its FlowRunCancellingObserver has given up on the Prefect API.
OBSERVER_GAVE_UP = "Cancellation polling task failed"


def test_stop_after_a_prefect_server_outage_cancels_the_run(
    own_prefect: tuple[OwnPrefect, Worker], simulator: tuple[str, Path]
):
    server, worker = own_prefect
    simulator_url = simulator[0]
    if worker.alive() and "websocket failed" in worker.log_path.read_text(errors="replace"):
        # A runner that lived through an outage before behaves differently in the next one
        # (its client retries with long back-offs): this test is about a runner's first one.
        worker.stop()
    sim, run_id = launch_and_wait_for_monitoring(server, worker, simulator_url, rounds=300)
    log_offset = worker.log_path.stat().st_size
    server.kill(signal.SIGTERM)  # a clean shutdown, as for an upgrade
    try:
        # Down until the runner's cancellation observer gives up (~6.5 s after the server
        # went away, in every fresh-worker run here; a restart itself took 5-14 s).
        wait_until(
            lambda: OBSERVER_GAVE_UP in worker.log_path.read_text(errors="replace")[log_offset:],
            timeout=60, interval=0.5, message="the runner's cancellation observer giving up",
        )  # fmt: skip
    finally:
        server.start()
    round_after = run_status(simulator_url, sim)["current_round"]
    wait_until(
        lambda: run_status(simulator_url, sim)["current_round"] >= round_after + 4
        and server.state_type(run_id) == "RUNNING",
        timeout=60, interval=0.2, message="the run going on after the restart",
    )  # fmt: skip

    try:
        # What the shim's stop does to the run (PrefectStore.cancel): Cancelling, forced.
        server.http.post(
            f"/flow_runs/{run_id}/set_state",
            json={"state": {"type": "CANCELLING"}, "force": True},
        ).raise_for_status()

        def settled() -> str | None:
            current = server.state_type(run_id)
            return current if current in FINAL else None

        # Without an outage this takes ~3 s.
        try:
            ended = wait_until(settled, timeout=20, interval=0.5, message="cancelled")
        except TimeoutError:
            ended = server.state_type(run_id)
        assert ended == "CANCELLED", (
            f"the run is still {ended} 20 s after the stop; it has "
            f"{server.task_run_count(run_id)} task runs; the simulation is "
            f"{run_status(simulator_url, sim)['runner_status']}"
        )
        wait_until(
            lambda: run_status(simulator_url, sim)["runner_status"] == "stopped", timeout=15,
            message="the simulation stopped by the cancellation hook",
        )  # fmt: skip
    finally:
        # The worker cannot cancel the run any more: end it with its flow processes.
        worker.kill(with_flow_processes=True)
        httpx.post(f"{simulator_url}/api/simulation/stop", json={"simulation_id": sim}, timeout=10)


def test_a_lost_prefect_database_cannot_resurrect_old_checkpoints(
    own_prefect: tuple[OwnPrefect, Worker], simulator: tuple[str, Path]
):
    """The database is deleted while the stack is stopped; the checkpoint files stay. The
    generation counter starts again at 0, but its random identity is new: the next run does
    every step again instead of "completing" from the old checkpoints."""
    server, worker = own_prefect
    simulator_url = simulator[0]
    if not worker.alive():
        worker.start()
    with MultimoClient(simulator_url) as backend:
        sim = backend.create_simulation(agents=20, total_simulation_hours=3, minutes_per_round=60)

    def run_to_completion() -> None:
        deployment_id = wait_until(
            lambda: server.deployment_id("auto-pilot/local"), timeout=90, interval=0.5,
            message="deployment auto-pilot/local",
        )  # fmt: skip
        run_id = server.create_flow_run(deployment_id, {"simulation_id": sim, "generation": 0})
        ended = wait_until(
            lambda: server.state_type(run_id) if server.state_type(run_id) in FINAL else None,
            timeout=120, interval=0.5, message="the run to end",
        )  # fmt: skip
        assert ended == "COMPLETED", server.flow_run(run_id)["state"]

    run_to_completion()
    results = Path(worker.env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"])
    checkpoints = len(list(results.iterdir()))
    worker.stop()
    server.kill(signal.SIGTERM)
    for database in server.home.glob("prefect.db*"):
        database.unlink()
    server.start()
    worker.start()

    run_to_completion()

    assert ledger(simulator_url, sim) == {"prepare": 1, "start": 2, "stop": 0, "report": 2}
    assert len(list(results.iterdir())) > checkpoints  # new checkpoints, the old ones kept
