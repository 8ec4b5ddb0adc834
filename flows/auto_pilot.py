"""The auto-pilot flow: PREPARING → STARTING → MONITORING → GENERATING_REPORT → COMPLETED.

It only sequences the steps. When a step yields because the run was asked to pause or stop,
the flow calls it again: that call is the task boundary where Prefect suspends the run (the
process exits and resume re-enters here, finished steps coming back Cached) or the runner
cancels it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import Flow, FlowRun
from prefect.context import FlowRunContext
from prefect.states import Cancelled, State

from autopilot.executors import register_executor
from autopilot.models import Outcome, RunOptions, StepContext
from autopilot.settings import get_settings
from tasks.complete import complete
from tasks.control import STOPPING, StepInterrupted
from tasks.generate_report import generate_report
from tasks.monitor import monitor_simulation
from tasks.prepare import prepare_simulation
from tasks.start import start_simulation

logger = logging.getLogger(__name__)


class RunStopped(Exception):
    """The run was asked to stop and no runner killed this process: end it ourselves."""


def _until_done(step: Any, ctx: StepContext) -> Any:
    """Run a step, calling it again after it yielded to a pause or stop request."""
    interruptions = 0
    stopping_since: float | None = None
    while True:
        state = step(ctx, return_state=True)
        if state.is_completed():
            return state.result()
        error = state.result(raise_on_failure=False)
        if isinstance(error, StepInterrupted):
            if error.reason == STOPPING:
                stopping_since = stopping_since or time.monotonic()
                # A runner kills a cancelled run within seconds; when none does (it died, or
                # its cancellation watcher gave up during a Prefect outage), stop here.
                if time.monotonic() - stopping_since > get_settings().stop_grace:
                    raise RunStopped()
            # The next call is the task boundary where Prefect suspends the run, or where the
            # runner kills it. If neither happens (no runner alive to kill an orphaned process),
            # back off rather than spin out a task run a second.
            interruptions += 1
            if interruptions > 1:
                pause = min(2.0**interruptions, 30.0)
                if stopping_since is not None:
                    grace_left = get_settings().stop_grace - (time.monotonic() - stopping_since)
                    pause = min(pause, max(0.0, grace_left) + 0.1)
                time.sleep(pause)
            continue
        if isinstance(error, BaseException):
            raise error
        raise RuntimeError(f"step {step.name} ended {state.type.value}: {state.message}")


def _generation_started_at() -> datetime:
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.created:
        return context.flow_run.created
    return datetime.now(UTC)


def restart_crashed_run(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """on_crashed (runs in the serving process): restart the run on its own id, capped."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    from autopilot.recovery import restart_or_give_up

    async def restart() -> None:
        async with get_client() as client:
            await restart_or_give_up(client, flow_run.id, get_settings().max_crash_restarts)

    run_coro_as_sync(restart())


def stop_backend_simulation(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """on_cancellation: a stopped auto-pilot also stops the simulation on the backend."""
    simulation_id = flow_run.parameters.get("simulation_id")
    if simulation_id:
        stop_simulation_of(simulation_id, int(flow_run.parameters.get("generation") or 0))


def superseded(simulation_id: str, generation: int) -> bool:
    """Whether the simulation has moved on to a newer generation (stop, reset, force start)."""
    from prefect.variables import Variable

    from autopilot.prefect_store import variable_name

    config = Variable.get(variable_name(simulation_id), default=None)
    return isinstance(config, dict) and int(config.get("generation") or 0) > generation


def stop_simulation_of(simulation_id: str, generation: int) -> None:
    """Stop the simulation unless a newer generation owns it: the service stopped it already,
    and a late stop must not hit the new run."""
    from autopilot.errors import AutopilotError
    from tasks.backend import backend_client

    if superseded(simulation_id, generation):
        return
    with backend_client() as client:
        try:
            if client.run_status(simulation_id).runner_status in {"running", "paused", "starting"}:
                client.stop(simulation_id)
        except AutopilotError as exc:
            logger.warning("could not stop simulation %s: %s", simulation_id, exc)


@flow(
    name="auto-pilot",
    flow_run_name="{simulation_id}-g{generation}",
    persist_result=True,
    on_crashed=[restart_crashed_run],  # type: ignore[list-item]
    on_cancellation=[stop_backend_simulation],  # type: ignore[list-item]
)
def auto_pilot(
    simulation_id: str, generation: int = 0, options: RunOptions | None = None
) -> Outcome | State:
    """Drive one simulation through its five steps; resumable at every step."""
    # The runner pickles this function by value with only the globals its body names, and
    # Prefect resolves the parameter annotations from those: the body must name RunOptions.
    options = options or RunOptions()
    if superseded(simulation_id, generation):
        # A stopped or reset attempt that a runner started anyway (it raced the cancel):
        # only the current generation may act on the simulation.
        return Cancelled(message="superseded by a newer generation (stopped or reset)")
    try:
        return _drive(simulation_id, generation, options)
    except RunStopped:
        # Returning a Cancelled state ends the run Cancelled; no hook runs on this path.
        stop_simulation_of(simulation_id, generation)
        return Cancelled(message="stopped; the run's own process ended it (no runner did)")


def _drive(simulation_id: str, generation: int, options: RunOptions) -> Outcome:
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        register_executor(get_settings().data_dir.resolve(), context.flow_run.id)
    ctx = StepContext(
        simulation_id=simulation_id,
        generation=generation,
        generation_started_at=_generation_started_at(),
        options=options,
    )
    _until_done(prepare_simulation, ctx)
    _until_done(start_simulation, ctx)
    _until_done(monitor_simulation, ctx)
    report = _until_done(generate_report, ctx)
    return complete(ctx, report)
