"""Prefect's objects as the status projection's records (pure conversions)."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType

from autopilot import names
from autopilot.progress_codec import decode_description
from autopilot.service.projection import ProgressRecord, RunSnapshot


def progress_record(artifact: Any) -> ProgressRecord:
    """A progress artifact (or its collection row) as the projection needs it."""
    decoded = decode_description(artifact.description) or {}
    data: Any = artifact.data
    return ProgressRecord(
        percent=int(float(data or 0)),
        step=decoded.get("step"),
        detail=decoded.get("detail") or {},
        summary=(artifact.description or "").split("\n", 1)[0],
        updated=artifact.updated,
    )


def run_snapshot(run: FlowRun) -> RunSnapshot:
    state = run.state
    return RunSnapshot(
        flow_run_id=str(run.id),
        generation=int(run.parameters.get("generation") or 0),
        state_type=state.type if state else StateType.SCHEDULED,
        state_name=(state.name if state else None) or "Scheduled",
        state_message=state.message if state else None,
        state_timestamp=state.timestamp if state else None,
        created=run.created,
        start_time=run.start_time,
        end_time=run.end_time,
        run_count=run.run_count,
        awaiting_step=names.step_awaiting_confirmation(
            state.state_details.pause_key if state and state.is_paused() else None
        ),
    )
