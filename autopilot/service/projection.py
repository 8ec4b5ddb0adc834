"""Pure projection of Prefect's records onto the original status shape (no I/O here).

The service reads the simulation's variable, its latest flow run, that run's task runs and
its latest progress artifact into a `RunSnapshot`; `project` turns that into the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect.client.schemas.objects import StateType

from autopilot.api_models import AutopilotStatus, Mode, NoStateStatus, Status
from autopilot.models import SimulationConfig, Step

STEP_ORDER = [
    Step.PREPARING.value,
    Step.STARTING.value,
    Step.MONITORING.value,
    Step.GENERATING_REPORT.value,
    Step.COMPLETED.value,
]

_STATUS_BY_STATE = {
    StateType.SCHEDULED: Status.ACTIVE,
    StateType.PENDING: Status.ACTIVE,
    StateType.RUNNING: Status.ACTIVE,
    StateType.CANCELLING: Status.ACTIVE,
    # Crashed runs are restarted by the serving process; given-up ones become Failed.
    StateType.CRASHED: Status.ACTIVE,
    StateType.PAUSED: Status.PAUSED,
    StateType.COMPLETED: Status.COMPLETED,
    StateType.FAILED: Status.FAILED,
    StateType.CANCELLED: Status.INACTIVE,
}

ACTIVE_STATES = frozenset(
    {
        StateType.SCHEDULED,
        StateType.PENDING,
        StateType.RUNNING,
        StateType.CANCELLING,
        StateType.CRASHED,
        StateType.PAUSED,
    }
)

# The serving process restarts a Crashed run within seconds; one still Crashed after this long
# has nobody to restart it (e.g. a plain process work pool): it counts as failed.
STALE_CRASH_SECONDS = 120.0

_EXCEPTION_PREFIX = re.compile(
    r"^(Flow run encountered an exception[.:]?\s*)?"
    r"(\w*(Error|Exception|Failed|Unavailable|Rejected|NotFound): )?"
)


@dataclass
class StepRecord:
    """One task run: its step name and Prefect state."""

    name: str
    state_type: StateType
    state_name: str
    # Yielded to a pause/stop request (StepInterrupted): not a failure, the step goes on.
    interrupted: bool = False


@dataclass
class ProgressRecord:
    """The latest progress artifact: percent, decoded `{step, detail}`, and when written."""

    percent: int
    step: str | None
    detail: dict[str, Any]
    summary: str
    updated: datetime | None


@dataclass
class RunSnapshot:
    """What the status needs to know about one flow run."""

    flow_run_id: str
    generation: int
    state_type: StateType
    state_name: str
    state_message: str | None
    state_timestamp: datetime | None
    created: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    run_count: int
    # Suspended by a manual-mode wait: the step it waits to be confirmed for.
    awaiting_step: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    progress: ProgressRecord | None = None


def is_stale_crash(run: RunSnapshot, now: datetime | None = None) -> bool:
    """A Crashed run that no recovery picked up."""
    if run.state_type != StateType.CRASHED or run.state_timestamp is None:
        return False
    age = ((now or datetime.now(UTC)) - run.state_timestamp).total_seconds()
    return age > STALE_CRASH_SECONDS


def is_active(run: RunSnapshot | None, now: datetime | None = None) -> bool:
    """Scheduled, running, paused, being cancelled, or crashed and about to be restarted."""
    return run is not None and run.state_type in ACTIVE_STATES and not is_stale_crash(run, now)


def status_of(run: RunSnapshot, now: datetime | None = None) -> Status:
    """The auto-pilot status a run's Prefect state stands for."""
    if is_stale_crash(run, now):
        return Status.FAILED
    return _STATUS_BY_STATE.get(run.state_type, Status.INACTIVE)


def clean_error(message: str | None) -> str | None:
    """The backend's error text without Prefect's exception prefix."""
    if not message:
        return None
    return _EXCEPTION_PREFIX.sub("", message.strip(), count=1) or message


def _last_completed_step(run: RunSnapshot) -> str | None:
    if run.state_type == StateType.COMPLETED:
        # The run's own state is written before its steps' records, which reach Prefect's
        # database through the event pipeline: a Completed run has finished every step.
        return Step.COMPLETED.value
    done = {s.name for s in run.steps if s.state_type == StateType.COMPLETED}
    completed = [name for name in STEP_ORDER if name in done]
    return completed[-1] if completed else None


def _current_step(run: RunSnapshot, last_completed: str | None) -> str:
    if run.state_type == StateType.COMPLETED:
        return Step.COMPLETED.value
    if run.state_type == StateType.FAILED or is_stale_crash(run):
        return Step.FAILED.value
    running = [s.name for s in run.steps if s.state_type in {StateType.RUNNING, StateType.PENDING}]
    if running:
        return running[-1]
    if (
        run.steps
        and run.steps[-1].name in STEP_ORDER
        and run.steps[-1].state_type != StateType.COMPLETED
    ):
        return run.steps[-1].name
    if last_completed is None:
        return Step.PREPARING.value if run.state_type == StateType.RUNNING else Step.IDLE.value
    # Between two steps: the next one is about to start.
    index = STEP_ORDER.index(last_completed)
    return STEP_ORDER[min(index + 1, len(STEP_ORDER) - 1)]


def _error_step(run: RunSnapshot) -> str | None:
    # The flow records the failed step in its last progress before the run is Failed, so it
    # does not depend on the lagging task-run records.
    if run.progress is not None and run.progress.step == Step.FAILED.value:
        recorded = run.progress.detail.get("error_step")
        if isinstance(recorded, str) and recorded in STEP_ORDER:
            return recorded
    failed = [
        s.name
        for s in run.steps
        if s.state_type in {StateType.FAILED, StateType.CRASHED} and not s.interrupted
    ]
    return failed[-1] if failed else None


def no_state(simulation_id: str, mode: Mode = Mode.MANUAL) -> NoStateStatus:
    """The answer for an id with no auto-pilot history."""
    return NoStateStatus(
        simulation_id=simulation_id,
        mode=mode,
        status=Status.INACTIVE,
        available=True,
        message="auto-pilot has not run for this simulation",
    )


_BEGUN_BY = {"stop": "auto-pilot was stopped", "force": "auto-pilot is restarting"}


def project(
    simulation_id: str,
    config: SimulationConfig,
    run: RunSnapshot | None,
    now: datetime | None = None,
) -> AutopilotStatus:
    """The status of one simulation's auto-pilot from its latest run (if any)."""
    now = now or datetime.now(UTC)
    mode, generation = config.mode, config.generation
    if run is None or run.generation < generation:
        # Never run, or stopped or reset since: a clean slate that keeps the mode.
        message = "auto-pilot is idle"
        if run is not None:
            message = _BEGUN_BY.get(config.begun_by or "", "auto-pilot was reset")
        return AutopilotStatus(
            simulation_id=simulation_id, mode=mode, generation=generation, message=message
        )
    status = status_of(run, now)
    last_completed = _last_completed_step(run)
    current = _current_step(run, last_completed)
    progress, detail, message = 0, {}, run.state_name
    if run.progress is not None and run.progress.step == current:
        progress, detail, message = run.progress.percent, run.progress.detail, run.progress.summary
    awaiting = status is Status.PAUSED and run.awaiting_step is not None
    if awaiting:
        current, progress, detail = str(run.awaiting_step), 0, {}
        message = f"waiting for a confirmation to run {current}: resume to go on"
    if status is Status.COMPLETED:
        progress = 100
    failed = status is Status.FAILED
    heartbeat = run.progress.updated if run.progress else None
    heartbeat = max(filter(None, [heartbeat, run.state_timestamp]), default=None)
    return AutopilotStatus(
        simulation_id=simulation_id,
        mode=mode,
        status=status,
        current_step=current,
        step_progress=progress,
        step_message=message,
        progress_detail=detail,
        created_at=run.created,
        started_at=run.start_time,
        paused_at=run.state_timestamp if status is Status.PAUSED else None,
        completed_at=run.end_time if status is Status.COMPLETED else None,
        failed_at=(run.end_time or run.state_timestamp) if failed else None,
        error=(clean_error(run.state_message) or "the run's process died") if failed else None,
        error_step=(_error_step(run) or current) if failed else None,
        last_completed_step=last_completed,
        retry_count=max(0, run.run_count - 1),
        message=f"auto-pilot is {status.value} ({run.state_name})",
        flow_run_id=run.flow_run_id,
        generation=run.generation,
        heartbeat_at=heartbeat,
        heartbeat_age_seconds=(now - heartbeat).total_seconds() if heartbeat else None,
        awaiting_confirmation=awaiting,
    )
