"""Several "hosts" on one machine, sharing one Prefect server on a throwaway PostgreSQL cluster.

A host is a worker (`python -m deployments.serve --name hosts`) with its own process tree
(session), data dir and identity (`AUTOPILOT_HOST_ID`); every host shares the Prefect server,
the simulator (the backend) and one result storage folder (standing for a shared mount).
Killing a host is SIGKILL of every process of it, with no restart; stalling it is SIGSTOP.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from autopilot.devstack.pieces import processes_of_host
from autopilot.liveness import LeaseMark
from autopilot.names import LEASE_LABEL
from tests.helpers import wait_until
from tests.prefect_stack import NamedWorker, deployment_ready, read_flow_run

DEPLOYMENT_NAME = "hosts"
DEPLOYMENT = f"auto-pilot/{DEPLOYMENT_NAME}"
# Seconds, injected so a takeover takes seconds: the defaults (5 s renewals, a 20 s window,
# 5 s sweeps) are for real hosts.
TIMINGS = {"AUTOPILOT_LEASE_RENEW_EVERY": "1", "AUTOPILOT_LEASE_WINDOW": "6"}
SWEEP_SECONDS = "1"


def lease_of(flow_run_id: UUID) -> LeaseMark | None:
    """The lease mark the run's executing process last wrote."""
    return LeaseMark.parse(read_flow_run(flow_run_id).labels.get(LEASE_LABEL))


@dataclass
class Host:
    """One host: a worker and the flow processes it starts."""

    name: str
    env: dict[str, str]
    log_path: Path
    sweep_seconds: str = SWEEP_SECONDS
    worker: NamedWorker = field(init=False)
    _log_offset: int = 0

    def __post_init__(self) -> None:
        self.worker = NamedWorker(DEPLOYMENT_NAME, self.env, self.log_path)
        self.worker.extra_args += ["--sweep-seconds", self.sweep_seconds]

    @property
    def data_dir(self) -> Path:
        return Path(self.env["AUTOPILOT_DATA_DIR"])

    def start(self) -> Host:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.worker.start()
        wait_until(
            lambda: self.registered() and deployment_ready(DEPLOYMENT), timeout=90,
            interval=0.3, message=f"host {self.name}'s worker",
        )  # fmt: skip
        return self

    def registered(self) -> bool:
        """Whether this start of the worker serves the deployment (its log says so)."""
        if not self.log_path.exists():
            return False
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return f"{self.name}: serving {DEPLOYMENT}".encode() in log.read()

    def flow_processes(self) -> list[int]:
        worker_pid = self.worker.proc.pid if self.worker.proc else None
        return [pid for pid in processes_of_host(self.name) if pid != worker_pid]

    def signal_all(self, sig: int) -> None:
        """Send `sig` to every process of this host."""
        if self.worker.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.proc.pid, sig)
        for pid in processes_of_host(self.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """The host dies: SIGKILL every process of it, no restart."""
        self.signal_all(signal.SIGKILL)
        if self.worker.proc is not None:
            self.worker.proc.wait(timeout=10)
        wait_until(lambda: not processes_of_host(self.name), timeout=10, message="host dead")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def failed_sweeps(self) -> int:
        return self.log().count("recovery sweep failed")


@dataclass
class Cluster:
    """The shared ground of the hosts: Prefect's URL, the simulator, the shared storage."""

    prefect_api_url: str
    simulator_url: str
    simulator_log: Path
    root: Path
    base_env: dict[str, str]
    # Kills the Prefect server and returns a function that starts it again (same port, same
    # database).
    stop_prefect: Callable[[], Callable[[], None]]
    hosts: list[Host] = field(default_factory=list)
    # The hosts' lease timings and sweep interval (the benchmarks use the product defaults).
    timings: dict[str, str] = field(default_factory=lambda: dict(TIMINGS))
    sweep_seconds: str = SWEEP_SECONDS

    def host(self, name: str) -> Host:
        data_dir = self.root / name
        env = {
            **self.base_env,
            **self.timings,
            "PREFECT_API_URL": self.prefect_api_url,
            "AUTOPILOT_BACKEND_URL": self.simulator_url,
            "AUTOPILOT_HOST_ID": name,
            "AUTOPILOT_DATA_DIR": str(data_dir),
            # Every host's checkpoints in one place, as a shared mount would be.
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.root / "shared-results"),
        }
        host = Host(name, env, self.root / f"{name}.log", self.sweep_seconds)
        self.hosts.append(host)
        return host

    def create_simulation(self, rounds: int) -> str:
        response = httpx.post(
            f"{self.simulator_url}/api/simulation/create",
            json={"agents": 20, "total_simulation_hours": rounds, "minutes_per_round": 60},
        )
        return str(response.json()["data"]["simulation_id"])

    def ledger(self, simulation_id: str) -> dict[str, int]:
        response = httpx.get(
            f"{self.simulator_url}/api/sim/ledger", params={"simulation_id": simulation_id}
        )
        return dict(response.json()["data"]["counts"])

    def backend_log_size(self) -> int:
        return self.simulator_log.stat().st_size

    def backend_calls(self, request: str, since: int) -> int:
        """How often the simulator answered `request` ("POST /api/simulation/prepare")
        after byte `since` of its access log."""
        with self.simulator_log.open("rb") as log:
            log.seek(since)
            return log.read().count(f'"{request} HTTP'.encode())

    def stop_all(self) -> None:
        for host in self.hosts:
            host.signal_all(signal.SIGCONT)
            host.signal_all(signal.SIGKILL)
        self.hosts.clear()


def state_history(flow_run_id: UUID) -> list[Any]:
    """The run's states, oldest first."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return sorted(states, key=lambda state: state.timestamp)


@contextlib.contextmanager
def hosts_of(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster for one test: every host it starts is gone afterwards."""
    try:
        yield cluster
    finally:
        cluster.stop_all()


@contextlib.contextmanager
def cluster_on_postgres(
    root: Path,
    base_env: dict[str, str],
    simulator_options: dict[str, float],
    timings: dict[str, str] | None = None,
    sweep_seconds: str = SWEEP_SECONDS,
) -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster, a Prefect server on it (restartable through
    `Cluster.stop_prefect`), the simulator, and this process's Prefect settings pointing at
    the server; everything stops on the way out."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from autopilot.devstack.postgres import start_postgres
    from tests.helpers import free_port, kill_leftover_runs, start_simulator, stop_process
    from tests.prefect_stack import start_prefect_server

    pg = start_postgres(free_port())
    port = free_port()
    servers = []

    def start_server() -> None:
        servers.append(
            start_prefect_server(
                root / "prefect", port, root / "prefect.log", database_url=pg.url, timeout=600
            )
        )

    def stop_prefect() -> Callable[[], None]:
        servers[-1].kill()
        servers[-1].wait()
        return start_server

    simulator = None
    try:
        start_server()
        sim_port = free_port()
        simulator = start_simulator(root / "simulator", sim_port, **simulator_options)  # type: ignore[arg-type]
        api_url = f"http://127.0.0.1:{port}/api"
        cluster = Cluster(
            api_url,
            f"http://127.0.0.1:{sim_port}",
            root / "simulator" / f"server-{sim_port}.log",
            root,
            base_env,
            stop_prefect,
            timings=dict(TIMINGS) if timings is None else timings,
            sweep_seconds=sweep_seconds,
        )
        with temporary_settings({PREFECT_API_URL: api_url}):
            try:
                yield cluster
            finally:
                cluster.stop_all()
    finally:
        if simulator is not None:
            stop_process(simulator)
            kill_leftover_runs(root / "simulator")
        if servers:
            stop_process(servers[-1])
        pg.stop()
