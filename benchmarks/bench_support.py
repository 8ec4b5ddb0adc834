"""Shared by the stack benchmarks: each run's environment (temp dir, ports, PREFECT_* and
AUTOPILOT_* variables), the whole stack (Prefect server on SQLite or a throwaway PostgreSQL
cluster, bundled simulator, serving worker) with its clean-up, process memory from /proc,
percentiles, and a leftover-process sweep.

Imports nothing from Prefect: the scripts set PREFECT_* variables (`bench_environment`) before
Prefect is imported.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from autopilot.devstack import pieces  # noqa: E402
from autopilot.devstack.postgres import start_postgres  # noqa: E402
from tests.helpers import free_port, start_simulator, stop_process  # noqa: E402
from tests.prefect_stack import start_prefect_server  # noqa: E402


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (the median of 5 is the 3rd)."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def proc_status_kb(pid: int, field: str = "VmRSS") -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...), None if the pid is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kb(pid: int) -> int | None:
    """Proportional set size (shared pages divided among their users), from smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pids_mentioning(marker: str) -> list[int]:
    """Pids (not ours) whose command line or environment contains `marker` (a unique temp
    path of this run): the leftovers of processes we started, e.g. simulator run processes
    that live in their own session, or flow processes of a killed worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in text:
            found.append(int(entry.name))
    return found


def kill_leftovers(marker: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, each leftover pid by pid; returns the pids found."""
    pids = pids_mentioning(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def wait_for_deployment(worker: Any, log_path: Path, timeout: float = 180) -> None:
    """Wait until the worker registered the deployment; a worker that died on start-up
    (seen once here: "All connection attempts failed" right after the server was healthy)
    is restarted at most twice, with a note."""
    from tests.prefect_stack import deployment_ready

    restarts = 0

    def ready() -> bool:
        nonlocal restarts
        if not worker.alive():
            if restarts >= 2:
                raise RuntimeError(f"the worker keeps dying: see {log_path}")
            restarts += 1
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            print(f"note: the worker exited on start-up ({tail}); restarting it")
            worker.start()
            return False
        return deployment_ready()

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no deployment after {timeout}s: see {log_path}")
        time.sleep(0.5)


def code_version() -> str:
    """The commit measured, and whether the project's code differed from it (others may be
    editing the tree while a benchmark runs: every process loads the code at its start)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "autopilot", "flows", "tasks", "deployments",
             "simulator"],
            cwd=REPO, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


@dataclass(frozen=True)
class BenchEnv:
    """One run's temporary directory and loopback ports."""

    work: Path
    prefect_port: int
    sim_port: int

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def sim_log(self) -> Path:
        """The simulator's access log (run-status polls: `tests.helpers.run_status_poll_times`)."""
        return self.work / "sim" / f"server-{self.sim_port}.log"

    @property
    def worker_log(self) -> Path:
        return self.work / "worker.log"

    @property
    def prefect_db(self) -> Path:
        """The Prefect server's SQLite file (with `db="sqlite"`)."""
        return self.work / "prefect" / "prefect.db"


def bench_environment(prefix: str, **autopilot: str) -> BenchEnv:
    """A fresh temp dir and free ports for this run, and the environment every process it
    starts inherits: PREFECT_* pointing at this run's server and paths, AUTOPILOT_DATA_DIR and
    AUTOPILOT_BACKEND_URL (the simulator), the given AUTOPILOT_* `autopilot` variables (e.g.
    AUTOPILOT_POLL_INTERVAL="1"), and no other AUTOPILOT_* variable (a developer's own
    configuration must not leak into the figures).

    Call it at module level, before Prefect or the project's code is imported (they read their
    settings on import), and after any import of tests.conftest (tests.stack_fixtures imports
    it), which rewrites these variables for a test session."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = BenchEnv(work, free_port(), free_port())
    atexit.register(_drop_if_unused, work)  # e.g. after --help: no stack, nothing to keep
    os.environ.update(
        {
            "PREFECT_API_URL": f"http://127.0.0.1:{env.prefect_port}/api",
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(work / "results"),
            "AUTOPILOT_DATA_DIR": str(env.data_dir),
            "AUTOPILOT_BACKEND_URL": env.sim_url,
            **autopilot,
        }
    )
    keep = {"AUTOPILOT_DATA_DIR", "AUTOPILOT_BACKEND_URL", *autopilot}
    for name in list(os.environ):
        if name.startswith("AUTOPILOT_") and name not in keep:
            del os.environ[name]
    return env


_STACK_STARTED: set[Path] = set()


def _drop_if_unused(work: Path) -> None:
    if work not in _STACK_STARTED:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Stack:
    """The processes `running_stack` started. `cleanup` runs at the end, last in first out:
    what a script registers there (a client to close, a shim to stop) runs before the stack's
    own processes stop."""

    env: BenchEnv
    prefect: subprocess.Popen[bytes]
    simulator: subprocess.Popen[bytes]
    worker: Any  # tests.prefect_stack.Worker
    cleanup: contextlib.ExitStack
    server_seconds: float  # `prefect server start` until healthy


@contextlib.contextmanager
def running_stack(
    env: BenchEnv,
    *,
    round_seconds: float,
    prepare_seconds: float,
    report_seconds: float,
    db: Literal["sqlite", "postgres"] = "sqlite",
    worker_poll_seconds: float = 1.0,  # the product default
    worker_args: Sequence[str] = (),
) -> Iterator[Stack]:
    """Start the stack on `env` (a throwaway PostgreSQL cluster first with db="postgres"), the
    Prefect server, the simulator, the worker, and wait for its deployment. On the way out,
    whatever happened: the script's `cleanup` callbacks, then worker, simulator, server and
    PostgreSQL stop, leftovers of this run are killed, and the temp dir is removed after
    success or kept (its path printed) after a failure. SIGTERM exits through the same path."""
    from tests.prefect_stack import Worker

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _STACK_STARTED.add(env.work)
    succeeded = False
    cleanup = contextlib.ExitStack()
    try:
        if db == "postgres":
            pg = start_postgres(free_port())
            cleanup.callback(pg.stop)
            db_url = pg.url
        else:
            db_url = f"sqlite+aiosqlite:///{env.prefect_db}"
        t0 = time.monotonic()
        prefect = start_prefect_server(
            env.work / "prefect", env.prefect_port, env.work / "prefect.log", db_url, timeout=180
        )
        server_seconds = time.monotonic() - t0
        cleanup.callback(pieces.stop_group, prefect, 30)
        simulator = start_simulator(
            env.work / "sim",
            env.sim_port,
            round_seconds=round_seconds,
            prepare_seconds=prepare_seconds,
            report_seconds=report_seconds,
        )
        cleanup.callback(stop_process, simulator)
        worker = Worker(
            {**os.environ}, env.worker_log, poll_seconds=worker_poll_seconds, extra_args=worker_args
        )
        cleanup.callback(worker.stop)
        worker.start()
        wait_for_deployment(worker, env.worker_log)
        yield Stack(env, prefect, simulator, worker, cleanup, server_seconds)
        succeeded = True
    finally:
        try:
            cleanup.close()
        finally:
            leftovers = kill_leftovers(str(env.work))
            if leftovers:
                print(f"killed {len(leftovers)} leftover process(es) of this run: {leftovers}")
            if succeeded:
                shutil.rmtree(env.work, ignore_errors=True)
            else:
                print(f"logs kept in {env.work}")
