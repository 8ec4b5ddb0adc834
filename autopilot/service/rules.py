"""The rules of the seven operations: pure functions from (config, runs) to a decision.

No Prefect, no HTTP (the clock only as a parameter): `operations` reads, asks these, then
writes what they decided. tests/service/test_rules.py checks every branch on hand-made
snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from prefect.client.schemas.objects import StateType

from autopilot import names
from autopilot.api_models import Mode
from autopilot.errors import Conflict, InvalidInput
from autopilot.models import RESTARTABLE_STEPS, STARTED_STEPS, SimulationConfig, Step, steps_before
from autopilot.service.projection import RunSnapshot, is_active

TERMINAL_UNSUCCESSFUL = frozenset({StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})
# A run the runner is about to start: its state must not be forced under it.
NOT_YET_RUNNING = frozenset({StateType.SCHEDULED, StateType.PENDING})


# Said by the service and by the shim's request validation alike.
SIMULATION_ID_RULE = (
    "simulation_id must be 1-200 letters, digits, '_', '.', ':' or '-' "
    "(starting with a letter or digit)"
)


def check_simulation_id(simulation_id: str) -> None:
    """Ids go into backend URLs and Prefect names: letters, digits, `_ . : -` only."""
    if not names.is_valid_simulation_id(simulation_id):
        raise InvalidInput(
            SIMULATION_ID_RULE,
            error_code="INVALID_SIMULATION_ID",
        )


def parse_mode(mode: str | None) -> Mode:
    """`auto` or `manual`, case-insensitive; anything else is invalid input."""
    if mode is None or not str(mode).strip():
        raise InvalidInput("mode is required: 'auto' or 'manual'", error_code="INVALID_MODE")
    try:
        return Mode(str(mode).strip().lower())
    except ValueError:
        raise InvalidInput(
            f"mode must be 'auto' or 'manual', not {mode!r}", error_code="INVALID_MODE"
        ) from None


def current(config: SimulationConfig, latest: RunSnapshot | None) -> RunSnapshot | None:
    """The latest run if it belongs to the current generation (older ones are history)."""
    return latest if latest is not None and latest.generation >= config.generation else None


def started_by_current_generation(config: SimulationConfig, latest: RunSnapshot | None) -> bool:
    """Whether the current generation's run got as far as starting the simulation: only then
    is stopping the simulation on the backend ours to do (never one started by hand)."""
    run = current(config, latest)
    return run is not None and any(step.name in STARTED_STEPS for step in run.steps)


def next_generation(config: SimulationConfig, latest: RunSnapshot | None, begun_by: str) -> None:
    """Move the config on to a new generation with a new identity (in place)."""
    config.generation = max(config.generation, latest.generation if latest else 0) + 1
    config.generation_id = names.new_generation_id()
    config.begun_by = begun_by
    config.from_step = config.steps_from_generation = None


# -- start ----------------------------------------------------------------------------------


class StartAction(StrEnum):
    RETURN_ACTIVE = "return the active run"
    CREATE = "create a run"


@dataclass(frozen=True)
class StartPlan:
    action: StartAction
    # Begin a new generation first (forced, or the current one completed).
    new_generation: bool = False
    # A forced start over a run that is still active: cancel it first.
    cancel_active: bool = False
    # The generation has no identity yet (its first start): give it one.
    needs_identity: bool = False
    # Failed attempts of the generation so far: part of the idempotency key.
    attempt: int = 0


def plan_start(
    config: SimulationConfig,
    runs: list[RunSnapshot],
    force: bool,
    now: datetime | None = None,
) -> StartPlan:
    """What a start does, given the config and the runs newest first (in either mode:
    manual mode runs one step at a time, autopilot/run/confirm.py)."""
    latest = runs[0] if runs else None
    # A run of an older generation is being cancelled (stop/reset): it does not block.
    active = is_active(current(config, latest), now)
    if active and not force:
        return StartPlan(StartAction.RETURN_ACTIVE)
    completed = (
        latest is not None
        and latest.generation == config.generation
        and latest.state_type == StateType.COMPLETED
    )
    if force or completed:
        return StartPlan(StartAction.CREATE, new_generation=True, cancel_active=active)
    attempt = sum(
        1
        for run in runs
        if run.generation == config.generation and run.state_type in TERMINAL_UNSUCCESSFUL
    )
    return StartPlan(
        StartAction.CREATE, needs_identity=config.generation_id is None, attempt=attempt
    )


# -- start from a step -------------------------------------------------------------------------


def parse_from_step(from_step: str | None, force: bool) -> Step | None:
    """The step a forced start begins at (None: the first); refused unless forced, as it
    always begins a new generation."""
    if from_step is None:
        return None
    named = {step.value: step for step in RESTARTABLE_STEPS}
    step = named.get(str(from_step).strip().lower())
    if step is None:
        raise InvalidInput(
            f"from_step must be one of {', '.join(named)}, not {from_step!r}",
            error_code="INVALID_STEP",
        )
    if not force:
        raise InvalidInput(
            "from_step begins a new generation: send it with force=true",
            error_code="FROM_STEP_NEEDS_FORCE",
        )
    return None if step is Step.PREPARING else step


def generation_to_take_from(finished: dict[int, set[str]], from_step: Step) -> int:
    """The latest generation that finished every step before `from_step` (their results are
    taken as done); STEP_NOT_REACHED names the first step no such generation finished."""
    needed = [step.value for step in steps_before(from_step)]
    complete = [gen for gen, done in finished.items() if all(step in done for step in needed)]
    if complete:
        return max(complete)

    def reached(gen: int) -> tuple[int, int]:
        return sum(step in finished[gen] for step in needed), gen

    furthest = max(finished, key=reached, default=None)
    done = finished.get(furthest, set()) if furthest is not None else set()
    missing = next(step for step in needed if step not in done)
    where = "no generation has run" if furthest is None else f"generation {furthest} got furthest"
    raise Conflict(
        f"cannot start from {from_step.value}: step {missing} never finished ({where}); "
        f"from_step={from_step.value} needs {', '.join(needed)} finished in one generation",
        error_code="STEP_NOT_REACHED",
    )


def keeps_simulation_running(from_step: Step | None) -> bool:
    """A restart that takes the start as done watches the simulation already running: the
    run it replaces is cancelled without stopping the simulation."""
    return from_step is not None and Step.STARTING in steps_before(from_step)


# -- pause, resume, stop ----------------------------------------------------------------------


class PauseAction(StrEnum):
    SUSPEND = "suspend"
    WAIT_UNTIL_RUNNING = "wait until it runs, then suspend"


def check_pause(
    config: SimulationConfig, latest: RunSnapshot | None
) -> tuple[PauseAction, RunSnapshot]:
    """The run to pause, and whether now or once it runs; refused if it cannot be paused."""
    run = current(config, latest)
    if run is None:
        raise Conflict("auto-pilot is not active", error_code="NOT_ACTIVE")
    if run.state_type == StateType.PAUSED:
        raise Conflict("auto-pilot is already paused", error_code="ALREADY_PAUSED")
    if run.state_type in NOT_YET_RUNNING:
        return PauseAction.WAIT_UNTIL_RUNNING, run
    check_running(run.state_type, run.state_name)
    return PauseAction.SUSPEND, run


def check_running(state_type: StateType, state_name: str) -> None:
    """A pause suspends a running run only."""
    if state_type != StateType.RUNNING:
        raise Conflict(
            f"auto-pilot cannot pause while {state_name.lower()}; try again when it runs",
            error_code="NOT_ACTIVE",
        )


def check_resume(config: SimulationConfig, latest: RunSnapshot | None) -> RunSnapshot:
    """The paused run of the current generation, or NOT_PAUSED."""
    run = current(config, latest)
    if run is None or run.state_type != StateType.PAUSED:
        raise Conflict("auto-pilot is not paused", error_code="NOT_PAUSED")
    return run


def stop_begins_a_generation(config: SimulationConfig, latest: RunSnapshot | None) -> bool:
    """A stop ends the current generation when it has a run (a second stop changes nothing)."""
    return current(config, latest) is not None
