"""Is a simulation's run process alive? Answered with an advisory file lock, not a pid.

A pid stored in the database can be reused by an unrelated process after the run process
dies; a `flock` is released by the kernel the moment its holder dies, whatever happens to the
pid. The run process holds `sims/<id>/run.lock` for its whole life, so:
- lock held  -> a run process is alive (adopt it, signal the stored pid);
- lock free  -> nobody runs this simulation (respawn it if it should be running).
The lock also guarantees at most one run process per simulation.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path


def lock_path(sim_dir: Path) -> Path:
    return sim_dir / "run.lock"


def try_acquire(sim_dir: Path, wait_seconds: float = 0.0) -> int | None:
    """Return an fd holding the lock, or None. Waiting matters: the server probes the lock
    for an instant (see `is_held`), and a starting run process must not lose to that probe."""
    sim_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(sim_dir), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def is_held(sim_dir: Path) -> bool:
    if not lock_path(sim_dir).exists():
        return False
    fd = try_acquire(sim_dir)
    if fd is None:
        return True
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return False


def wait_released(sim_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_held(sim_dir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
