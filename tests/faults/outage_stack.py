"""A second, killable backend and the worker that drives it, for the outage tests.

The session simulator cannot be stopped without breaking every other test, and the session
worker serves `auto-pilot/local`: a second worker on the same deployment would race it for runs.
So the outage tests get their own simulator (restartable on the same port and data dir) and
their own worker serving `auto-pilot/outage`, with a 1 s HTTP timeout so that a slow answer
becomes an outage within seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from tests.helpers import start_simulator, stop_process, wait_until
from tests.prefect_stack import NamedWorker, deployment_ready, set_mode
from tests.stack_fixtures import WORKER_SETTINGS, Stack

OUTAGE_DEPLOYMENT_NAME = "outage"
OUTAGE_DEPLOYMENT = f"auto-pilot/{OUTAGE_DEPLOYMENT_NAME}"
OUTAGE_WORKER_SETTINGS = {
    **WORKER_SETTINGS,
    "AUTOPILOT_HTTP_TIMEOUT": "1",
    "AUTOPILOT_CONNECT_TIMEOUT": "1",
}


class KillableBackend:
    """A simulator process this module owns: SIGKILL it, start it again where it was."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.port}.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (or restart on the same port and data dir); returns once healthy."""
        self.proc = start_simulator(
            self.data_dir, self.port, round_seconds=0.1, prepare_seconds=0.5,
            report_seconds=0.5, timeout=60,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the server; its run processes live on in their own sessions."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class OutageStack(Stack):
    """The Stack helpers (create_simulation, ledger, set_faults, run_status) on the killable
    backend, plus what the outage tests need on top."""

    def __init__(self, worker: NamedWorker, backend: KillableBackend, data_dir: Path) -> None:
        super().__init__(
            worker=worker,
            simulator_url=backend.url,
            simulator_log=backend.log_path,
            data_dir=data_dir,
        )
        self.killable = backend
        self.simulations: list[str] = []

    def create_simulation(self, rounds: int = 8, **fields: Any) -> str:
        sim = super().create_simulation(rounds, **fields)
        self.simulations.append(sim)
        return sim

    def launch(self, simulation_id: str, **options: Any) -> UUID:
        """A flow run of `auto-pilot/outage` (not the session's deployment), not awaited."""
        from prefect.deployments import run_deployment

        set_mode(simulation_id, "auto")
        flow_run = run_deployment(
            name=OUTAGE_DEPLOYMENT,
            parameters={"simulation_id": simulation_id, "generation": 0, "options": options},
            timeout=0,
        )
        return flow_run.id  # type: ignore[union-attr]

    def worker_noticed(self, simulation_id: str, symptom: str) -> bool:
        """Whether the worker's log shows a poll of this simulation failing with `symptom`."""
        text = self.worker.log_path.read_text(errors="replace")
        return any(
            "backend unavailable" in line and simulation_id in line and symptom in line
            for line in text.splitlines()
        )

    def stop_simulation(self, simulation_id: str) -> None:
        """Stop the simulation's run process on the backend (400 if it is not running)."""
        httpx.post(
            f"{self.simulator_url}/api/simulation/stop",
            json={"simulation_id": simulation_id},
            timeout=10,
        )

    def ensure_up(self) -> None:
        """A test before may have failed in the middle of an outage: end it."""
        if not self.killable.alive():
            self.killable.start()
        httpx.post(
            f"{self.simulator_url}/api/sim/faults", json={"simulation_id": "*", "clear": True}
        ).raise_for_status()
        if not self.worker.alive():
            self.worker.start()
            wait_until(
                lambda: deployment_ready(OUTAGE_DEPLOYMENT), timeout=90, interval=0.5,
                message=OUTAGE_DEPLOYMENT,
            )  # fmt: skip

    def shutdown(self) -> None:
        """Stop the worker, every simulation's run process, then the simulator."""
        self.worker.stop()
        if not self.killable.alive():
            self.killable.start()  # run processes outlive a killed server: stop them too
        for sim in self.simulations:
            try:
                self.set_faults(sim, clear=True)  # a 503 or slow switch would block the stop
                self.stop_simulation(sim)
            except (httpx.HTTPError, AssertionError):
                pass
        self.killable.stop()
