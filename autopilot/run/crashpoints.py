"""Deterministic crash injection for crash-consistency tests and the chaos harness.

Off unless armed. Arming writes `<data_dir>/crashpoints/<simulation_id>/<point>` holding how
many times to fire and how; a flow process that reaches an armed point consumes one firing and
SIGKILLs itself on the spot, exactly as a power cut would, leaving no chance to clean up, or
("stall") SIGSTOPs itself, as a process frozen past its lease would be, until a SIGCONT.

Points:
    prepare-about-to-request  before POST /prepare (it decided to prepare)
    prepare-requested   after POST /prepare answered, before the step's result is persisted
    start-about-to-request  before POST /start (it looked and decided to start)
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
    {
        "prepare-about-to-request",
        "prepare-requested",
        "start-about-to-request",
        "start-accepted",
        "monitor-polled",
        "report-requested",
        "report-done",
        # Between two steps, as the next one's wait (manual mode) is decided.
        "step-boundary",
    }
)
ACTIONS = {"kill": signal.SIGKILL, "stall": signal.SIGSTOP}


def _point_path(data_dir: Path, simulation_id: str, point: str) -> Path:
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(sorted(POINTS))}")
    return data_dir / "crashpoints" / crashpoint_dir_name(simulation_id) / point


def arm(
    data_dir: Path, simulation_id: str, point: str, times: int = 1, action: str = "kill"
) -> None:
    """Make the next `times` arrivals at `point` for this simulation kill (or stall) their
    process."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    path = _point_path(data_dir, simulation_id, point)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{times} {action}")


def reached(data_dir: Path, simulation_id: str, point: str) -> None:
    """Called by the steps at each point: dies (or stalls) here if the point is armed."""
    path = _point_path(data_dir, simulation_id, point)
    try:
        count, _, action = path.read_text().partition(" ")
        remaining = int(count or "0")
    except (OSError, ValueError):
        return
    if remaining <= 1:
        path.unlink(missing_ok=True)
    else:
        path.write_text(f"{remaining - 1} {action}")
    if remaining >= 1:
        os.kill(os.getpid(), ACTIONS.get(action or "kill", signal.SIGKILL))
