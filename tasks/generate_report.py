"""GENERATING_REPORT: adopt an existing report of this generation, else generate exactly one."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from autopilot import crashpoints
from autopilot.backend_models import Report
from autopilot.client import MultimoClient
from autopilot.errors import BackendUnavailable, StepFailed
from autopilot.models import ReportResult, Step, StepContext
from autopilot.progress_codec import artifact_key
from autopilot.settings import get_settings
from tasks.backend import backend_client, checkpointed_step, happened_since
from tasks.control import RunControl, StepInterrupted
from tasks.outage import outage_tracker
from tasks.progress import ProgressPublisher

REPORT_POLL_SECONDS = 1.0
_IN_PROGRESS = {"pending", "processing", "running"}


def is_current(report: Report, generation_started_at: datetime) -> bool:
    """A report made before this generation began describes an earlier run."""
    return happened_since(report.created_at, generation_started_at) is not False


def _existing_report(client: MultimoClient, ctx: StepContext) -> Report | None:
    for report in client.list_reports(ctx.simulation_id):
        if report.status == "completed" and is_current(report, ctx.generation_started_at):
            return report
    return None


def _await_report(
    client: MultimoClient, ctx: StepContext, report_id: str | None, control: RunControl
) -> Report:
    """Poll the report task by simulation id until it completes or fails."""
    progress = ProgressPublisher(ctx.simulation_id, Step.GENERATING_REPORT.value)
    outage = outage_tracker(ctx.options, Step.GENERATING_REPORT, base_delay=REPORT_POLL_SECONDS)
    while True:
        try:
            status = client.report_generation_status(ctx.simulation_id)
            outage.recovered()
        except BackendUnavailable as exc:
            if (reason := control.wait(outage.failed(exc))) is not None:
                raise StepInterrupted(reason) from exc
            continue
        report_id = (status.report_id if status else None) or report_id
        if status is None or status.status in {"completed", "failed"}:
            # 404 "no task in progress": the report itself tells whether it finished.
            if report_id is None:
                existing = _existing_report(client, ctx)
                if existing is not None:
                    return existing
                raise StepFailed("report generation vanished", step=Step.GENERATING_REPORT.value)
            report = client.get_report(report_id)
            if report.status == "completed":
                return report
            if report.status == "failed" or (status is not None and status.status == "failed"):
                reason = report.error or (status.message if status else None) or "no reason given"
                raise StepFailed(
                    f"report generation failed: {reason}", step=Step.GENERATING_REPORT.value
                )
        else:
            progress.publish(
                status.progress,
                f"report: {status.message or status.status} ({status.progress}%)",
                {"stage": status.status, "message": status.message or ""},
            )
        if (reason := control.wait(REPORT_POLL_SECONDS)) is not None:
            raise StepInterrupted(reason)


@checkpointed_step(Step.GENERATING_REPORT)
def generate_report(ctx: StepContext) -> ReportResult:
    """Generate the report once and publish it as a Markdown artifact."""
    logger = get_run_logger()
    control = RunControl(get_settings().control_check_interval)
    with backend_client() as client:
        report = _existing_report(client, ctx)
        adopted = report is not None
        if report is None:
            running = client.report_generation_status(ctx.simulation_id)
            report_id = None
            if running is None or running.status not in _IN_PROGRESS:
                accepted = client.generate_report(ctx.simulation_id)
                report_id = accepted.report_id
                crashpoints.reached(get_settings().data_dir, ctx.simulation_id, "report-requested")
                logger.info("report generation started: %s", report_id)
            else:
                logger.info("adopting the report generation already in progress")
            report = _await_report(client, ctx, report_id, control)
        markdown = report.markdown_content or ""
        if not markdown:
            markdown = client.get_report(report.report_id).markdown_content or ""
    crashpoints.reached(get_settings().data_dir, ctx.simulation_id, "report-done")
    create_markdown_artifact(
        markdown=markdown or "(the backend returned an empty report)",
        key=artifact_key(ctx.simulation_id) + "-report",
        description=f"Report {report.report_id}; chart: {report.chart_path or 'none'}",
    )
    return ReportResult(
        simulation_id=ctx.simulation_id,
        report_id=report.report_id,
        adopted=adopted,
        chart_path=report.chart_path,
        markdown_chars=len(markdown),
    )
