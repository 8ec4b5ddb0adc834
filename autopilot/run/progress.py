"""Publishes a run's progress as one Prefect progress artifact, writing only on change.

One artifact per flow run, which each step (and each attempt of it after a resume) updates in
turn: the Prefect UI lists a run's artifacts, and one per step would leave earlier ones
showing their last figure ("report: Writing report (90%)") after the run completed.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    ArtifactFilterType,
)
from prefect.client.schemas.sorting import ArtifactSort

from autopilot.names import progress_artifact_key
from autopilot.progress_codec import encode_description
from autopilot.run.control import current_flow_run_id

logger = logging.getLogger(__name__)


class ProgressPublisher:
    """A step's progress, written to its flow run's progress artifact when it changes."""

    def __init__(self, simulation_id: str, step: str) -> None:
        self.simulation_id = simulation_id
        self.step = step
        self._artifact_id: UUID | None = None
        self._last: tuple[int, str] | None = None
        self.writes = 0

    def publish(self, percent: int, summary: str, detail: dict[str, Any]) -> None:
        """Record progress; a failure to write is logged, never fatal."""
        description = encode_description(summary, self.step, detail)
        if self._last == (percent, description):
            return
        try:
            if self._artifact_id is None:
                self._artifact_id = self._runs_artifact()
            if self._artifact_id is None:
                self._artifact_id = create_progress_artifact(  # type: ignore[assignment]
                    progress=float(percent),
                    key=progress_artifact_key(self.simulation_id),
                    description=description,
                )
            else:
                update_progress_artifact(
                    artifact_id=self._artifact_id,
                    progress=float(percent),
                    description=description,
                )
        except Exception as exc:
            logger.warning("could not publish progress: %s", exc)
            return
        self._last = (percent, description)
        self.writes += 1

    def _runs_artifact(self) -> UUID | None:
        """The progress artifact an earlier step of this flow run created, if any."""
        flow_run_id = current_flow_run_id()
        if flow_run_id is None:
            return None
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                    key=ArtifactFilterKey(any_=[progress_artifact_key(self.simulation_id)]),
                    type=ArtifactFilterType(any_=["progress"]),
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        return found[0].id if found else None
