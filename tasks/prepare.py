"""PREPARING: make the simulation ready, starting preparation at most once."""

from __future__ import annotations

from prefect import get_run_logger

from autopilot import crashpoints
from autopilot.backend_models import PrepareStatus
from autopilot.errors import BackendUnavailable, StepFailed
from autopilot.models import PrepareResult, Step, StepContext
from autopilot.settings import get_settings
from tasks.backend import backend_client, checkpointed_step
from tasks.control import RunControl, StepInterrupted
from tasks.outage import outage_tracker
from tasks.progress import ProgressPublisher

PREPARE_POLL_SECONDS = 1.0


@checkpointed_step(Step.PREPARING)
def prepare_simulation(ctx: StepContext) -> PrepareResult:
    """Prepare the simulation (agents, graph, config) unless the backend says it is ready."""
    logger = get_run_logger()
    settings = get_settings()
    control = RunControl(settings.control_check_interval)
    progress = ProgressPublisher(ctx.simulation_id, Step.PREPARING.value)
    with backend_client() as client:
        if client.prepare_status(ctx.simulation_id).is_ready:
            logger.info("simulation %s is already prepared", ctx.simulation_id)
            return PrepareResult(simulation_id=ctx.simulation_id, already_prepared=True)
        task_id: str | None = None
        # A crash after POST /prepare leaves a preparation running: follow it, never start a twin.
        if client.get_simulation(ctx.simulation_id).status != "preparing":
            accepted = client.prepare(ctx.simulation_id)
            if accepted.already_prepared:
                return PrepareResult(simulation_id=ctx.simulation_id, already_prepared=True)
            task_id = accepted.task_id
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "prepare-requested")
            logger.info("preparation of %s started (task %s)", ctx.simulation_id, task_id)
        else:
            logger.info("adopting the preparation already running for %s", ctx.simulation_id)

        outage = outage_tracker(ctx.options, Step.PREPARING, base_delay=PREPARE_POLL_SECONDS)
        while True:
            try:
                status = client.prepare_status(ctx.simulation_id, task_id)
                outage.recovered()
            except BackendUnavailable as exc:
                if (reason := control.wait(outage.failed(exc))) is not None:
                    raise StepInterrupted(reason) from exc
                continue
            if status.is_ready:
                progress.publish(100, "prepared", {"stage": "prepared", "message": "ready"})
                return PrepareResult(simulation_id=ctx.simulation_id, task_id=task_id)
            _fail_if_failed(status)
            progress.publish(
                status.progress,
                f"preparing: {status.progress}%",
                {"stage": "preparing", "message": status.message or ""},
            )
            if (reason := control.wait(PREPARE_POLL_SECONDS)) is not None:
                raise StepInterrupted(reason)


def _fail_if_failed(status: PrepareStatus) -> None:
    if status.status == "failed":
        raise StepFailed(
            f"preparation failed: {status.error or status.message or 'no reason given'}",
            step=Step.PREPARING.value,
        )
