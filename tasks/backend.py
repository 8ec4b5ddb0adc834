"""What every step shares: the backend client, the cache key, and the retry rule."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.context import TaskRunContext

from autopilot.client import MultimoClient
from autopilot.errors import BackendUnavailable
from autopilot.models import Step
from autopilot.settings import get_settings

P = ParamSpec("P")
R = TypeVar("R")

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# Backend outages are ridden out inside each step; a task-level retry only covers the rest.
RETRY_DELAYS: list[float] = [2.0, 5.0, 15.0]


def happened_since(timestamp: str | None, moment: datetime) -> bool | None:
    """Whether a backend ISO 8601 timestamp is at or after `moment`; None if unreadable.

    A timestamp without a zone is compared as wall-clock time (both run on one machine's clock).
    """
    if not timestamp:
        return None
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None or moment.tzinfo is None:
        return when.replace(tzinfo=None) >= moment.replace(tzinfo=None)
    return when >= moment


def backend_client() -> MultimoClient:
    """A client for the configured backend."""
    return MultimoClient.from_settings(get_settings())


def step_cache_key(simulation_id: str, generation: int, step: Step) -> str:
    """`autopilot-{sim}-g{generation}-{step}`: no run id, no source hash, no `/` or `.`."""
    safe_id = _UNSAFE_KEY_CHARS.sub("-", simulation_id)
    return f"autopilot-{safe_id}-g{generation}-{step.value}"


def cache_key_for(step: Step) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """A `cache_key_fn` keyed on the step context's simulation id and generation."""

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        ctx = parameters["ctx"]
        return step_cache_key(ctx.simulation_id, ctx.generation, step)

    return key_fn


def task_run_name(step: Step) -> str:
    """`{step}-{simulation_id}-g{generation}`: every log line names the step and simulation."""
    return step.value + "-{ctx.simulation_id}-g{ctx.generation}"


def checkpointed_step(step: Step) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The decorator of a side-effecting step: persisted result under the step's cache key,
    retried (after 2, 5, 15 s) only when the backend was unavailable."""
    return task(
        name=step.value,
        task_run_name=task_run_name(step),
        persist_result=True,
        cache_key_fn=cache_key_for(step),
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
