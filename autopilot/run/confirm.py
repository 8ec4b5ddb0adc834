"""MANUAL mode: before each step after the first it ran, the run waits for a person's
confirmation.

The wait is Prefect's suspension with `wait_for_input`: the process exits (a wait of days costs
a row), the Prefect UI shows a Resume form with an optional note, and `resume` through the shim
or the CLI submits the same form. The resumed run comes back through its finished steps (cache
hits) to the same boundary, where Prefect hands over the submitted input instead of suspending
again (the pause key is used once per run), and runs exactly one more step.

Whether the boundary before a step waits is decided from durable facts, so a crash, a restart
or a person's pause never skips a wait nor asks twice:
- the mode, read at the boundary (`config mode=manual` during an auto run waits after the
  current step; `mode=auto` while waiting runs the rest unattended after the next resume);
- the step has no task run in this flow run yet (a boundary passed before is not waited at);
- this flow run executed a step already (not a cache hit, not taken as done; written to a
  label of the run, the last one, as each step ends): `start` runs the next step without
  asking.
A boundary confirmed once is never waited at again: Prefect uses a pause key once per run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from autopilot import names
from autopilot.api_models import Mode
from autopilot.models import Step, StepContext
from autopilot.run import crashpoints
from autopilot.run.claim import read_config
from autopilot.settings import get_settings

logger = logging.getLogger(__name__)

# The steps this run executed (not cache hits), as known to this process. The task-run
# records that say so reach Prefect through the event pipeline a moment after the step
# returned, and a process killed meanwhile never sends them: each one is also written to a
# label of the flow run at once.
_executed_here: set[str] = set()


class StepConfirmation(RunInput):
    """The Resume form of a manual-mode auto-pilot waiting before a step."""

    note: str = Field(default="", description="Optional: kept with the run's logs and input.")


def executed(ctx: StepContext, step_name: str) -> None:
    """Note that this run executed `step_name` (called by the step driver when a step
    completed without a cache hit)."""
    _executed_here.add(step_name)
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            # Only a manual-mode boundary reads the label, and writing it costs about 2 s
            # (a label PATCH on Prefect's SQLite, measured 1.7-2.4 s) after every step: in
            # auto mode that delayed each next step. Left out: a switch to manual mode in the
            # instant between this step's end and a kill of this process (the restarted run
            # then has only the task-run records to tell that a step ran).
            config = read_config(client, ctx.simulation_id)
            if config is None or config.mode is not Mode.MANUAL:
                return
            # One write, no read: what a boundary needs is that a step ran, and the steps
            # taken as done (which `_executed_steps` drops) only ever come before the ones
            # that run.
            client.update_flow_run_labels(
                context.flow_run.id, {names.EXECUTED_STEPS_LABEL: step_name}
            )
    except Exception as exc:  # the task-run records still tell, a moment later
        logger.warning("could not record step %s as executed: %s", step_name, exc)


def _labelled(labels: Mapping[str, Any] | None) -> set[str]:
    """The last step the run executed, as its label says (empty: none yet)."""
    value = (labels or {}).get(names.EXECUTED_STEPS_LABEL)
    return {str(value)} if value else set()


def _executed_steps(
    ctx: StepContext, task_runs: list[TaskRun], labels: Mapping[str, Any] | None
) -> set[str]:
    found = set(_executed_here) | _labelled(labels)
    for run in task_runs:
        if run.state is not None and run.state.is_completed() and run.state.name != "Cached":
            found.add(names.step_of_task_run(run.name))
    return {name for name in found if name and not ctx.taken_as_done(Step(name))}


def needs_confirmation(
    mode: Mode, step: Step, ctx: StepContext, seen: set[str], executed_steps: set[str]
) -> bool:
    """Pure: whether the boundary before `step` waits (see the module's rules)."""
    return (
        mode is Mode.MANUAL
        and not ctx.taken_as_done(step)
        and step.value not in seen
        and bool(executed_steps)
    )


def confirm_before(ctx: StepContext, step: Step) -> None:
    """In manual mode, suspend before `step` until a person confirms it; returns at once
    otherwise, and when the confirmation was given (the resumed run passing by again)."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is None:
        return
    crashpoints.reached(get_settings().data_dir, ctx.simulation_id, "step-boundary")
    with get_client(sync_client=True) as client:
        config = read_config(client, ctx.simulation_id)
        if config is None or config.mode is not Mode.MANUAL:
            return
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        )
        labels = client.read_flow_run(flow_run.id).labels
    seen = {names.step_of_task_run(run.name) for run in task_runs}
    executed_steps = _executed_steps(ctx, task_runs, labels)
    if not needs_confirmation(config.mode, step, ctx, seen, executed_steps):
        return
    if flow_run.deployment_id is None:
        logger.warning("manual mode needs a deployment run to wait in: %s runs on", step.value)
        return
    get_run_logger().info("manual mode: waiting for a confirmation to run %s", step.value)
    confirmation = suspend_flow_run(
        wait_for_input=StepConfirmation, key=names.confirm_key(step.value)
    )
    note = f": {confirmation.note}" if confirmation.note else ""
    get_run_logger().info("manual mode: %s confirmed%s", step.value, note)
