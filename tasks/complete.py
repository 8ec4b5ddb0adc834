"""COMPLETED: record the outcome of the attempt."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task

from autopilot.models import Outcome, ReportResult, Step, StepContext
from tasks.backend import cache_key_for, task_run_name


@task(
    name="completed",
    task_run_name=task_run_name(Step.COMPLETED),
    persist_result=True,
    cache_key_fn=cache_key_for(Step.COMPLETED),
)
def complete(ctx: StepContext, report: ReportResult) -> Outcome:
    """Record that the auto-pilot finished with a report."""
    get_run_logger().info(
        "auto-pilot for %s (generation %s) completed; report %s",
        ctx.simulation_id,
        ctx.generation,
        report.report_id,
    )
    return Outcome(
        simulation_id=ctx.simulation_id,
        generation=ctx.generation,
        report_id=report.report_id,
        completed_at=datetime.now(UTC),
    )
