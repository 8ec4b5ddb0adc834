"""A step that yields to a pause ends Cancelled and named "Paused" (the Prefect UI draws it
grey, not red as a failure), and writes no checkpoint: the next call runs it again, and only a
finished step is found in its checkpoint afterwards. Against the session's Prefect server."""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow

from autopilot.models import PrepareResult, Step, StepContext
from autopilot.run.control import StepInterrupted, interruption_of
from tasks._step import step_task

BODY_RUNS: list[str] = []


@step_task(Step.PREPARING, retry_outages=False)
def yields_once(ctx: StepContext) -> PrepareResult:
    BODY_RUNS.append(ctx.generation_id)
    if BODY_RUNS.count(ctx.generation_id) == 1:
        raise StepInterrupted("paused")
    return PrepareResult(simulation_id=ctx.simulation_id, task_id="t1")


@flow
def three_calls(ctx: StepContext) -> list[Any]:
    return [yields_once(ctx, return_state=True) for _ in range(3)]


def test_a_yielding_step_ends_paused_and_leaves_no_checkpoint(prefect_server: None) -> None:
    ctx = StepContext(simulation_id="sim_yield", generation_id=uuid.uuid4().hex[:12])
    first, second, third = three_calls(ctx)

    assert (first.type.value, first.name) == ("CANCELLED", "Paused")
    interrupted = interruption_of(first)
    assert interrupted is not None and interrupted.reason == "paused"
    # Not written as the step's result: the second call ran the body, the third found it.
    assert (second.type.value, second.name) == ("COMPLETED", "Completed")
    assert (third.type.value, third.name) == ("COMPLETED", "Cached")
    assert third.result().task_id == "t1"
    assert BODY_RUNS.count(ctx.generation_id) == 2
    assert interruption_of(second) is None
