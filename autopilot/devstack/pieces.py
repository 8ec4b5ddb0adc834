"""The processes of a local stack, each described once: its command line, its environment and
how to tell that it is up. `autopilot up` (the supervisor), the demo, the chaos harness, the
tests and the benchmarks all start their processes from these descriptions with `spawn`,
wait for them with `wait_up` and stop them with `stop_group`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from autopilot.errors import AutopilotError

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = "from autopilot.cli import main; main()"


class StartupFailed(AutopilotError):
    """A process of the stack did not come up, or its port is taken."""

    error_code = "STARTUP_FAILED"


@dataclass(frozen=True)
class Piece:
    """How to start one process of the stack."""

    name: str
    argv: list[str]
    # Answers 200 once the process is up (None: the caller knows how to tell).
    health_url: str | None = None
    # Set on top of the caller's environment; `unset` is removed from it.
    env: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    cwd: Path = REPO_ROOT
    startup_timeout: float = 90.0

    def healthy(self, auth: str | None = None) -> bool:
        return self.health_url is not None and answers(self.health_url, auth)


def answers(url: str, auth: str | None = None) -> bool:
    """Whether `url` answers 200 (`auth`: a Prefect basic-auth string `user:password`)."""
    credentials = None
    if auth and ":" in auth:
        user, password = auth.split(":", 1)
        credentials = (user, password)
    try:
        return httpx.get(url, timeout=2, auth=credentials).status_code == 200
    except httpx.HTTPError:
        return False


# -- the pieces ----------------------------------------------------------------------------


def prefect_server(
    port: int,
    home: Path,
    database_url: str | None = None,
    *,
    ui: bool = True,
    host: str = "127.0.0.1",
    public_url: str | None = None,
) -> Piece:
    """`prefect server start` on `host`:`port`, on SQLite in `home` unless `database_url`.
    `public_url`: the API's address as browsers reach it (default: `host`:`port`)."""
    database_url = database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    return Piece(
        "prefect",
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            host,
            "--port",
            str(port),
        ],  # fmt: skip
        health_url=f"http://{host}:{port}/api/health",
        env={
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
            # The UI calls the API at this address. Prefect's default is PREFECT_API_URL
            # (unset below) or its configured port, not `--port`: a UI on any port but
            # 4200 showed "Can't connect to Server API at http://127.0.0.1:4200/api".
            "PREFECT_UI_API_URL": public_url or f"http://{host}:{port}/api",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        },
        # The server serves the API; a client setting pointing elsewhere only confuses it.
        unset=("PREFECT_API_URL",),
        cwd=home,
        # PostgreSQL migrations on a loaded 2-core box take minutes.
        startup_timeout=180.0,
    )


def simulator(
    port: int,
    data_dir: Path,
    options: Mapping[str, float | str] | None = None,
    *,
    host: str = "127.0.0.1",
) -> Piece:
    """The bundled simulator (`python -m simulator`); `options` are its command-line options
    ({"round_seconds": 0.1} → `--round-seconds=0.1`)."""
    argv = [sys.executable, "-m", "simulator", "--host", host, "--port", str(port),
            "--data-dir", str(data_dir)]  # fmt: skip
    # "=" form: a value like "-05:00" would otherwise be taken for an option.
    argv += [f"--{name.replace('_', '-')}={value}" for name, value in (options or {}).items()]
    return Piece("simulator", argv, health_url=f"http://{host}:{port}/api/sim/health")


def worker(*args: str) -> Piece:
    """The serving worker (`python -m deployments.serve`, `autopilot worker`); it is up once
    its deployment is registered, which only Prefect can say (`deployment_url`)."""
    return Piece("worker", [sys.executable, "-m", "deployments.serve", *args])


def deployment_url(prefect_api_url: str, deployment: str) -> str:
    """Where Prefect answers 200 once `deployment` ("auto-pilot/local") is registered."""
    return f"{prefect_api_url.rstrip('/')}/deployments/name/{deployment}"


def shim(port: int, host: str = "127.0.0.1") -> Piece:
    """The REST shim (`autopilot api`) on `host`:`port`."""
    return Piece(
        "api",
        [sys.executable, "-c", CLI, "api"],
        health_url=f"http://{host}:{port}/healthz",
        env={"AUTOPILOT_API_HOST": host, "AUTOPILOT_API_PORT": str(port)},
        startup_timeout=60.0,
    )


# -- running them --------------------------------------------------------------------------


def spawn(
    piece: Piece, env: Mapping[str, str], log_path: Path, *, own_session: bool = True
) -> subprocess.Popen[bytes]:
    """Start `piece` with `env` (plus its own settings), its output appended to `log_path`.
    In its own session by default, so `stop_group` (or a test's SIGKILL) takes its children
    with it."""
    child_env = {**env, **piece.env}
    for name in piece.unset:
        child_env.pop(name, None)
    # The project's packages resolve from any working directory.
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")])
    )
    piece.cwd.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            piece.argv,
            env=child_env,
            cwd=piece.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )


def wait_up(
    piece: Piece,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    *,
    healthy: Callable[[], bool] | None = None,
    timeout: float | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """Return once `healthy` (default: the piece's health URL) holds; raise `StartupFailed`
    if the process exits first, `timeout` passes or `cancelled()` says to give up."""
    check = healthy or piece.healthy
    limit = piece.startup_timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    while not check():
        if proc.poll() is not None:
            raise StartupFailed(f"{piece.name} exited with {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline or cancelled():
            raise StartupFailed(f"{piece.name} not up after {limit:.0f}s; see {log_path}")
        time.sleep(0.2)


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group of a process started in its own session, SIGKILL it if it
    lingers, and reap the process."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        proc.wait(timeout=10)


def processes_of_host(host_id: str) -> list[int]:
    """Every living process whose environment names `host_id` (`AUTOPILOT_HOST_ID`): a
    "host" of a many-hosts stack on this machine, its worker and its flow processes, also
    those that outlived their worker."""
    from autopilot.worker.executors import process_environments

    if not host_id:
        return []  # an empty identity would name every process started without one
    wanted = host_id.encode()
    return [
        pid
        for pid, environ in process_environments()
        if environ.get(b"AUTOPILOT_HOST_ID") == wanted
    ]
