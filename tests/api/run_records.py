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
)
from prefect.client.schemas.sorting import TaskRunSort

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
