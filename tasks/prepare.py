"""PREPARING: make the simulation ready, starting preparation at most once.

Also takes the generation's baseline (what the backend held before this generation acted),
which is checkpointed with the preparation so every later attempt decides against it.
"""

from __future__ import annotations

from prefect import get_run_logger

from autopilot.backend_models import PrepareStatus
from autopilot.client import MultimoClient
from autopilot.errors import StepFailed
from autopilot.models import BackendBaseline, PrepareResult, Step, StepContext
from autopilot.run import crashpoints
from autopilot.run.control import RunControl
from autopilot.run.progress import ProgressPublisher
from autopilot.settings import get_settings
from tasks._outage import outage_tracker, ride_out
from tasks._polling import poll_until_done
from tasks._step import backend_client, step_task

PREPARE_POLL_SECONDS = 1.0


def take_baseline(client: MultimoClient, simulation_id: str) -> BackendBaseline:
    """The backend's run and reports as they are before this generation acts."""
    run = client.run_status(simulation_id)
    reports = client.list_reports(simulation_id)
    return BackendBaseline(
        runner_status=run.runner_status,
        run_started_at=run.started_at,
        run_updated_at=run.updated_at,
        report_ids=[report.report_id for report in reports],
    )


def preparation_failure(status: PrepareStatus) -> StepFailed | None:
    """The failure a finished preparation task reports, if any (pure)."""
    reason = status.failure
    if reason is None:
        return None
    return StepFailed(
        f"preparation failed: {reason}", step=Step.PREPARING.value, error_code="PREPARE_FAILED"
    )


@step_task(Step.PREPARING)
def prepare_simulation(ctx: StepContext) -> PrepareResult:
    """Prepare the simulation (agents, graph, config) unless the backend says it is ready."""
    logger = get_run_logger()
    settings = get_settings()
    control = RunControl(settings.control_check_interval)
    progress = ProgressPublisher(ctx.simulation_id, Step.PREPARING.value)
    outage = outage_tracker(ctx.options, Step.PREPARING, base_delay=PREPARE_POLL_SECONDS)
    with backend_client() as client:
        baseline = ride_out(lambda: take_baseline(client, ctx.simulation_id), outage, control)
        if ctx.taken_as_done(Step.PREPARING):
            # Begun at a later step: no second preparation, but a baseline of this generation's
            # own, so that its start and its report are told apart from the earlier ones.
            logger.info("preparation of %s %s", ctx.simulation_id, ctx.taken_from())
            return _prepared(ctx, None, True, baseline, progress, ctx.taken_from())

        def begin() -> tuple[bool, str | None]:
            """(already prepared, task id): looks before it acts, so it can be repeated."""
            if client.prepare_status(ctx.simulation_id).already_ready:
                return True, None
            # A crash after POST /prepare leaves a preparation running: follow it, never
            # start a twin.
            if client.get_simulation(ctx.simulation_id).status == "preparing":
                logger.info("adopting the preparation already running for %s", ctx.simulation_id)
                return False, None
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "prepare-about-to-request")
            accepted = client.prepare(ctx.simulation_id)
            if accepted.already_prepared:
                return True, None
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "prepare-requested")
            logger.info("preparation of %s started (task %s)", ctx.simulation_id, accepted.task_id)
            return False, accepted.task_id

        ready, task_id = ride_out(begin, outage, control)
        already_prepared = ready

        def prepared_yet() -> bool | None:
            if task_id is None:
                # Adopted: by simulation id alone a task's failure hides (multimo), so follow
                # the simulation itself until it leaves `preparing`; the check below decides.
                return client.get_simulation(ctx.simulation_id).status != "preparing" or None
            status = client.prepare_status(ctx.simulation_id, task_id)
            if (failure := preparation_failure(status)) is not None:
                raise failure
            progress.publish(
                status.progress,
                f"preparing: {status.progress}%",
                {"stage": "preparing", "message": status.message or ""},
            )
            return status.succeeded or None

        if not ready:
            poll_until_done(prepared_yet, PREPARE_POLL_SECONDS, outage, control)
        if already_prepared:
            # The backend's own check by simulation id (not a task's word for it).
            return _prepared(ctx, None, True, baseline, progress)
        # A finished task is not proof: the simulation itself must say it is prepared.
        simulation = ride_out(lambda: client.get_simulation(ctx.simulation_id), outage, control)
        if not simulation.is_prepared:
            reason = simulation.error or f"the simulation is {simulation.status}, not ready"
            raise StepFailed(
                f"preparation failed: {reason}",
                step=Step.PREPARING.value,
                error_code="PREPARE_FAILED",
            )
    return _prepared(ctx, task_id, False, baseline, progress)


def _prepared(
    ctx: StepContext,
    task_id: str | None,
    already_prepared: bool,
    baseline: BackendBaseline,
    progress: ProgressPublisher,
    message: str = "ready",
) -> PrepareResult:
    summary = "prepared" if message == "ready" else f"prepared: {message}"
    progress.publish(100, summary, {"stage": "prepared", "message": message})
    return PrepareResult(
        simulation_id=ctx.simulation_id,
        task_id=task_id,
        already_prepared=already_prepared,
        baseline=baseline,
    )
