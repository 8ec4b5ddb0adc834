"""Crash recovery, from any host: restart dead runs on their own flow run id, once, capped.

- A run whose process died while its runner lived is Crashed: restart it (hook or sweep).
- A RUNNING/PENDING run is dead when its lease lapsed (autopilot/worker/judge.py, any host),
  or, as a same-host shortcut, when its current lease names a process of *this* host that is
  gone (at start-up at once; while serving, in two sweeps running). Another host's run is
  never declared dead from this host.
- A run a worker shutdown cancelled (not a stop: autopilot/worker/shutdown.py) is resumed.
- Every takeover and every restart first claims the run's current state (`claim`): of several
  hosts noticing one death together, exactly one acts.
- Each death in a run's history (`deaths`: a Crashed state entered from a running or
  starting run, not the same death reported twice) counts once; past `max_restarts` the run
  is set Failed with the reason, so a run that crashes its process every time does not loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import ObjectAlreadyExists
from prefect.states import Crashed, Failed, Scheduled

from autopilot.names import TAKEOVER_PREFIX, takeover_variable_name
from autopilot.settings import get_settings
from autopilot.worker.judge import died_here
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


# A claim's holder acts within seconds; one older than this died before acting (the run is
# still in the claimed state) and may be claimed again. Read on the local clock against the
# server's timestamp: hosts' clocks must agree to well within this.
STALE_CLAIM = timedelta(seconds=120)
_MAX_CLAIM_ROUNDS = 20


async def claim(client: PrefectClient, state_id: UUID, stale: timedelta = STALE_CLAIM) -> bool:
    """Claim the right to act on a run in the state `state_id`; True for exactly one caller,
    on any host (variable names are unique: the second create is refused). A claim left stale
    by a holder that died before acting gives way to the next round's."""
    for round_ in range(_MAX_CLAIM_ROUNDS):
        name = takeover_variable_name(state_id, round_)
        try:
            await client.create_variable(
                VariableCreate(
                    name=name, value=get_settings().host_id, tags=[TAKEOVER_PREFIX.rstrip("-")]
                )
            )
        except ObjectAlreadyExists:
            held = await client.read_variable_by_name(name)
            if held is None or held.created is None:
                return False
            if datetime.now(UTC) - held.created < stale:
                return False
            continue
        return True
    return False


async def take_over(client: PrefectClient, run: FlowRun, reason: str, max_restarts: int) -> bool:
    """Mark a run judged dead Crashed and restart it, unless it moved on since it was judged
    (its state is no longer the one seen) or another host claimed it first."""
    judged = run.state
    if judged is None:
        return False
    current = await client.read_flow_run(run.id)
    if current.state is None or current.state.id != judged.id:
        return False
    if not await claim(client, judged.id):
        return False
    await client.set_flow_run_state(run.id, Crashed(message=reason), force=True)
    logger.warning("flow run %s: %s; taking it over", run.id, reason)
    return await restart_or_give_up(client, run.id, max_restarts)


def deaths(history: list[State[Any]]) -> list[State[Any]]:
    """The Crashed states that are deaths of a process: entered from a run that was running
    (or starting). A Crashed right after a restart was scheduled is the same death reported
    twice: Prefect's process worker reports a crash again after the crash hook restarted it."""
    ordered = sorted(history, key=lambda state: state.timestamp or datetime.min.replace(tzinfo=UTC))
    return [
        state
        for before, state in zip([None, *ordered], ordered, strict=False)
        if state.type == StateType.CRASHED
        and (before is None or before.type not in {StateType.SCHEDULED, StateType.CRASHED})
    ]


async def restart_or_give_up(
    client: PrefectClient, flow_run_id: UUID, max_restarts: int, window: float | None = None
) -> bool:
    """Reschedule a crashed run on its own id; True if restarted, False if it was given up
    or is not this caller's to restart (not Crashed any more, or claimed by another).

    Only deaths within the last `window` seconds count against `max_restarts`: a run that
    dies again and again is given up, a 72-hour run that met three unrelated crashes is not.
    """
    window = get_settings().crash_window if window is None else window
    run = await client.read_flow_run(flow_run_id)
    if run.state is None or run.state.type != StateType.CRASHED:
        return False
    if not await claim(client, run.state.id):
        return False
    now = datetime.now(UTC)
    history = await client.read_flow_run_states(flow_run_id)
    crashes = [
        state
        for state in deaths(history)
        if state.timestamp is None or (now - state.timestamp).total_seconds() <= window
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
    deployments: list[UUID], states: list[StateType], ended_after: datetime | None = None
) -> dict[str, object]:
    run_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)))
    if ended_after is not None:
        run_filter.end_time = FlowRunFilterEndTime(after_=ended_after)  # type: ignore[arg-type]
    return {
        "deployment_filter": DeploymentFilter(id=DeploymentFilterId(any_=deployments)),
        "flow_run_filter": run_filter,
    }


async def running_runs(client: PrefectClient, deployments: list[UUID]) -> list[FlowRun]:
    """The deployment's RUNNING and PENDING runs: those that should have a living process."""
    return await client.read_flow_runs(
        **_deployment_runs(deployments, [StateType.RUNNING, StateType.PENDING])  # type: ignore[arg-type]
    )


async def recover_orphans(
    client: PrefectClient, deployments: list[UUID], host_id: str, max_restarts: int
) -> list[UUID]:
    """At start-up: restart the runs whose process, on this host, died with its runner.

    Any other run, living or not, on this host or another, is left to the lease judge."""
    restarted: list[UUID] = []
    for run in await running_runs(client, deployments):
        if not died_here(run, host_id):
            continue
        reason = "its process died with the serving process"
        if await take_over(client, run, reason, max_restarts):
            restarted.append(run.id)
    restarted.extend(await restart_crashed(client, deployments, max_restarts, min_age=0.0))
    restarted.extend(await resume_shut_down(client, deployments, SHUTDOWN_LOOK_BACK))
    return restarted


async def resume_shut_down(
    client: PrefectClient, deployments: list[UUID], look_back: timedelta
) -> list[UUID]:
    """Reschedule, on their own ids, the runs a worker shutdown cancelled within `look_back`.

    Not counted as crashes: the run did nothing wrong. A run whose simulation moved on
    meanwhile (stop, reset) finds itself superseded when it begins and ends without acting.
    """
    runs = await client.read_flow_runs(
        **_deployment_runs(  # type: ignore[arg-type]
            deployments, [StateType.CANCELLED], ended_after=datetime.now(UTC) - look_back
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
    client: PrefectClient, deployments: list[UUID], max_restarts: int, min_age: float
) -> list[UUID]:
    """Restart Crashed runs of the deployment (those the crash hook did not get to)."""
    restarted: list[UUID] = []
    runs = await client.read_flow_runs(
        **_deployment_runs(deployments, [StateType.CRASHED])  # type: ignore[arg-type]
    )
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age)
    for run in runs:
        if run.state and run.state.timestamp and run.state.timestamp > cutoff:
            continue  # just crashed: the runner's hook is on it
        if await restart_or_give_up(client, run.id, max_restarts):
            restarted.append(run.id)
    return restarted


async def take_over_all(
    client: PrefectClient, runs: list[FlowRun], reason: str, max_restarts: int
) -> list[UUID]:
    """`take_over` each of `runs`; the ids of those restarted."""
    return [run.id for run in runs if await take_over(client, run, reason, max_restarts)]
