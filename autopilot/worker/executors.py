"""Which local process executes which flow run, for the tools that must find it (the chaos
harness, the benchmarks, the tests kill or watch it).

Each flow process writes `<data_dir>/executors/<flow_run_id>.json` with its pid, the kernel's
start time of that pid (a reused pid has another start time) and its host (`host_id`).
Recovery does not read it: liveness is the run's lease (autopilot/worker/judge.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

from autopilot.settings import get_settings


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, None if the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces or parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (Linux), None if the pid is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, T stopped, Z zombie), None if gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def process_alive(pid: int) -> bool:
    """Whether `pid` is a living process on this machine (a zombie has exited already)."""
    return process_state(pid) not in {None, "Z"}


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
    return pid if process_alive(pid) else None


def process_environments() -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """Every process of this machine whose environment can be read (our user's), with it.
    Processes of other users, and those gone meanwhile, are skipped."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        variables = (item.partition(b"=") for item in environ.split(b"\0") if item)
        yield int(entry.name), {name: value for name, _, value in variables}


def flow_processes_here() -> dict[UUID, int]:
    """The flow processes running on this machine, by flow run id: every process whose
    environment carries Prefect's `PREFECT__FLOW_RUN_ID` (a runner or a process worker sets
    it before the process imports anything), living and not stopped (a SIGSTOPped process
    is frozen, not starting)."""
    found: dict[UUID, int] = {}
    for pid, environ in process_environments():
        value = environ.get(b"PREFECT__FLOW_RUN_ID")
        if value is None or process_state(pid) in {None, "Z", "T", "t"}:
            continue
        try:
            found.setdefault(UUID(value.decode()), pid)
        except ValueError:
            continue
    return found
