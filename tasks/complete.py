"""COMPLETED: record the outcome of the attempt, and show it as the run's last progress."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger

from autopilot.models import MonitorResult, Outcome, ReportResult, Step, StepContext
from autopilot.run.progress import ProgressPublisher
from tasks._step import step_task


# No backend call to retry: it only records the outcome.
@step_task(Step.COMPLETED, retry_outages=False)
def complete(ctx: StepContext, monitored: MonitorResult, report: ReportResult) -> Outcome:
    """Record that the auto-pilot finished with a report."""
    # Written before the run is Completed, so anyone who sees the run Completed also finds
    # this final progress (not the report step's last "writing report" line).
    ProgressPublisher(ctx.simulation_id, Step.COMPLETED.value).publish(
        100,
        f"completed: {monitored.current_round}/{monitored.total_rounds} rounds, "
        f"report {report.report_id}",
        {
            "current_round": monitored.current_round,
            "total_rounds": monitored.total_rounds,
            "twitter_actions": monitored.twitter_actions,
            "reddit_actions": monitored.reddit_actions,
            "report_id": report.report_id,
        },
    )
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
