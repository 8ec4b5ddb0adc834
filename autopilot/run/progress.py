"""Publishes a step's progress as a Prefect progress artifact, writing only on change."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from autopilot.names import progress_artifact_key
from autopilot.progress_codec import encode_description

logger = logging.getLogger(__name__)


class ProgressPublisher:
    """One progress artifact per step attempt, updated only when its content changes."""

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
