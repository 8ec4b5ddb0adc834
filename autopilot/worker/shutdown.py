"""A worker that shuts down (SIGTERM: a restart, a deploy, `autopilot up` stopping) makes
Prefect's runner cancel every run it executes, with its own message. Such a run was not
stopped by anyone: its simulation keeps running and the next worker resumes the run on its
own flow-run id (autopilot/worker/recovery.py, `resume_shut_down`)."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State

# The message of Prefect's `Runner.cancel_all` (prefect/runner/_cancellation_manager.py), on
# the Cancelling state its hooks see and on the final Cancelled state. A user's cancel (the
# shim's stop, the UI's button) carries another. tests/test_worker_shutdown.py pins it.
RUNNER_SHUTDOWN_MESSAGE = "Runner is shutting down."


def is_worker_shutdown(state: State[Any] | None) -> bool:
    """Whether this Cancelling/Cancelled state is a worker shutting down, not a stop."""
    return state is not None and (state.message or "").strip() == RUNNER_SHUTDOWN_MESSAGE
