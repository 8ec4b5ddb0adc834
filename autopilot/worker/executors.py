"""Which local process executes which flow run, for the tools that must find it (the chaos
harness, the benchmarks, the tests kill or watch it).

Each flow process writes `<data_dir>/executors/<flow_run_id>.json` with its pid, the kernel's
start time of that pid (a reused pid has another start time) and its host (`host_id`).
Recovery does not read it: liveness is the run's lease (autopilot/worker/judge.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from uuid import UUID

from autopilot.settings import get_settings


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
    record = {"pid": pid, "start_ticks": _start_ticks(pid), "host": get_settings().host_id}
    tmp = path.with_suffix(f".{pid}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _read_record(data_dir: Path, flow_run_id: UUID | str) -> dict[str, object] | None:
    try:
        record = json.loads(_record_path(data_dir, flow_run_id).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def living_executor(data_dir: Path, flow_run_id: UUID | str, host: str | None = None) -> int | None:
    """The pid of a still-living process of this host (or of `host`, another "host" on this
    machine) executing the run, if there is one."""
    record = _read_record(data_dir, flow_run_id)
    if record is None or record.get("host") != (host or get_settings().host_id):
        return None
    pid = int(str(record.get("pid", 0)))
    ticks = _start_ticks(pid) if pid > 0 else None
    if ticks is None or ticks != record.get("start_ticks"):
        return None
    # A zombie has exited already: it executes nothing.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state == "Z" else pid
