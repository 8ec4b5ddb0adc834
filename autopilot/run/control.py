"""Lets a long step notice that its own flow run was asked to pause or stop.

Prefect suspends or cancels a run only at a task boundary, and never interrupts a running task;
a step that polls for hours must therefore look at its run's state itself and return early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType
from prefect.context import get_run_context

from autopilot.errors import AutopilotError

logger = logging.getLogger(__name__)

PAUSED = "paused"
STOPPING = "stopping"

_INTERRUPTING_STATES = {
    StateType.PAUSED: PAUSED,
    StateType.CANCELLING: STOPPING,
    StateType.CANCELLED: STOPPING,
}


class StepInterrupted(AutopilotError):
    """A checkpointed step gave up its turn because its run is being paused or stopped."""

    error_code = "STEP_INTERRUPTED"
    _SAYS = "step interrupted: run is "

    def __init__(self, reason: str) -> None:
        # A JSON result rebuilds the exception from its message: take the reason back out.
        reason = reason.removeprefix(self._SAYS)
        super().__init__(f"{self._SAYS}{reason}")
        self.reason = reason


def interruption_of(state: State) -> StepInterrupted | None:
    """The interruption a step's final state records (a step that yielded ends Cancelled with
    the message `StepInterrupted: …`), or None."""
    _, marker, says = (state.message or "").partition(f"{StepInterrupted.__name__}: ")
    return StepInterrupted(says) if marker and state.is_cancelled() else None


def current_flow_run_id() -> UUID | None:
    """The flow run the calling task belongs to, if any."""
    try:
        context = get_run_context()
    except Exception:
        return None
    task_run = getattr(context, "task_run", None)
    if task_run is not None and task_run.flow_run_id is not None:
        flow_run_id: UUID = task_run.flow_run_id
        return flow_run_id
    flow_run = getattr(context, "flow_run", None)
    return flow_run.id if flow_run is not None else None


def read_flow_run_state(flow_run_id: UUID) -> StateType | None:
    """The run's state type, as Prefect has it now."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state.type if state is not None else None


class RunControl:
    """Reads the run's own state at most once per `check_interval` seconds."""

    def __init__(
        self,
        check_interval: float,
        flow_run_id: UUID | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        read_state: Callable[[UUID], StateType | None] | None = None,
    ) -> None:
        self.check_interval = check_interval
        self.flow_run_id = flow_run_id if flow_run_id is not None else current_flow_run_id()
        self._clock = clock
        self._sleep = sleep
        # What Prefect says the run's state is (injectable: tests have no Prefect run).
        self._read_state = read_state or read_flow_run_state
        self._checked_at: float | None = None
        self._request: str | None = None

    def requested(self) -> str | None:
        """ "paused" or "stopping" when someone asked for it, else None."""
        if self.flow_run_id is None:
            return None
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.check_interval:
            return self._request
        self._checked_at = now
        try:
            state_type = self._read_state(self.flow_run_id)
        except Exception as exc:  # the Prefect API being down must not fail a 72 h step
            logger.warning("could not read the run's state: %s", exc)
            return self._request
        self._request = _INTERRUPTING_STATES.get(state_type) if state_type else None
        return self._request

    def wait(self, seconds: float) -> str | None:
        """Sleep up to `seconds`, returning early (with the reason) on a pause or stop request."""
        deadline = self._clock() + seconds
        while True:
            request = self.requested()
            if request is not None:
                return request
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            self._sleep(min(remaining, self.check_interval))
