"""The auto-pilot flow: PREPARING → STARTING → MONITORING → GENERATING_REPORT → COMPLETED.

In manual mode the run waits (suspended) for a person's confirmation between two steps
(autopilot/run/confirm.py).

It only sequences the steps. Whoever created the run (the shim, the CLI, the Prefect UI,
`prefect deployment run`), it first becomes the simulation's one auto-pilot or ends at once
(autopilot/run/claim.py). A step that yields to a pause or stop is called again: that call is
the task boundary where Prefect suspends the run or the runner cancels it.
"""

from __future__ import annotations

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Cancelled

from autopilot.errors import StepFailed
from autopilot.models import Outcome, RunOptions, Step
from autopilot.names import FLOW_NAME
from autopilot.run.attempt import begin_attempt, flow_run_name, record_failure
from autopilot.run.claim import Refused, Superseded
from autopilot.run.confirm import confirm_before
from autopilot.run.driver import RunStopped, until_done
from autopilot.run.hooks import (
    reached_starting,
    restart_crashed_run,
    stop_backend_simulation,
    stop_simulation_of,
)
from tasks._step import CHECKPOINT_SERIALIZER
from tasks.complete import complete
from tasks.generate_report import generate_report
from tasks.monitor import monitor_simulation
from tasks.prepare import prepare_simulation
from tasks.start import start_simulation


@flow(
    name=FLOW_NAME,
    flow_run_name=flow_run_name,
    persist_result=True,
    result_serializer=CHECKPOINT_SERIALIZER,
    on_crashed=[restart_crashed_run],  # type: ignore[list-item]
    on_cancellation=[stop_backend_simulation],  # type: ignore[list-item]
)
def auto_pilot(
    simulation_id: str, generation: int | None = None, options: RunOptions | None = None
) -> Outcome | State:
    """Drive one simulation through its five steps; resumable at every step."""
    # The runner pickles this function by value with only the globals its body names, and
    # Prefect resolves the parameter annotations from those: the body must name RunOptions.
    options = options or RunOptions()
    try:
        ctx = begin_attempt(simulation_id, generation, options)
    except (Superseded, Refused) as exc:
        return Cancelled(message=str(exc))
    try:
        prepared = until_done(prepare_simulation, ctx)
        confirm_before(ctx, Step.STARTING)
        until_done(start_simulation, ctx, prepared.baseline)
        confirm_before(ctx, Step.MONITORING)
        monitored = until_done(monitor_simulation, ctx)
        confirm_before(ctx, Step.GENERATING_REPORT)
        report = until_done(generate_report, ctx, prepared.baseline)
        return until_done(complete, ctx, monitored, report)  # type: ignore[no-any-return]
    except RunStopped as exc:
        # Returning a Cancelled state ends the run Cancelled; no hook runs on this path.
        if reached_starting(current_flow_run.id):
            stop_simulation_of(simulation_id, ctx.generation)
        return Cancelled(message=exc.message)
    except StepFailed as failure:
        record_failure(ctx, failure)
        raise
