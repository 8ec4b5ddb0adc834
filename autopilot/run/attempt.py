"""The start and the end of one attempt (flow run) of an auto-pilot, inside its process."""

from __future__ import annotations

import logging

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from autopilot.errors import StepFailed
from autopilot.liveness import short_state
from autopilot.models import RunOptions, StepContext
from autopilot.names import ERROR_STEP_LABEL
from autopilot.run.claim import claim, resolve_generation, tag_run
from autopilot.run.lease import AttemptLease, hold
from autopilot.run.progress import ProgressPublisher
from autopilot.run.quiet_logs import quiet_known_outcomes
from autopilot.settings import get_settings
from autopilot.worker.executors import register_executor

logger = logging.getLogger(__name__)


def begin_attempt(simulation_id: str, generation: int | None, options: RunOptions) -> StepContext:
    """Resolve the generation, tag and claim this run; raises `Superseded` or `Refused`."""
    quiet_known_outcomes()
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    with get_client(sync_client=True) as client:
        resolved = resolve_generation(client, simulation_id, generation)
        if flow_run is not None:
            settings = get_settings()
            register_executor(settings.data_dir.resolve(), flow_run.id)
            current = client.read_flow_run(flow_run.id)
            if current.deployment_id is not None:
                # Only deployment runs are judged by workers (and can be taken over).
                lease = AttemptLease(
                    flow_run.id,
                    current.run_count,
                    short_state(current.state_id),
                    settings.host_id,
                    settings.lease_renew_every,
                )
                hold(lease)
            tag_run(client, current, simulation_id, resolved.number)
            claim(client, flow_run.id, simulation_id, resolved.number)
    return StepContext(
        simulation_id=simulation_id,
        generation=resolved.number,
        generation_id=resolved.identity,
        options=options,
        from_step=resolved.from_step,
        steps_from_generation=resolved.steps_from_generation,
    )


def record_failure(ctx: StepContext, failure: StepFailed) -> None:
    """Show the failure as the run's last progress, written before the run is Failed: status
    then names the step that really failed even while Prefect's task-run records lag. The
    step also goes into a label of the run, where a notification's template reads it."""
    ProgressPublisher(ctx.simulation_id, "failed").publish(
        0,
        f"failed at {failure.step}: {failure.message}",
        {"error_step": failure.step, "error": failure.message},
    )
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(context.flow_run.id, {ERROR_STEP_LABEL: failure.step})
    except Exception as exc:  # the failure itself is already recorded above
        logger.warning("could not label the failed step: %s", exc)


def flow_run_name() -> str:
    """`{simulation_id}-g{generation}`, or the id alone until the generation is resolved."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    simulation_id = parameters.get("simulation_id", "?")
    generation = parameters.get("generation")
    return simulation_id if generation is None else f"{simulation_id}-g{generation}"
