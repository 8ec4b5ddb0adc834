"""Runs one step of the flow to its end: again after it yielded to a pause or stop request,
and only done once its checkpoint is proven written."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import Pause
from prefect.results import ResultRecord

from autopilot.errors import AutopilotError, StepFailed
from autopilot.models import StepContext
from autopilot.run import confirm
from autopilot.run.checkpoints import verify_checkpoint
from autopilot.run.control import STOPPING, StepInterrupted, interruption_of
from autopilot.run.lease import fence
from autopilot.settings import get_settings


class RunStopped(AutopilotError):
    """The run was asked to stop and no runner killed this process: end it ourselves."""

    error_code = "RUN_STOPPED"


def _checkpoint_key(state: Any) -> str | None:
    record = state.data
    return record.metadata.storage_key if isinstance(record, ResultRecord) else None


def _as_step_failure(step_name: str, error: Any, state: Any) -> BaseException:
    """What a failed step raises into the flow: always naming the step that failed."""
    if isinstance(error, StepFailed) or not isinstance(error, Exception):
        return error if isinstance(error, BaseException) else RuntimeError(state.message)
    failure = StepFailed(
        error.message if isinstance(error, AutopilotError) else f"{type(error).__name__}: {error}",
        step=step_name,
        error_code=getattr(error, "error_code", None),
    )
    failure.__cause__ = error
    return failure


def until_done(step: Any, ctx: StepContext, *args: Any) -> Any:
    """Run a step, calling it again after it yielded to a pause or stop request."""
    # A process that was taken over ends here rather than record another step as its own.
    fence(f"step {step.name}")
    interruptions = 0
    stopping_since: float | None = None
    grace = get_settings().stop_grace
    while True:
        try:
            state = step(ctx, *args, return_state=True)
        except Pause:
            # Prefect suspends the run at this task boundary; the process exits.
            get_run_logger().info("auto-pilot paused at %s; resume continues here", step.name)
            raise
        if state.is_completed():
            if state.name != "Cached":
                if step.persist_result:
                    verify_checkpoint(step, _checkpoint_key(state) or "", step.name)
                confirm.executed(ctx, step.name)
            return state.result()
        error = interruption_of(state) or state.result(raise_on_failure=False)
        if not isinstance(error, StepInterrupted):
            raise _as_step_failure(step.name, error, state)
        if error.reason == STOPPING:
            stopping_since = stopping_since or time.monotonic()
            # A runner kills a cancelled run within seconds; when none does (it died, or its
            # cancellation watcher gave up during a Prefect outage), stop here.
            if time.monotonic() - stopping_since > grace:
                raise RunStopped("stopped; no runner ended this process, so it ends itself")
        # The next call is the task boundary where Prefect suspends the run, or where the
        # runner kills it. If neither happens (no runner alive to kill an orphaned process),
        # back off rather than spin out a task run a second.
        interruptions += 1
        if interruptions > 1:
            pause = min(2.0**interruptions, 30.0)
            if stopping_since is not None:
                grace_left = grace - (time.monotonic() - stopping_since)
                pause = min(pause, max(0.0, grace_left) + 0.1)
            time.sleep(pause)
