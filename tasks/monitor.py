"""MONITORING: follow the running simulation until it ends, a pause/stop request, or a stall.

Not cached: it only reads, so on resume it re-attaches and polls on; the backend holds the
round counter. Polls are plain HTTP calls inside one task run, not one task per tick.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger

from autopilot.backend_models import RunStatus
from autopilot.errors import StepFailed
from autopilot.eta import DEFAULT_GAP, RoundClock, backend_rate, estimate
from autopilot.models import MonitorResult, Step, StepContext
from autopilot.run import crashpoints
from autopilot.run.control import RunControl, StepInterrupted
from autopilot.run.progress import ProgressPublisher
from autopilot.settings import get_settings
from tasks._monitor_rules import StallDetector, Verdict, classify, round_percent
from tasks._outage import outage_tracker, ride_out
from tasks._polling import poll_until_done
from tasks._step import backend_client, step_task


def _result(ctx: StepContext, status: RunStatus) -> MonitorResult:
    return MonitorResult(
        simulation_id=ctx.simulation_id,
        current_round=status.current_round,
        total_rounds=status.total_rounds,
        twitter_actions=status.twitter_actions_count,
        reddit_actions=status.reddit_actions_count,
    )


def _publish(progress: ProgressPublisher, status: RunStatus, rounds: RoundClock) -> None:
    detail: dict[str, Any] = {
        "current_round": status.current_round,
        "total_rounds": status.total_rounds,
        "twitter_actions": status.twitter_actions_count,
        "reddit_actions": status.reddit_actions_count,
    }
    summary = (
        f"round {status.current_round}/{status.total_rounds}: "
        f"{status.twitter_actions_count} twitter and {status.reddit_actions_count} reddit actions"
    )
    eta = estimate(
        rounds.segments,
        status.current_round,
        status.total_rounds,
        datetime.now(UTC),
        fallback_rate=backend_rate(status.started_at, status.updated_at, status.current_round),
    )
    if eta is not None and status.runner_status != "completed":
        detail.update(eta.as_detail())
        summary += f"; {eta.text()}"
    progress.publish(round_percent(status.current_round, status.total_rounds), summary, detail)


# Only reads: no checkpoint, and an outage is ridden out inside the step.
@step_task(Step.MONITORING, checkpoint=None, retry_outages=False)
def monitor_simulation(ctx: StepContext) -> MonitorResult:
    """Poll run-status until the simulation completes; fail fast on failed, stopped or stalled."""
    logger = get_run_logger()
    settings = get_settings()
    options = ctx.options
    poll_interval = options.poll_interval or settings.poll_interval
    control = RunControl(settings.control_check_interval)
    if (reason := control.requested()) is not None:
        # Re-entered while still paused or stopping: give Prefect a moment, then yield again.
        control.wait(settings.control_check_interval)
        raise StepInterrupted(reason)
    stall = StallDetector(options.stall_timeout or settings.stall_timeout)
    outage = outage_tracker(options, Step.MONITORING, base_delay=min(poll_interval, 5.0))
    progress = ProgressPublisher(ctx.simulation_id, Step.MONITORING.value)
    # Polls further apart than a few intervals (an outage ridden out) are a hole in the record.
    rounds = RoundClock(gap=max(DEFAULT_GAP, 3 * poll_interval))
    with backend_client() as client:
        if ctx.taken_as_done(Step.MONITORING):
            # Begun at a later step: the simulation's end was seen by an earlier generation;
            # one read gives the figures the outcome records (whatever the run did since).
            status = ride_out(lambda: client.run_status(ctx.simulation_id), outage, control)
            logger.info("monitoring of %s %s", ctx.simulation_id, ctx.taken_from())
            progress.publish(
                round_percent(status.current_round, status.total_rounds),
                f"round {status.current_round}/{status.total_rounds}: {ctx.taken_from()}",
                {"current_round": status.current_round, "total_rounds": status.total_rounds},
            )
            return _result(ctx, status)

        def finished() -> MonitorResult | None:
            status = client.run_status(ctx.simulation_id)
            crashpoints.reached(settings.data_dir, ctx.simulation_id, "monitor-polled")
            verdict = classify(status)
            if verdict is not Verdict.UNKNOWN:
                rounds.observe(time.monotonic(), status.current_round)
                _publish(progress, status, rounds)
            if verdict is Verdict.SUCCEEDED:
                logger.info("simulation finished: %s rounds", status.current_round)
                return _result(ctx, status)
            if verdict is Verdict.FAILED:
                raise StepFailed(
                    f"simulation failed: {status.error or 'the backend gave no reason'}",
                    step=Step.MONITORING.value,
                    error_code="SIMULATION_FAILED",
                )
            if verdict is Verdict.STOPPED:
                raise StepFailed(
                    "simulation was stopped on the backend",
                    step=Step.MONITORING.value,
                    error_code="SIMULATION_STOPPED",
                )
            if (idle_for := stall.stalled(status)) is not None:
                raise StepFailed(
                    f"simulation stalled: no progress for {idle_for:.0f}s at round "
                    f"{status.current_round}/{status.total_rounds}",
                    step=Step.MONITORING.value,
                    error_code="SIMULATION_STALLED",
                )
            return None

        return poll_until_done(finished, poll_interval, outage, control)
