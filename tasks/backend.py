"""What every step shares: the backend client, the checkpoint key, and the retry rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.context import TaskRunContext

from autopilot import names
from autopilot.client import MultimoClient
from autopilot.errors import BackendUnavailable
from autopilot.models import Step, StepContext
from autopilot.settings import get_settings

P = ParamSpec("P")
R = TypeVar("R")

CHECKPOINT_SERIALIZER = "json"
# Backend outages are ridden out inside each step; a task-level retry only covers the rest.
RETRY_DELAYS: list[float] = [2.0, 5.0, 15.0]


def backend_client() -> MultimoClient:
    """A client for the configured backend."""
    return MultimoClient.from_settings(get_settings())


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


def checkpointed_step(
    step: Step, per_attempt: bool = False
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The decorator of a side-effecting step: persisted result (JSON) under the step's
    checkpoint key, retried (after 2, 5, 15 s) only when the backend was unavailable."""
    return task(
        name=step.value,
        task_run_name=names.task_run_name(step.value),
        persist_result=True,
        # Checkpoints are data (JSON of the step's pydantic model), not pickles: readable by a
        # person and by the next version, and no code runs when one is loaded.
        result_serializer=CHECKPOINT_SERIALIZER,
        cache_key_fn=cache_key_for(step, per_attempt),
        retries=3,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=retry_if_unavailable,
    )


def retry_if_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a step only when the backend was unavailable; rejections and failures are final."""
    try:
        state.result()
    except BackendUnavailable:
        return True
    except Exception:
        return False
    return False
