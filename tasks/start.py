"""STARTING: start the simulation run once per attempt, reconciling with the backend first.

Checkpointed per attempt (flow run), not per generation: a crash or a pause re-enters the
same attempt and finds the step done, while a retry after a failure (a new attempt) looks at
the backend again and starts a run that ended failed or stopped.
"""

from __future__ import annotations

from prefect import get_run_logger

from autopilot.backend_models import RunStatus
from autopilot.errors import BackendRejected
from autopilot.models import BackendBaseline, StartResult, Step, StepContext
from autopilot.run import crashpoints
from autopilot.run.control import RunControl
from autopilot.settings import get_settings
from tasks._outage import outage_tracker, ride_out
from tasks._step import backend_client, step_task

# A runner in one of these states was started by someone: starting again would be a twin.
LIVE = frozenset({"running", "starting", "paused", "stopping"})
_ENDED = frozenset({"completed", "failed", "stopped"})


def is_this_generations_run(status: RunStatus, baseline: BackendBaseline) -> bool:
    """Whether the backend's run belongs to this generation, judged by the backend's own
    record of it (never by comparing its clock with ours): a run that was live when the
    generation began was adopted by it; an ended one is ours only if a new run has begun."""
    if status.runner_status == "idle":
        return False
    if baseline.runner_status not in _ENDED:
        return True
    if status.started_at is not None or baseline.run_started_at is not None:
        return status.started_at != baseline.run_started_at
    # No start time from this backend: an ended run's record stays as it was until a new
    # run replaces it.
    return status.updated_at != baseline.run_updated_at


def needs_start(status: RunStatus, baseline: BackendBaseline) -> bool:
    """Pure decision: start unless a run is live or this generation's run completed."""
    if status.runner_status in LIVE:
        return False
    if status.runner_status == "completed":
        return not is_this_generations_run(status, baseline)
    return True


@step_task(Step.STARTING, checkpoint="attempt")
def start_simulation(ctx: StepContext, baseline: BackendBaseline) -> StartResult:
    """Start the run unless run-status shows it already started (a crash after POST /start)."""
    logger = get_run_logger()
    settings = get_settings()
    control = RunControl(settings.control_check_interval)
    outage = outage_tracker(ctx.options, Step.STARTING, base_delay=1.0)
    with backend_client() as client:

        def adopted(status: RunStatus) -> StartResult:
            return StartResult(
                simulation_id=ctx.simulation_id,
                adopted=True,
                runner_status=status.runner_status,
                total_rounds=status.total_rounds,
                run_started_at=status.started_at,
            )

        if ctx.taken_as_done(Step.STARTING):
            # Begun at a later step: the run an earlier generation started is this one's.
            logger.info("start of %s %s", ctx.simulation_id, ctx.taken_from())
            return ride_out(lambda: adopted(client.run_status(ctx.simulation_id)), outage, control)

        def look_then_start() -> StartResult:
            status = client.run_status(ctx.simulation_id)
            if not needs_start(status, baseline):
                logger.info(
                    "simulation %s already %s: adopting it",
                    ctx.simulation_id,
                    status.runner_status,
                )
                return adopted(status)
            # An ended earlier run must be wiped, or the backend refuses or resumes it.
            force = status.runner_status in _ENDED
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "start-about-to-request")
            try:
                accepted = client.start(
                    ctx.simulation_id,
                    platform=ctx.options.platform,
                    max_rounds=ctx.options.max_rounds,
                    force=force,
                )
            except BackendRejected:
                # Refused because a run went live since the look: an attempt taken over while
                # its POST /start was under way (measured under a start storm on a loaded
                # host). That run is adopted like any live one; a refusal for another reason
                # stands.
                now = client.run_status(ctx.simulation_id)
                if now.runner_status not in LIVE:
                    raise
                logger.warning(
                    "simulation %s went %s while this attempt asked to start it: adopting it",
                    ctx.simulation_id,
                    now.runner_status,
                )
                return adopted(now)
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "start-accepted")
            logger.info("simulation %s started (force=%s)", ctx.simulation_id, force)
            return StartResult(
                simulation_id=ctx.simulation_id,
                runner_status=accepted.runner_status or "running",
                total_rounds=accepted.total_rounds or 0,
                run_started_at=accepted.started_at,
            )

        return ride_out(look_then_start, outage, control)
