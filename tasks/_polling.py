"""The one loop of every step that waits on the backend: look (riding out outages), and
between looks yield to a pause or stop. Prepare, monitor and report each supply their look."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from autopilot.run.control import RunControl, StepInterrupted
from tasks._outage import OutageTracker, ride_out

T = TypeVar("T")


def poll_until_done(
    look: Callable[[], T | None], every: float, outage: OutageTracker, control: RunControl
) -> T:
    """`look()` every `every` seconds until it returns a value (None: not done yet).

    A look may raise to end the step (StepFailed); an outage inside it is ridden out and the
    whole look repeated, so a look must only read, or look before it acts.
    """
    while True:
        done = ride_out(look, outage, control)
        if done is not None:
            return done
        if (reason := control.wait(every)) is not None:
            raise StepInterrupted(reason)
