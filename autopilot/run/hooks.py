"""The flow's state hooks, which Prefect runs in the runner (serving) process."""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Flow, FlowRun, State
from prefect.utilities.asyncutils import run_coro_as_sync

from autopilot import names
from autopilot.client import MultimoClient
from autopilot.errors import AutopilotError
from autopilot.models import STARTED_STEPS
from autopilot.run.claim import read_config
from autopilot.run.lease import fence
from autopilot.settings import get_settings
from autopilot.worker.shutdown import is_worker_shutdown

logger = logging.getLogger(__name__)


def restart_crashed_run(flow: Flow, flow_run: FlowRun, state: State[Any]) -> None:
    """on_crashed: restart the run on its own id, capped."""
    from autopilot.worker.recovery import restart_or_give_up

    async def restart() -> None:
        async with get_client() as client:
            await restart_or_give_up(client, flow_run.id, get_settings().max_crash_restarts)

    run_coro_as_sync(restart())


def reached_starting(flow_run_id: Any) -> bool:
    """Whether the run got as far as starting the simulation (so stopping it is ours to do)."""
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return any(names.step_of_task_run(run.name) in STARTED_STEPS for run in task_runs)


def stop_backend_simulation(flow: Flow, flow_run: FlowRun, state: State[Any]) -> None:
    """on_cancellation: a stopped auto-pilot also stops the simulation it started.

    Not when the cancellation is the worker shutting down (SIGTERM, a restart, a deploy):
    nobody asked to stop, so the simulation runs on and the next worker resumes the run
    (`recovery.resume_shut_down`)."""
    simulation_id = flow_run.parameters.get("simulation_id")
    if is_worker_shutdown(state):
        logger.warning(
            "worker shutting down: simulation %s keeps running; the next worker resumes %s",
            simulation_id,
            flow_run.id,
        )
        return
    if simulation_id and reached_starting(flow_run.id):
        stop_simulation_of(simulation_id, int(flow_run.parameters.get("generation") or 0))


def superseded(simulation_id: str, generation: int) -> bool:
    """Whether the simulation has moved on to a newer generation (stop, reset, force start)."""
    with get_client(sync_client=True) as client:
        config = read_config(client, simulation_id)
    return config is not None and config.generation > generation


def stop_simulation_of(simulation_id: str, generation: int) -> None:
    """Stop the simulation unless a newer generation owns it: the service stopped it already,
    and a late stop must not hit the new run."""
    if superseded(simulation_id, generation):
        return
    # In the flow's own process the stop is fenced; in the runner's hooks there is no lease.
    with MultimoClient.from_settings(get_settings(), before_change=fence) as client:
        try:
            if client.run_status(simulation_id).runner_status in {"running", "paused", "starting"}:
                client.stop(simulation_id)
        except AutopilotError as exc:
            logger.warning("could not stop simulation %s: %s", simulation_id, exc)
