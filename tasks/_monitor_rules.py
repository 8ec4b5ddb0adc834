"""Pure decisions of the monitor: what a run-status means, and whether rounds have stalled."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from autopilot.backend_models import RunStatus


class Verdict(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


def classify(status: RunStatus) -> Verdict:
    """Map a runner status onto what the monitor should do."""
    match status.runner_status:
        case "completed":
            return Verdict.SUCCEEDED
        case "failed":
            return Verdict.FAILED
        case "stopped":
            return Verdict.STOPPED
        case "running" | "starting" | "paused" | "stopping":
            return Verdict.RUNNING
        case _:
            # A transient `idle` mid-run is a torn status file, not "not started".
            return Verdict.UNKNOWN


def round_percent(current_round: int, total_rounds: int) -> int:
    """`current_round * 100 // total_rounds`, clamped to 0..100."""
    if total_rounds <= 0:
        return 0
    return max(0, min(100, current_round * 100 // total_rounds))


class StallDetector:
    """Notices when neither the round counter nor `updated_at` has moved for `timeout` seconds."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._marker: tuple[int, str | None] | None = None
        self._moved_at = clock()

    def observe(self, status: RunStatus) -> float:
        """Record a status; return the seconds since the run last made progress."""
        now = self._clock()
        if status.runner_status == "paused":
            # Paused on the backend on purpose: waiting is not stalling.
            self._moved_at = now
            return 0.0
        marker = (status.current_round, status.updated_at)
        if marker != self._marker and status.runner_status != "idle":
            self._marker = marker
            self._moved_at = now
        return now - self._moved_at

    def stalled(self, status: RunStatus) -> float | None:
        """Seconds without progress if past the timeout, else None."""
        idle_for = self.observe(status)
        return idle_for if idle_for >= self.timeout else None
