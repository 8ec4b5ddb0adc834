"""What Prefect keeps of one flow run, read back for assertions: task runs and artifacts."""

from __future__ import annotations

import base64
import io
import re
from typing import Any
from uuid import UUID

from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import TaskRunSort

from autopilot import names
from tests.helpers import wait_until

EMBEDDED_PNG = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def task_runs(flow_run_id: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )


def artifacts(flow_run_id: str) -> dict[str, list[Any]]:
    """The run's artifacts by type (progress, markdown, table, ...)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    by_type: dict[str, list[Any]] = {}
    for artifact in found:
        by_type.setdefault(str(artifact.type), []).append(artifact)
    return by_type


def embedded_chart_size(markdown: str) -> tuple[int, int]:
    """The size of the one PNG embedded in `markdown`, decoded."""
    (encoded,) = EMBEDDED_PNG.findall(markdown)
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.format == "PNG"
        return image.size


def run_logs(flow_run_id: str) -> list[str]:
    """The messages of the run's logs."""
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return [log.message for log in logs]


def wait_step_yielded(flow_run_id: str, step: str, timeout: float = 60) -> None:
    """Until a task run of `step` has yielded to a pause (ended Cancelled, named "Paused"): a
    resume sent before that may find the step still running, and it then never yields."""

    def yielded() -> bool:
        return any(
            names.step_of_task_run(t.name) == step
            and t.state is not None
            and t.state.is_cancelled()
            and t.state.name == "Paused"
            for t in task_runs(flow_run_id)
        )

    wait_until(yielded, timeout=timeout, interval=0.25, message=f"{step} to yield to the pause")
