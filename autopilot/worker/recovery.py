"""Crash recovery for the serving process: restart dead runs on the same flow run id, capped.

- A run whose process died while its runner lived is Crashed: restart it (hook or sweep).
- At start-up, runs of the deployment left RUNNING/PENDING by a dead runner are marked Crashed
  and restarted, unless a living local process still executes them.
- While serving, a RUNNING run whose recorded local process is gone in two sweeps running
  (a flow process that outlived its runner and died later: no runner watches it) is marked
  Crashed and restarted.
- A run a worker shutdown cancelled (not a stop: autopilot/worker/shutdown.py) is resumed.
- Each Crashed state in a run's history counts as one death; past `max_restarts` the run is
  set Failed with the reason, so a run that crashes its process every time does not loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed, Failed, Scheduled

from autopilot.settings import get_settings
from autopilot.worker.executors import has_executor_record, living_executor
from autopilot.worker.shutdown import is_worker_shutdown

logger = logging.getLogger(__name__)

RESTART_STATE_NAME = "AwaitingRestart"
RESUMED_STATE_NAME = "AwaitingResume"
# At start-up, runs a worker shutdown cancelled this long ago are still resumed (a worker down
# for longer was retired); a sweep only looks back a few of its own intervals.
SHUTDOWN_LOOK_BACK = timedelta(days=7)


def restart_delay(recent_crashes: int) -> float:
    """At once after a first death, then 2, 4, 8 … 60 s: a process that died because something
    it needs is down (the Prefect server restarting) should not start straight into it again."""
    return 0.0 if recent_crashes <= 1 else float(min(2 ** (recent_crashes - 1), 60))


async def restart_or_give_up(
    client: PrefectClient, flow_run_id: UUID, max_restarts: int, window: float | None = None
) -> bool:
    """Reschedule a crashed run on its own id; True if restarted, False if it was given up.

    Only deaths within the last `window` seconds count against `max_restarts`: a run that
    dies again and again is given up, a 72-hour run that met three unrelated crashes is not.
    """
    window = get_settings().crash_window if window is None else window
    now = datetime.now(UTC)
    history = await client.read_flow_run_states(flow_run_id)
    crashes = [
        state
        for state in history
        if state.type == StateType.CRASHED
        and (state.timestamp is None or (now - state.timestamp).total_seconds() <= window)
    ]
    if len(crashes) > max_restarts:
        await client.set_flow_run_state(
            flow_run_id,
            Failed(
                message=f"the run's process died {len(crashes)} times within {window:.0f}s; "
                f"gave up after {max_restarts} automatic restarts"
            ),
            force=True,
        )
        logger.error("flow run %s crashed %s times: giving up", flow_run_id, len(crashes))
        return False
    delay = restart_delay(len(crashes))
    await client.set_flow_run_state(
        flow_run_id,
        Scheduled(scheduled_time=now + timedelta(seconds=delay), name=RESTART_STATE_NAME),
        force=True,
    )
    logger.warning(
        "flow run %s crashed (%s/%s): restarting in %.0fs",
        flow_run_id,
        len(crashes),
        max_restarts,
        delay,
    )
    return True


def _deployment_runs(
    deployment_id: UUID, states: list[StateType], ended_after: datetime | None = None
) -> dict[str, object]:
    run_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)))
    if ended_after is not None:
        run_filter.end_time = FlowRunFilterEndTime(after_=ended_after)  # type: ignore[arg-type]
    return {
        "deployment_filter": DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        "flow_run_filter": run_filter,
    }


async def recover_orphans(
    client: PrefectClient, deployment_id: UUID, data_dir: Path, max_restarts: int
) -> list[UUID]:
    """At start-up: restart runs whose runner died with them; leave living executors alone."""
    restarted: list[UUID] = []
    runs = await client.read_flow_runs(
        **_deployment_runs(deployment_id, [StateType.RUNNING, StateType.PENDING])  # type: ignore[arg-type]
    )
    for run in runs:
        if (pid := living_executor(data_dir, run.id)) is not None:
            logger.info("flow run %s is still executed by pid %s: left alone", run.id, pid)
            continue
        await client.set_flow_run_state(
            run.id, Crashed(message="its process died with the serving process"), force=True
        )
        if await restart_or_give_up(client, run.id, max_restarts):
            restarted.append(run.id)
    restarted.extend(await restart_crashed(client, deployment_id, max_restarts, min_age=0.0))
    restarted.extend(await resume_shut_down(client, deployment_id, SHUTDOWN_LOOK_BACK))
    return restarted


async def resume_shut_down(
    client: PrefectClient, deployment_id: UUID, look_back: timedelta
) -> list[UUID]:
    """Reschedule, on their own ids, the runs a worker shutdown cancelled within `look_back`.

    Not counted as crashes: the run did nothing wrong. A run whose simulation moved on
    meanwhile (stop, reset) finds itself superseded when it begins and ends without acting.
    """
    runs = await client.read_flow_runs(
        **_deployment_runs(  # type: ignore[arg-type]
            deployment_id, [StateType.CANCELLED], ended_after=datetime.now(UTC) - look_back
        )
    )
    resumed = []
    for run in runs:
        if not is_worker_shutdown(run.state):
            continue
        await client.set_flow_run_state(run.id, Scheduled(name=RESUMED_STATE_NAME), force=True)
        logger.warning("flow run %s was cancelled by a worker shutdown: resuming it", run.id)
        resumed.append(run.id)
    return resumed


async def restart_crashed(
    client: PrefectClient, deployment_id: UUID, max_restarts: int, min_age: float
) -> list[UUID]:
    """Restart Crashed runs of the deployment (those the crash hook did not get to)."""
    restarted: list[UUID] = []
    runs = await client.read_flow_runs(
        **_deployment_runs(deployment_id, [StateType.CRASHED])  # type: ignore[arg-type]
    )
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age)
    for run in runs:
        if run.state and run.state.timestamp and run.state.timestamp > cutoff:
            continue  # just crashed: the runner's hook is on it
        if await restart_or_give_up(client, run.id, max_restarts):
            restarted.append(run.id)
    return restarted


async def dead_running_runs(
    client: PrefectClient, deployment_id: UUID, data_dir: Path
) -> set[UUID]:
    """RUNNING runs whose recorded local process is gone (e.g. an orphan that died later)."""
    runs = await client.read_flow_runs(
        **_deployment_runs(deployment_id, [StateType.RUNNING])  # type: ignore[arg-type]
    )
    return {
        run.id
        for run in runs
        if has_executor_record(data_dir, run.id) and living_executor(data_dir, run.id) is None
    }


async def restart_dead(client: PrefectClient, run_ids: set[UUID], max_restarts: int) -> list[UUID]:
    """Mark the given dead RUNNING runs Crashed and restart them (capped)."""
    restarted = []
    for run_id in run_ids:
        run = await client.read_flow_run(run_id)
        if run.state is None or run.state.type != StateType.RUNNING:
            continue  # its runner noticed meanwhile
        await client.set_flow_run_state(
            run_id, Crashed(message="its process died after its runner"), force=True
        )
        if await restart_or_give_up(client, run_id, max_restarts):
            restarted.append(run_id)
    return restarted
