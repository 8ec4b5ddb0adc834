"""Deterministic crash injection for crash-consistency tests and the chaos harness.

Off unless armed. Arming writes `<data_dir>/crashpoints/<simulation_id>/<point>` holding how
many times to fire; a flow process that reaches an armed point consumes one firing and
SIGKILLs itself on the spot, exactly as a power cut would, leaving no chance to clean up.

Points:
    prepare-requested   after POST /prepare answered, before the step's result is persisted
    start-accepted      after POST /start answered, before the step's result is persisted
    monitor-polled      after a run-status poll during monitoring
    report-requested    after POST /report/generate answered
    report-done         after the report completed, before completion is recorded
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from autopilot.names import crashpoint_dir_name

POINTS = frozenset(
    {"prepare-requested", "start-accepted", "monitor-polled", "report-requested", "report-done"}
)


def _point_path(data_dir: Path, simulation_id: str, point: str) -> Path:
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(sorted(POINTS))}")
    return data_dir / "crashpoints" / crashpoint_dir_name(simulation_id) / point


def arm(data_dir: Path, simulation_id: str, point: str, times: int = 1) -> None:
    """Make the next `times` arrivals at `point` for this simulation kill their process."""
    path = _point_path(data_dir, simulation_id, point)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(times))


def reached(data_dir: Path, simulation_id: str, point: str) -> None:
    """Called by the steps at each point: dies here if the point is armed."""
    path = _point_path(data_dir, simulation_id, point)
    try:
        remaining = int(path.read_text() or "0")
    except (OSError, ValueError):
        return
    if remaining <= 1:
        path.unlink(missing_ok=True)
    else:
        path.write_text(str(remaining - 1))
    if remaining >= 1:
        os.kill(os.getpid(), signal.SIGKILL)
