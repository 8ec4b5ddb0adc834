"""What every step shares: its decorator, the backend client, the checkpoint key, the retry rule."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar, cast

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.states import Cancelled, State
from prefect.transactions import get_transaction

from autopilot import names
from autopilot.client import MultimoClient
from autopilot.errors import BackendUnavailable
from autopilot.models import Step, StepContext
from autopilot.run.control import StepInterrupted
from autopilot.run.lease import fence
from autopilot.settings import get_settings

P = ParamSpec("P")
R = TypeVar("R")

Checkpoint = Literal["generation", "attempt"] | None

CHECKPOINT_SERIALIZER = "json"
# Backend outages are ridden out inside each step; a task-level retry only covers the rest.
RETRY_DELAYS: list[float] = [2.0, 5.0, 15.0]


def backend_client() -> MultimoClient:
    """A client for the configured backend, fenced: a process whose run was taken over ends
    before its next change to the backend."""
    return MultimoClient.from_settings(get_settings(), before_change=fence)


def checkpoint_key(ctx: StepContext, step: Step, attempt: str = "") -> str:
    """The step's checkpoint key: this generation's (its random identity included), or this
    attempt's when `attempt` (the flow run id) is given."""
    return names.step_cache_key(
        ctx.simulation_id, ctx.generation, ctx.generation_id, step.value, attempt
    )


def cache_key_for(
    step: Step, per_attempt: bool = False
) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """A `cache_key_fn` keyed on the step context (and the flow run, if `per_attempt`)."""

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        attempt = context.task_run.flow_run_id if per_attempt else None
        return checkpoint_key(parameters["ctx"], step, attempt.hex if attempt else "")

    return key_fn


def step_task(
    step: Step, *, checkpoint: Checkpoint = "generation", retry_outages: bool = True
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The one decorator of the five steps.

    `checkpoint`: "generation" persists the result (JSON) under the generation's checkpoint
    key, so a resumed or restarted run skips the finished step; "attempt" keys it on the flow
    run too (STARTING: a new attempt must look at the backend again); None for a step that
    only reads (MONITORING re-attaches and polls on after a resume). `retry_outages` retries
    the step (after 2, 5, 15 s) only when the backend was unavailable."""
    if checkpoint is None:
        # NO_CACHE: the flow persists results, which would otherwise give the task the
        # default policy (inputs + run id) and replay an "interrupted" result after a resume.
        caching: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
    else:
        caching = {
            "persist_result": True,
            # Checkpoints are data (JSON of the step's pydantic model), not pickles: readable
            # by a person and by the next version, and no code runs when one is loaded.
            "result_serializer": CHECKPOINT_SERIALIZER,
            "cache_key_fn": cache_key_for(step, per_attempt=checkpoint == "attempt"),
        }
    retrying: dict[str, Any] = (
        {
            "retries": 3,
            "retry_delay_seconds": RETRY_DELAYS,
            "retry_condition_fn": retry_if_unavailable,
        }
        if retry_outages
        else {}
    )
    make_task = task(
        name=step.value, task_run_name=names.task_run_name(step.value), **caching, **retrying
    )

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return make_task(_yields_without_failing(fn))

    return decorator


def _yields_without_failing(fn: Callable[P, R]) -> Callable[P, R]:
    """A step that yields to a pause or stop ends Cancelled and named for the reason ("Paused",
    "Stopping"), not Failed: the Prefect UI draws a failed step in red, which a person reads as
    an error, while the step goes on after a resume. The message keeps `StepInterrupted: …`
    (see `interruption_of`)."""

    @functools.wraps(fn)
    def step(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except StepInterrupted as interrupted:
            if (transaction := get_transaction()) is not None:
                # A returned state is a result to Prefect: without this, the step's checkpoint
                # would record the interrupted step as done.
                transaction.write_on_commit = False
            state: State[Any] = Cancelled(
                name=interrupted.reason.capitalize(),
                message=f"{type(interrupted).__name__}: {interrupted.message}",
            )
            return cast(R, state)

    return step


def retry_if_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a step only when the backend was unavailable; rejections and failures are final."""
    try:
        state.result()
    except BackendUnavailable:
        return True
    except Exception:
        return False
    return False
