"""The rules of a start from a chosen step, on hand-made records: no Prefect, no HTTP."""

from __future__ import annotations

import pytest

from autopilot.errors import Conflict, InvalidInput
from autopilot.models import SimulationConfig, Step, StepContext
from autopilot.service.rules import (
    generation_to_take_from,
    keeps_simulation_running,
    next_generation,
    parse_from_step,
)

ALL_FOUR = {"preparing", "starting", "monitoring", "generating_report"}


def test_a_step_is_named_as_the_api_spells_it_in_any_case():
    assert parse_from_step(" Generating_Report ", force=True) is Step.GENERATING_REPORT
    assert parse_from_step("monitoring", force=True) is Step.MONITORING
    # Beginning at the first step is a plain forced start.
    assert parse_from_step("preparing", force=True) is None
    assert parse_from_step(None, force=False) is None


@pytest.mark.parametrize("name", ["completed", "idle", "report", "", "generating report"])
def test_an_unknown_step_is_invalid_and_the_answer_lists_the_steps(name: str):
    with pytest.raises(InvalidInput) as refused:
        parse_from_step(name, force=True)
    assert refused.value.error_code == "INVALID_STEP"
    assert "preparing, starting, monitoring, generating_report" in refused.value.message


def test_a_step_without_force_is_refused_as_it_begins_a_generation():
    with pytest.raises(InvalidInput) as refused:
        parse_from_step("monitoring", force=False)
    assert refused.value.error_code == "FROM_STEP_NEEDS_FORCE"


def test_the_latest_generation_that_finished_the_steps_before_is_taken():
    finished = {
        1: ALL_FOUR,
        2: {"preparing", "starting"},  # failed while monitoring
        3: {"preparing"},
    }
    assert generation_to_take_from(finished, Step.GENERATING_REPORT) == 1
    assert generation_to_take_from(finished, Step.MONITORING) == 2
    assert generation_to_take_from(finished, Step.STARTING) == 3


def test_a_step_whose_predecessor_never_finished_names_the_missing_one():
    finished = {1: {"preparing", "starting"}, 2: {"preparing"}}
    with pytest.raises(Conflict) as refused:
        generation_to_take_from(finished, Step.GENERATING_REPORT)
    assert refused.value.error_code == "STEP_NOT_REACHED"
    assert "step monitoring never finished (generation 1 got furthest)" in refused.value.message


def test_with_no_run_at_all_the_first_step_is_missing():
    with pytest.raises(Conflict) as refused:
        generation_to_take_from({}, Step.STARTING)
    assert "step preparing never finished (no generation has run)" in refused.value.message


def test_only_a_restart_after_the_start_leaves_the_simulation_running():
    assert keeps_simulation_running(Step.MONITORING)
    assert keeps_simulation_running(Step.GENERATING_REPORT)
    assert not keeps_simulation_running(Step.STARTING)
    assert not keeps_simulation_running(None)


def test_a_step_context_takes_exactly_the_steps_before_as_done():
    ctx = StepContext(
        simulation_id="s", generation_id="g", from_step=Step.MONITORING, steps_from_generation=2
    )
    assert [step for step in Step if ctx.taken_as_done(step)] == [Step.PREPARING, Step.STARTING]
    assert ctx.taken_from() == "taken as done from generation 2"
    assert not any(StepContext(simulation_id="s", generation_id="g").taken_as_done(s) for s in Step)


def test_any_later_generation_begins_at_the_first_step_again():
    config = SimulationConfig(generation=3, from_step=Step.MONITORING, steps_from_generation=2)
    next_generation(config, None, "reset")
    assert (config.generation, config.from_step, config.steps_from_generation) == (4, None, None)
