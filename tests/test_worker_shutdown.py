"""The message by which a worker shutdown's cancellation is told from a stop is Prefect's own:
pinned here, so a Prefect upgrade that changes it fails a test instead of stopping
simulations on every worker restart again."""

from __future__ import annotations

import inspect

from prefect.runner._cancellation_manager import CancellationManager
from prefect.states import Cancelled, Cancelling

from autopilot.worker.shutdown import RUNNER_SHUTDOWN_MESSAGE, is_worker_shutdown


def test_the_message_is_the_one_prefects_runner_cancels_with_on_shutdown():
    default = inspect.signature(CancellationManager.cancel_all).parameters["state_msg"].default
    assert default == RUNNER_SHUTDOWN_MESSAGE


def test_a_stop_is_not_a_shutdown():
    assert is_worker_shutdown(Cancelling(message=RUNNER_SHUTDOWN_MESSAGE))
    assert is_worker_shutdown(Cancelled(message=RUNNER_SHUTDOWN_MESSAGE))
    assert not is_worker_shutdown(Cancelling(message="Flow run was cancelled."))
    assert not is_worker_shutdown(Cancelling())
    assert not is_worker_shutdown(None)
