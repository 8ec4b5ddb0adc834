"""Helpers shared by the test suites: free ports, bounded waits, a real simulator process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
# The `autopilot` command as a person runs it, in this interpreter.
AUTOPILOT = [sys.executable, "-c", "from autopilot.cli import main; main()"]
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy (which is returned); exceptions
    count as "not yet". Raises TimeoutError naming `message` and the last error seen."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing polled may simply not be up yet
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}: {last_error!r}")
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """`wait_until` for async tests: the predicate may be a coroutine function; the event
    loop runs between checks."""
    import inspect

    import anyio

    with anyio.move_on_after(timeout):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await anyio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message}")


def start_simulator(
    data_dir: Path,
    port: int,
    *,
    round_seconds: float = 0.05,
    prepare_seconds: float = 0.2,
    report_seconds: float = 0.2,
    host: str = "127.0.0.1",
    wait: bool = True,
    timeout: float = 20.0,
    clock_offset_seconds: float = 0.0,
    timestamp_zone: str = "utc",
) -> subprocess.Popen[bytes]:
    """Start `python -m simulator` as a real process; its log goes to data_dir/server-<port>.log.
    With wait=True, returns once /api/sim/health answers (or raises, killing the process).
    clock_offset_seconds / timestamp_zone skew the simulator's timestamps (simulator/clock.py)."""
    from autopilot.devstack import pieces

    data_dir = Path(data_dir)
    sim = pieces.simulator(
        port,
        data_dir,
        {
            "round_seconds": round_seconds,
            "prepare_seconds": prepare_seconds,
            "report_seconds": report_seconds,
            "clock_offset_seconds": clock_offset_seconds,
            "timestamp_zone": timestamp_zone,
        },
        host=host,
    )
    log_path = data_dir / f"server-{port}.log"
    # In the test's own session: stop_process signals it alone, as a test that kills it does.
    proc = pieces.spawn(sim, os.environ, log_path, own_session=False)
    if wait:
        try:
            pieces.wait_up(sim, proc, log_path, timeout=timeout)
        except BaseException:
            stop_process(proc)
            raise
    return proc


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Signal one process we started and reap it, escalating to SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def run_status_poll_times(simulator_log: Path, simulation_id: str) -> list[float]:
    """When the simulator answered run-status for this simulation (epoch seconds), read from
    its access log: the outside view of how often the auto-pilot polls."""
    times = []
    for line in simulator_log.read_text().splitlines():
        if f"/api/simulation/{simulation_id}/run-status" in line and (m := _LOG_TIME.match(line)):
            times.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def kill_leftover_runs(data_dir: Path) -> None:
    """Run processes outlive the simulator server: SIGKILL the ones still holding their lock."""
    import contextlib
    import sqlite3

    from simulator import runlock

    db = data_dir / "simulator.db"
    if not db.exists():
        return
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT simulation_id, pid FROM runs WHERE pid IS NOT NULL").fetchall()
    for sim_id, pid in rows:
        if runlock.is_held(data_dir / "sims" / sim_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
