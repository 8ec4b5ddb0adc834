"""A worker that shuts down (SIGTERM: a restart, a deploy, `autopilot up` stopping) makes
Prefect's runner cancel every run it executes, with its own message. Such a run was not
stopped by anyone: its simulation keeps running and the next worker resumes the run on its
own flow-run id, from its checkpoints."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import State, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Scheduled

logger = logging.getLogger(__name__)

# The message of Prefect's `Runner.cancel_all` (prefect/runner/_cancellation_manager.py), on
# the Cancelling state its hooks see and on the final Cancelled state. A user's cancel (the
# shim's stop, the UI's button) carries another. tests/test_worker_shutdown.py pins it.
RUNNER_SHUTDOWN_MESSAGE = "Runner is shutting down."
RESUMED_STATE_NAME = "AwaitingResume"
# Older shut-down runs are left alone (a worker down for longer than this was retired).
LOOK_BACK = timedelta(days=7)


def is_worker_shutdown(state: State[Any] | None) -> bool:
    """Whether this Cancelling/Cancelled state is a worker shutting down, not a stop."""
    return state is not None and (state.message or "").strip() == RUNNER_SHUTDOWN_MESSAGE


async def resume_shut_down(client: PrefectClient, deployment_id: UUID) -> list[UUID]:
    """Reschedule, on their own ids, the deployment's runs a worker shutdown cancelled.

    Not counted as crashes: the run did nothing wrong. A run whose simulation moved on
    meanwhile (stop, reset) finds itself superseded when it begins and ends without acting.
    """
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLED])),
            end_time=FlowRunFilterEndTime(after_=datetime.now(UTC) - LOOK_BACK),  # type: ignore[arg-type]
        ),
        sort=FlowRunSort.END_TIME_DESC,
    )
    resumed = []
    for run in runs:
        if not is_worker_shutdown(run.state):
            continue
        await client.set_flow_run_state(run.id, Scheduled(name=RESUMED_STATE_NAME), force=True)
        logger.warning("flow run %s was cancelled by a worker shutdown: resuming it", run.id)
        resumed.append(run.id)
    return resumed
