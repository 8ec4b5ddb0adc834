"""GENERATING_REPORT: adopt this generation's report if it exists, else generate exactly one."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from autopilot import chart, names
from autopilot.backend_models import Report, TimelineRound
from autopilot.client import MultimoClient
from autopilot.errors import BackendRejected, NotFound, StepFailed
from autopilot.models import BackendBaseline, ReportResult, Step, StepContext
from autopilot.report_artifact import embed_chart
from autopilot.run import crashpoints
from autopilot.run.control import RunControl
from autopilot.run.progress import ProgressPublisher
from autopilot.settings import get_settings
from tasks._outage import OutageTracker, outage_tracker, ride_out
from tasks._polling import poll_until_done
from tasks._step import backend_client, step_task

REPORT_POLL_SECONDS = 1.0
_IN_PROGRESS = {"pending", "processing", "running"}


def is_this_generations_report(report: Report, baseline: BackendBaseline) -> bool:
    """A report the backend already had when the generation began describes an earlier run."""
    return report.report_id not in baseline.report_ids


def _existing_report(
    client: MultimoClient, simulation_id: str, baseline: BackendBaseline
) -> Report | None:
    ours = _this_generations_reports(client, simulation_id, baseline)
    return next((report for report in ours if report.status == "completed"), None)


def _this_generations_reports(
    client: MultimoClient, simulation_id: str, baseline: BackendBaseline
) -> list[Report]:
    return [
        report
        for report in client.list_reports(simulation_id)
        if is_this_generations_report(report, baseline)
    ]


class _ReportWatch:
    """Polls one report generation (by simulation id only) until it completes or fails."""

    def __init__(
        self,
        client: MultimoClient,
        ctx: StepContext,
        baseline: BackendBaseline,
        control: RunControl,
        outage: OutageTracker,
    ) -> None:
        self.client = client
        self.ctx = ctx
        self.baseline = baseline
        self.control = control
        self.outage = outage
        self.progress = ProgressPublisher(ctx.simulation_id, Step.GENERATING_REPORT.value)

    def until_done(self, report_id: str | None) -> Report:
        sim = self.ctx.simulation_id

        def finished() -> Report | None:
            nonlocal report_id
            status = self.client.report_generation_status(sim)
            if status is not None and status.report_id in self.baseline.report_ids:
                # multimo names an earlier completed report while a new one is made: only
                # the new report's own record tells how it goes.
                status = None
            report_id = (status.report_id if status else None) or report_id
            if status is not None and status.status not in {"completed", "failed"}:
                self.progress.publish(
                    status.progress,
                    f"report: {status.message or status.status} ({status.progress}%)",
                    {"stage": status.status, "message": status.message or ""},
                )
                return None
            # 404 "no task in progress": the report itself tells whether it finished.
            if report_id is None:
                existing = _existing_report(self.client, sim, self.baseline)
                if existing is not None:
                    return existing
                raise StepFailed("report generation vanished", step=Step.GENERATING_REPORT.value)
            report = self.client.get_report(report_id)
            if report.status == "completed":
                return report
            if report.status == "failed" or (status is not None and status.status == "failed"):
                why = report.error or (status.message if status else None) or "no reason given"
                raise StepFailed(
                    f"report generation failed: {why}", step=Step.GENERATING_REPORT.value
                )
            return None

        return poll_until_done(finished, REPORT_POLL_SECONDS, self.outage, self.control)


@step_task(Step.GENERATING_REPORT)
def generate_report(ctx: StepContext, baseline: BackendBaseline) -> ReportResult:
    """Generate the report once and publish it as a Markdown artifact."""
    logger = get_run_logger()
    settings = get_settings()
    control = RunControl(settings.control_check_interval)
    outage = outage_tracker(ctx.options, Step.GENERATING_REPORT, base_delay=REPORT_POLL_SECONDS)
    with backend_client() as client:

        def look_then_generate() -> tuple[Report | None, str | None]:
            """(this generation's finished report, or the id of the one being made)."""
            ours = _this_generations_reports(client, ctx.simulation_id, baseline)
            if done := [report for report in ours if report.status == "completed"]:
                return done[0], None
            # Found by the report list first: while an earlier report exists, multimo's
            # status by simulation names that one, not the one being made.
            if making := [report for report in ours if report.status in _IN_PROGRESS]:
                logger.info("adopting the report %s being made", making[0].report_id)
                return None, making[0].report_id
            running = client.report_generation_status(ctx.simulation_id)
            if running is not None and running.status in _IN_PROGRESS:
                logger.info("adopting the report generation already in progress")
                return None, running.report_id
            # Every completed report the backend has is an earlier generation's (looked for
            # just above): multimo would answer with one of those unless forced.
            accepted = client.generate_report(ctx.simulation_id, force_regenerate=True)
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "report-requested")
            logger.info("report generation started: %s", accepted.report_id)
            return None, accepted.report_id

        report, report_id = ride_out(look_then_generate, outage, control)
        adopted = report is not None
        if report is None:
            report = _ReportWatch(client, ctx, baseline, control, outage).until_done(report_id)
        markdown = report.markdown_content or ""
        if not markdown:
            finished_id = report.report_id
            markdown = (
                ride_out(lambda: client.get_report(finished_id), outage, control).markdown_content
                or ""
            )
        rounds = _timeline(client, ctx.simulation_id, outage, control)
    crashpoints.reached(settings.data_dir, ctx.simulation_id, "report-done")
    _publish(ctx.simulation_id, report, markdown, rounds)
    return ReportResult(
        simulation_id=ctx.simulation_id,
        report_id=report.report_id,
        adopted=adopted,
        chart_path=report.chart_path,
        markdown_chars=len(markdown),
    )


def _timeline(
    client: MultimoClient, simulation_id: str, outage: OutageTracker, control: RunControl
) -> list[TimelineRound] | None:
    """The run's rounds for the chart; None (the report goes out without a chart) from a
    backend that has no timeline for it."""
    try:
        return ride_out(lambda: client.timeline(simulation_id), outage, control)
    except (NotFound, BackendRejected) as exc:
        get_run_logger().warning("no timeline for the report's chart: %s", exc.message)
        return None


def _publish(
    simulation_id: str, report: Report, markdown: str, rounds: list[TimelineRound] | None
) -> None:
    """The report artifact, self-contained (chart embedded), and the per-round table."""
    uri = chart.data_uri(chart.png(rounds, simulation_id)) if rounds else None
    create_markdown_artifact(
        markdown=embed_chart(markdown or "(the backend returned an empty report)", uri),
        key=names.report_artifact_key(simulation_id),
        description=f"Report {report.report_id}",
    )
    if rounds:
        create_table_artifact(
            table=chart.table_rows(rounds),
            key=names.rounds_artifact_key(simulation_id),
            description=f"Actions and active agents per round (report {report.report_id})",
        )
