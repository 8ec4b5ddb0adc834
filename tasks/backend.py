"""What every step shares: the backend client, the cache key, and the retry rule."""

from __future__ import annotations

import re
from typing import Any

from prefect.context import TaskRunContext

from autopilot.client import MultimoClient
from autopilot.errors import BackendUnavailable
from autopilot.models import Step
from autopilot.settings import get_settings

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# Backend outages are ridden out inside each step; a task-level retry only covers the rest.
RETRY_DELAYS: list[float] = [2.0, 5.0, 15.0]


def backend_client() -> MultimoClient:
    """A client for the configured backend."""
    return MultimoClient.from_settings(get_settings())


def step_cache_key(simulation_id: str, generation: int, step: Step) -> str:
    """`autopilot-{sim}-g{generation}-{step}`: no run id, no source hash, no `/` or `.`."""
    safe_id = _UNSAFE_KEY_CHARS.sub("-", simulation_id)
    return f"autopilot-{safe_id}-g{generation}-{step.value}"


def cache_key_for(step: Step):  # type: ignore[no-untyped-def]
    """A `cache_key_fn` keyed on the step context's simulation id and generation."""

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        ctx = parameters["ctx"]
        return step_cache_key(ctx.simulation_id, ctx.generation, step)

    return key_fn


def retry_if_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a step only when the backend was unavailable; rejections and failures are final."""
    try:
        state.result()
    except BackendUnavailable:
        return True
    except Exception:
        return False
    return False
