"""Publishes a step's progress as a Prefect progress artifact, writing only on change.

The description carries a human line for the UI and, in a hidden HTML comment, the structured
detail that the status endpoint projects back into `progress_detail`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

logger = logging.getLogger(__name__)

DETAIL_MARKER = "autopilot-detail"
_DETAIL_RE = re.compile(rf"<!-- {DETAIL_MARKER} (.*?) -->", re.S)


def encode_description(summary: str, step: str, detail: dict[str, Any]) -> str:
    """The artifact description: a line for people, the detail for the status projection."""
    payload = json.dumps({"step": step, "detail": detail}, sort_keys=True)
    return f"{summary}\n\n<!-- {DETAIL_MARKER} {payload} -->"


def decode_description(description: str | None) -> dict[str, Any] | None:
    """The `{step, detail}` hidden in a description written by `encode_description`."""
    if not description:
        return None
    match = _DETAIL_RE.search(description)
    if match is None:
        return None
    try:
        decoded = json.loads(match.group(1))
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def artifact_key(simulation_id: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return "autopilot-" + re.sub(r"[^a-z0-9-]", "-", simulation_id.lower())


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
                    key=artifact_key(self.simulation_id),
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
