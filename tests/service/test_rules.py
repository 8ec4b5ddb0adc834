"""The operations' rules on hand-made snapshots: no Prefect, no HTTP, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopilot.api_models import Mode
from autopilot.errors import Conflict, InvalidInput
from autopilot.models import SimulationConfig
from autopilot.service.projection import STALE_CRASH_SECONDS, RunSnapshot, StepRecord
from autopilot.service.rules import (
    PauseAction,
    StartAction,
    StartPlan,
    check_pause,
    check_resume,
    check_simulation_id,
    next_generation,
    parse_mode,
    plan_start,
    started_by_current_generation,
    stop_begins_a_generation,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def run(
    state: str, generation: int = 0, steps: tuple[str, ...] = (), age: float = 0
) -> RunSnapshot:
    return RunSnapshot(
        flow_run_id="00000000-0000-0000-0000-000000000001",
        generation=generation,
        state_type=state,
        state_name=state.title(),
        state_message=None,
        state_timestamp=NOW - timedelta(seconds=age),
        created=NOW,
        start_time=None,
        end_time=None,
        run_count=1,
        steps=[
            StepRecord(name=step, state_type="COMPLETED", state_name="Completed") for step in steps
        ],
    )


def auto(generation: int = 0, generation_id: str | None = "abc") -> SimulationConfig:
    return SimulationConfig(mode=Mode.AUTO, generation=generation, generation_id=generation_id)


def code(raised: pytest.ExceptionInfo[BaseException]) -> str:
    return getattr(raised.value, "error_code", "")


# -- start ------------------------------------------------------------------------------------


def test_a_manual_simulation_starts_like_an_auto_one():
    plan = plan_start(SimulationConfig(mode=Mode.MANUAL), [], force=False, now=NOW)
    assert plan == StartPlan(StartAction.CREATE, needs_identity=True, attempt=0)


def test_the_first_start_creates_a_run_and_gives_the_generation_an_identity():
    plan = plan_start(auto(generation_id=None), [], force=False, now=NOW)
    assert plan == StartPlan(StartAction.CREATE, needs_identity=True, attempt=0)


@pytest.mark.parametrize("state", ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"])
def test_an_active_run_is_returned_not_doubled(state: str):
    plan = plan_start(auto(), [run(state)], force=False, now=NOW)
    assert plan.action is StartAction.RETURN_ACTIVE


def test_a_crashed_run_about_to_be_restarted_is_active_and_a_stale_one_is_not():
    fresh = plan_start(auto(), [run("CRASHED", age=1)], force=False, now=NOW)
    assert fresh.action is StartAction.RETURN_ACTIVE
    stale = plan_start(auto(), [run("CRASHED", age=STALE_CRASH_SECONDS + 1)], False, now=NOW)
    assert stale == StartPlan(StartAction.CREATE, attempt=1)


def test_after_failed_attempts_the_generation_goes_on_with_the_next_attempt():
    runs = [run("FAILED"), run("CANCELLED"), run("FAILED", generation=-1), run("COMPLETED", -1)]
    plan = plan_start(auto(), runs, force=False, now=NOW)
    assert plan == StartPlan(StartAction.CREATE, attempt=2)


def test_a_completed_generation_starts_a_new_one():
    plan = plan_start(auto(), [run("COMPLETED")], force=False, now=NOW)
    assert plan == StartPlan(StartAction.CREATE, new_generation=True)


def test_force_over_an_active_run_cancels_it_and_starts_a_new_generation():
    plan = plan_start(auto(), [run("RUNNING")], force=True, now=NOW)
    assert plan == StartPlan(StartAction.CREATE, new_generation=True, cancel_active=True)


def test_a_run_of_an_older_generation_does_not_block_a_start():
    # Being cancelled after a stop or reset moved the generation on.
    plan = plan_start(auto(generation=2), [run("CANCELLING", generation=1)], False, now=NOW)
    assert plan == StartPlan(StartAction.CREATE, attempt=0)


def test_next_generation_moves_past_the_newest_run_with_a_new_identity():
    config = auto(generation=1, generation_id="old")
    next_generation(config, run("RUNNING", generation=3), "reset")
    assert config.generation == 4 and config.generation_id not in {None, "old"}
    assert config.begun_by == "reset"


# -- pause, resume, stop ------------------------------------------------------------------------


def test_pause_suspends_a_running_run_and_waits_for_one_about_to_run():
    running, scheduled = run("RUNNING"), run("SCHEDULED")
    assert check_pause(auto(), running) == (PauseAction.SUSPEND, running)
    assert check_pause(auto(), scheduled) == (PauseAction.WAIT_UNTIL_RUNNING, scheduled)


@pytest.mark.parametrize(
    ("latest", "expected"),
    [
        (None, "NOT_ACTIVE"),
        (run("RUNNING", generation=-1), "NOT_ACTIVE"),
        (run("PAUSED"), "ALREADY_PAUSED"),
        (run("COMPLETED"), "NOT_ACTIVE"),
        (run("CANCELLING"), "NOT_ACTIVE"),
    ],
)
def test_pause_refusals(latest: RunSnapshot | None, expected: str):
    with pytest.raises(Conflict) as raised:
        check_pause(auto(), latest)
    assert code(raised) == expected


def test_resume_takes_the_paused_run_of_this_generation_only():
    paused = run("PAUSED")
    assert check_resume(auto(), paused) is paused
    for latest in (None, run("RUNNING"), run("PAUSED", generation=-1)):
        with pytest.raises(Conflict) as raised:
            check_resume(auto(), latest)
        assert code(raised) == "NOT_PAUSED"


def test_only_a_run_of_this_generation_that_reached_starting_started_the_simulation():
    assert not started_by_current_generation(auto(), None)
    assert not started_by_current_generation(auto(), run("RUNNING", steps=("preparing",)))
    assert started_by_current_generation(auto(), run("RUNNING", steps=("preparing", "starting")))
    older = run("RUNNING", generation=-1, steps=("starting",))
    assert not started_by_current_generation(auto(), older)


def test_a_second_stop_does_not_begin_another_generation():
    assert stop_begins_a_generation(auto(), run("RUNNING"))
    assert not stop_begins_a_generation(auto(generation=1), run("CANCELLED", generation=0))
    assert not stop_begins_a_generation(auto(), None)


# -- input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["auto", " AUTO ", "Manual"])
def test_modes_are_read_case_insensitively(given: str):
    assert parse_mode(given).value == given.strip().lower()


@pytest.mark.parametrize("given", [None, "", "  ", "automatic"])
def test_other_modes_are_invalid(given: str | None):
    with pytest.raises(InvalidInput) as raised:
        parse_mode(given)
    assert code(raised) == "INVALID_MODE"


@pytest.mark.parametrize("simulation_id", ["", "-x", "a/b", "a b", "s" * 201])
def test_ids_outside_the_alphabet_are_invalid(simulation_id: str):
    with pytest.raises(InvalidInput) as raised:
        check_simulation_id(simulation_id)
    assert code(raised) == "INVALID_SIMULATION_ID"
