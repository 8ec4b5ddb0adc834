"""Manual mode's rules without Prefect: when a boundary waits, and how status shows a wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopilot import names
from autopilot.api_models import Mode, Status
from autopilot.models import SimulationConfig, Step, StepContext
from autopilot.run.confirm import needs_confirmation
from autopilot.service.projection import RunSnapshot, StepRecord, project

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CTX = StepContext(simulation_id="s", generation_id="g")


def test_the_first_step_a_start_runs_does_not_wait_and_the_next_one_does():
    assert not needs_confirmation(Mode.MANUAL, Step.STARTING, CTX, {"preparing"}, set())
    assert needs_confirmation(Mode.MANUAL, Step.STARTING, CTX, {"preparing"}, {"preparing"})


def test_auto_mode_never_waits():
    assert not needs_confirmation(Mode.AUTO, Step.STARTING, CTX, {"preparing"}, {"preparing"})


def test_a_boundary_passed_before_in_this_run_is_not_waited_at_again():
    # Resumed after a person's pause during monitoring: starting and monitoring ran already.
    seen = {"preparing", "starting", "monitoring"}
    executed = {"preparing", "starting"}
    assert not needs_confirmation(Mode.MANUAL, Step.STARTING, CTX, seen, executed)
    assert not needs_confirmation(Mode.MANUAL, Step.MONITORING, CTX, seen, executed)
    assert needs_confirmation(Mode.MANUAL, Step.GENERATING_REPORT, CTX, seen, executed)


def test_steps_taken_as_done_neither_wait_nor_count_as_run():
    ctx = StepContext(
        simulation_id="s", generation_id="g", from_step=Step.GENERATING_REPORT,
        steps_from_generation=1,
    )  # fmt: skip
    assert not needs_confirmation(Mode.MANUAL, Step.MONITORING, ctx, {"preparing"}, set())


@pytest.mark.parametrize("step", ["starting", "monitoring", "generating_report"])
def test_the_confirm_key_names_its_step_and_a_random_key_names_none(step: str):
    assert names.step_awaiting_confirmation(names.confirm_key(step)) == step
    assert names.step_awaiting_confirmation("3f1c2a") is None
    assert names.step_awaiting_confirmation(None) is None


def test_status_of_a_run_waiting_for_a_confirmation():
    waiting = RunSnapshot(
        flow_run_id="run-1", generation=0, state_type="PAUSED", state_name="Suspended",
        state_message=None, state_timestamp=NOW, created=NOW - timedelta(minutes=1),
        start_time=NOW - timedelta(minutes=1), end_time=None, run_count=1,
        awaiting_step="monitoring",
        steps=[StepRecord("preparing", "COMPLETED", "Completed"),
               StepRecord("starting", "COMPLETED", "Completed")],
    )  # fmt: skip
    status = project("s", SimulationConfig(mode=Mode.MANUAL), waiting, now=NOW)
    assert status.status is Status.PAUSED and status.awaiting_confirmation
    assert status.current_step == "monitoring" and status.last_completed_step == "starting"
    assert status.step_message == "waiting for a confirmation to run monitoring: resume to go on"
    assert status.paused_at == NOW

    waiting.awaiting_step = None  # a person's pause
    assert not project(
        "s", SimulationConfig(mode=Mode.MANUAL), waiting, now=NOW
    ).awaiting_confirmation
