"""Which local process executes which flow run, so recovery never gives a living run a twin.

Each flow process writes `<data_dir>/executors/<flow_run_id>.json` with its pid and the kernel's
start time of that pid (a reused pid has another start time). The serving process consults it
at start-up before resubmitting runs left RUNNING by a dead runner.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from uuid import UUID


def _start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (Linux), None if the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces or parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def _record_path(data_dir: Path, flow_run_id: UUID | str) -> Path:
    return data_dir / "executors" / f"{flow_run_id}.json"


def register_executor(data_dir: Path, flow_run_id: UUID | str, pid: int | None = None) -> None:
    """Record that this process (or `pid`) executes the flow run; written atomically."""
    pid = pid or os.getpid()
    path = _record_path(data_dir, flow_run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "start_ticks": _start_ticks(pid), "host": socket.gethostname()}
    tmp = path.with_suffix(f".{pid}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def has_executor_record(data_dir: Path, flow_run_id: UUID | str) -> bool:
    """Whether a local process ever registered for the run."""
    return _record_path(data_dir, flow_run_id).exists()


def living_executor(data_dir: Path, flow_run_id: UUID | str) -> int | None:
    """The pid of a still-living local process executing the run, if there is one."""
    try:
        record = json.loads(_record_path(data_dir, flow_run_id).read_text())
    except (OSError, ValueError):
        return None
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record.get("pid", 0))
    ticks = _start_ticks(pid) if pid > 0 else None
    if ticks is None or ticks != record.get("start_ticks"):
        return None
    # A zombie has exited already: it executes nothing.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state == "Z" else pid
