"""STARTING: start the simulation run once, reconciling with the backend before acting."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger

from autopilot import crashpoints
from autopilot.backend_models import RunStatus
from autopilot.models import StartResult, Step, StepContext
from autopilot.settings import get_settings
from tasks.backend import backend_client, checkpointed_step, happened_since

# A runner in one of these states was started by someone: starting again would be a twin.
_ALREADY_STARTED = {"running", "starting", "paused", "stopping"}


def belongs_to_generation(status: RunStatus, generation_started_at: datetime) -> bool:
    """Whether the backend's run was touched after this generation began (so it is ours)."""
    return happened_since(status.updated_at, generation_started_at) is True


def needs_start(status: RunStatus, generation_started_at: datetime) -> bool:
    """Pure decision: start only if no run is active and no finished run is this generation's."""
    if status.runner_status in _ALREADY_STARTED:
        return False
    if status.runner_status == "completed":
        return not belongs_to_generation(status, generation_started_at)
    return True


@checkpointed_step(Step.STARTING)
def start_simulation(ctx: StepContext) -> StartResult:
    """Start the run unless run-status shows it already started (a crash after POST /start)."""
    logger = get_run_logger()
    with backend_client() as client:
        status = client.run_status(ctx.simulation_id)
        if not needs_start(status, ctx.generation_started_at):
            logger.info(
                "simulation %s already %s: adopting it", ctx.simulation_id, status.runner_status
            )
            return StartResult(
                simulation_id=ctx.simulation_id,
                adopted=True,
                runner_status=status.runner_status,
                total_rounds=status.total_rounds,
            )
        # A finished or failed earlier run must be wiped, or the backend refuses or resumes it.
        force = status.runner_status in {"completed", "failed", "stopped"}
        accepted = client.start(
            ctx.simulation_id,
            platform=ctx.options.platform,
            max_rounds=ctx.options.max_rounds,
            force=force,
        )
        crashpoints.reached(get_settings().data_dir, ctx.simulation_id, "start-accepted")
        logger.info("simulation %s started (force=%s)", ctx.simulation_id, force)
        return StartResult(
            simulation_id=ctx.simulation_id,
            runner_status=accepted.runner_status or "running",
            total_rounds=accepted.total_rounds or 0,
        )
