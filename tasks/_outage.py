"""Rides out backend outages for a bounded time, with back-off, then fails the step clearly.

Every backend call of every step goes through `ride_out`: the first call of a step is as
exposed to a restarting backend as the hundredth poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from autopilot.errors import BackendUnavailable, StepFailed
from autopilot.models import RunOptions, Step
from autopilot.run.control import RunControl, StepInterrupted
from autopilot.settings import get_settings

T = TypeVar("T")
logger = logging.getLogger(__name__)


def outage_tracker(options: RunOptions, step: Step, base_delay: float) -> OutageTracker:
    """The step's tracker, with the run's tolerance (and first wait) or else the worker's."""
    tolerance = options.outage_tolerance
    if tolerance is None:
        tolerance = get_settings().outage_tolerance
    return OutageTracker(tolerance, step, options.outage_base_delay or base_delay)


def ride_out(call: Callable[[], T], outage: OutageTracker, control: RunControl) -> T:
    """`call()` until the backend answers; waits (watching for pause/stop) between tries.

    A call that changes the backend must be a "look, then act" unit: after a timeout the
    action may have happened, and only looking again tells.
    """
    while True:
        try:
            value = call()
        except BackendUnavailable as exc:
            logger.warning("backend unavailable during %s: %s", outage.step.value, exc.message)
            if (reason := control.wait(outage.failed(exc))) is not None:
                raise StepInterrupted(reason) from exc
            continue
        outage.recovered()
        return value


class OutageTracker:
    """Counts how long the backend has been unavailable during one step."""

    def __init__(
        self,
        tolerance: float,
        step: Step,
        base_delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tolerance = tolerance
        self.step = step
        self.base_delay = base_delay
        self._clock = clock
        self._since: float | None = None
        self._failures = 0

    def recovered(self) -> None:
        """The backend answered: the outage (if any) is over."""
        self._since = None
        self._failures = 0

    def failed(self, error: BackendUnavailable) -> float:
        """Note one failed call; return how long to wait, or raise once past the tolerance."""
        now = self._clock()
        if self._since is None:
            self._since = now
        down_for = now - self._since
        if down_for > self.tolerance:
            raise StepFailed(
                f"backend unavailable for {down_for:.0f}s (tolerance {self.tolerance:.0f}s): "
                f"{error.message}",
                step=self.step.value,
                error_code="BACKEND_OUTAGE",
            )
        self._failures += 1
        delay = self.base_delay * float(2 ** min(self._failures - 1, 5))
        # Never sleep past the tolerance: the last attempt happens right at its edge.
        return max(0.0, min(delay, 30.0, self.tolerance - down_for + 0.01))
