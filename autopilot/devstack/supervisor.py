"""`autopilot up`: start what the auto-pilot needs locally, keep it alive, stop it cleanly.

Children, in start order (each waits for the previous one's health):
    prefect    `prefect server start` at PREFECT_API_URL's address (one of this machine's),
               on a project-local SQLite database or `database_url` (skipped when
               PREFECT_API_URL already answers)
    simulator  the bundled multimo simulator (skipped when a backend URL is configured)
    worker     `deployments.serve`: serves auto-pilot/local, recovers crashed runs (with
               `hosts` > 1, one worker per "host", each with its own identity and data dir,
               all serving the same deployment; the chaos harness kills whole hosts)
    api        the REST shim
A child that dies is restarted (with back-off); Ctrl-C or SIGTERM stops every child's process
group. Logs go to `<data_dir>/logs/<child>.log`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from autopilot.devstack import pieces
from autopilot.devstack.pieces import Piece, StartupFailed, answers
from autopilot.devstack.server_address import bind_address
from autopilot.prefect_env import prefect_auth_string
from autopilot.settings import BUNDLED_SIMULATOR_URL, Settings

logger = logging.getLogger(__name__)

DEFAULT_PREFECT_PORT = 4200
RESTART_BACKOFF = [1.0, 2.0, 5.0, 10.0, 30.0]


def prefect_credentials(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """With a shim token configured, the Prefect server `up` runs is protected too (its API
    has no authentication of its own, so anyone on the host could go around the shim): the
    server gets Prefect's basic-auth string and every child the matching client setting."""
    if settings.shim_token() is None:  # refuses a blank token before anything starts
        return {}
    auth = env.get("PREFECT_API_AUTH_STRING") or prefect_auth_string(settings)
    return {
        "PREFECT_SERVER_API_AUTH_STRING": env.get("PREFECT_SERVER_API_AUTH_STRING", auth),
        "PREFECT_API_AUTH_STRING": auth,
    }


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Child:
    """One supervised process: its piece of the stack and how to tell it is up."""

    piece: Piece
    healthy: Callable[[], bool]
    port: int | None = None
    address: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)
    # A child that was killed on purpose (a dead host) stays down until then (monotonic).
    down_until: float = 0.0

    @property
    def name(self) -> str:
        return self.piece.name


class Supervisor:
    """Starts, watches and stops the local auto-pilot stack."""

    def __init__(
        self,
        settings: Settings,
        *,
        prefect_port: int | None = None,
        own_simulator: bool = False,
        simulator_options: dict[str, float] | None = None,
        worker_env: dict[str, str] | None = None,
        with_api: bool = True,
        stable_after: float = 60.0,
        hosts: int = 1,
        worker_args: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.prefect_port = prefect_port
        self.own_simulator = own_simulator
        self.simulator_options = simulator_options or {}
        self.with_api = with_api
        self.hosts = hosts
        self.worker_args = worker_args
        self.database_url = database_url
        # A child that ran this long before dying restarts without back-off.
        self.stable_after = stable_after
        self.env = self._child_env(worker_env or {})
        self.children: list[Child] = []
        self._stopping = threading.Event()

    # -- environment ---------------------------------------------------------------

    @property
    def prefect_api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def _child_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        if self.prefect_port is not None:
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{self.prefect_port}/api"
        env.setdefault("PREFECT_API_URL", f"http://127.0.0.1:{DEFAULT_PREFECT_PORT}/api")
        # Children read their settings from the environment: hand them ours.
        env["AUTOPILOT_DATA_DIR"] = str(self.data_dir)
        env["AUTOPILOT_BACKEND_URL"] = self.settings.backend_url
        env["AUTOPILOT_API_HOST"] = self.settings.api_host
        env["AUTOPILOT_API_PORT"] = str(self.settings.api_port)
        env.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(self.settings.results_path))
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.setdefault("PREFECT_HOME", str(self.data_dir / "prefect"))
        env.update(prefect_credentials(self.settings, env))
        env.update(extra)
        return env

    # -- the plan ------------------------------------------------------------------

    def plan(self) -> list[Child]:
        """Which children this machine needs, in start order."""
        children: list[Child] = []
        api_url = self.prefect_api_url
        if answers(api_url.rstrip("/") + "/health"):
            if self.database_url is not None:
                raise StartupFailed(
                    f"a Prefect server already answers at PREFECT_API_URL {api_url} and keeps "
                    "its own database: stop it, or leave out --database-url"
                )
        else:
            children.append(self._prefect_server(api_url))
        backend = self.settings.backend_url.rstrip("/")
        bundled = backend == BUNDLED_SIMULATOR_URL or self.own_simulator
        if bundled and not answers(backend + "/api/sim/health"):
            port = urlparse(backend).port or 5001
            sim = pieces.simulator(port, self.data_dir / "simulator", self.simulator_options)
            children.append(Child(sim, sim.healthy, port=port))
        children.extend(Child(worker, self._deployment_registered) for worker in self.workers())
        if self.with_api:
            host, port = self.settings.api_host, self.settings.api_port
            api = pieces.shim(port, host)
            children.append(Child(api, api.healthy, port=port, address=host))
        return children

    def _prefect_server(self, api_url: str) -> Child:
        bind = bind_address(api_url)
        if bind is None:
            raise StartupFailed(
                f"PREFECT_API_URL {api_url} does not answer, and names no address of this "
                "machine where a server could be started"
            )
        home = Path(self.env["PREFECT_HOME"]).expanduser()
        db = self.data_dir / "prefect" / "prefect.db"
        # Prefect creates its home, not the database's folder (PREFECT_HOME may be
        # elsewhere): "unable to open database file" on a fresh data dir otherwise.
        db.parent.mkdir(parents=True, exist_ok=True)
        database_url = self.database_url or self.env.setdefault(
            "PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{db}"
        )
        port = urlparse(api_url).port or DEFAULT_PREFECT_PORT
        server = pieces.prefect_server(port, home, database_url, host=bind, public_url=api_url)
        return Child(server, server.healthy, port=port, address=bind)

    def workers(self) -> list[Piece]:
        """One worker, or one per host: `worker-host<i>` with its own identity and data dir
        (the result storage stays shared, as a network mount would be)."""
        worker = pieces.worker(*self.worker_args)
        if self.hosts <= 1:
            return [worker]
        return [
            Piece(
                f"worker-host{i}",
                worker.argv,
                env={
                    "AUTOPILOT_HOST_ID": f"host{i}",
                    "AUTOPILOT_DATA_DIR": str(self.host_data_dir(i)),
                },
            )
            for i in range(1, self.hosts + 1)
        ]

    def host_data_dir(self, host: int) -> Path:
        return self.data_dir / "hosts" / f"host{host}"

    def _deployment_registered(self) -> bool:
        url = pieces.deployment_url(self.prefect_api_url, self.settings.deployment_name)
        return answers(url, self.env.get("PREFECT_API_AUTH_STRING"))

    # -- lifecycle -----------------------------------------------------------------

    def _log(self, child: Child) -> Path:
        return self.log_dir / f"{child.name}.log"

    def _spawn(self, child: Child) -> None:
        child.proc = pieces.spawn(child.piece, self.env, self._log(child))
        child.started_at = time.monotonic()

    def _await_health(self, child: Child) -> None:
        assert child.proc is not None
        pieces.wait_up(
            child.piece,
            child.proc,
            self._log(child),
            healthy=child.healthy,
            cancelled=self._stopping.is_set,
        )

    def start(self, on_ready: Callable[[str], None] = lambda name: None) -> None:
        """Start every planned child in order, each healthy before the next."""
        self.children = self.plan()
        for child in self.children:
            if child.port is not None and port_in_use(child.address, child.port):
                raise StartupFailed(
                    f"port {child.port} for {child.name} is taken: is another `autopilot up` "
                    "running? Stop it, or point PREFECT_API_URL / AUTOPILOT_BACKEND_URL at it"
                )
        for child in self.children:
            self._spawn(child)
            self._await_health(child)
            on_ready(child.name)

    def supervise(self, poll: float = 1.0) -> None:
        """Restart children that die, until `stop()` is called."""
        while not self._stopping.wait(poll):
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    if time.monotonic() < child.down_until:
                        continue
                    if time.monotonic() - child.started_at >= self.stable_after:
                        child.restarts = 0
                    delay = RESTART_BACKOFF[min(child.restarts, len(RESTART_BACKOFF) - 1)]
                    logger.warning(
                        "%s exited with %s; restarting in %.0fs",
                        child.name,
                        child.proc.returncode,
                        delay,
                    )
                    if self._stopping.wait(delay):
                        return
                    child.restarts += 1
                    self._spawn(child)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child (SIGTERM to its group, then SIGKILL), newest first."""
        self._stopping.set()
        for child in reversed(self.children):
            pieces.stop_group(child.proc, timeout)
