"""The steps' pure decisions, tested without Prefect or HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopilot.backend_models import PrepareStatus, Report, RunStatus
from autopilot.errors import BackendUnavailable, StepFailed
from autopilot.models import BackendBaseline, Step, StepContext
from autopilot.progress_codec import decode_description, encode_description
from tasks._monitor_rules import StallDetector, Verdict, classify, round_percent
from tasks._outage import OutageTracker
from tasks._step import checkpoint_key
from tasks.generate_report import is_this_generations_report
from tasks.prepare import preparation_failure
from tasks.start import is_this_generations_run, needs_start

GEN_START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def status(
    runner_status: str,
    round_: int = 0,
    updated: datetime | None = None,
    started: str | None = None,
) -> RunStatus:
    return RunStatus(
        runner_status=runner_status,
        current_round=round_,
        total_rounds=12,
        updated_at=updated.isoformat() if updated else None,
        started_at=started,
    )


def test_checkpoint_keys_are_per_generation_identity_and_optionally_per_attempt():
    ctx = StepContext(simulation_id="sim_ab.c", generation=3, generation_id="0a1b2c3d4e5f")
    key = checkpoint_key(ctx, Step.STARTING)
    assert key == "autopilot-sim-1ab-2c--g3-0a1b2c3d4e5f--starting"
    assert checkpoint_key(ctx, Step.STARTING, "run1") == key + "--run1"
    other_life = ctx.model_copy(update={"generation_id": "ffffffffffff"})
    assert checkpoint_key(other_life, Step.STARTING) != key


@pytest.mark.parametrize(
    ("runner_status", "expected"),
    [
        ("completed", Verdict.SUCCEEDED),
        ("failed", Verdict.FAILED),
        ("stopped", Verdict.STOPPED),
        ("running", Verdict.RUNNING),
        ("paused", Verdict.RUNNING),
        ("idle", Verdict.UNKNOWN),
        ("weird", Verdict.UNKNOWN),
    ],
)
def test_classify(runner_status, expected):
    assert classify(status(runner_status)) is expected


def test_round_percent():
    assert round_percent(5, 12) == 41
    assert round_percent(12, 12) == 100
    assert round_percent(3, 0) == 0


def test_stall_detector_counts_time_without_progress_and_ignores_idle():
    clock = FakeClock()
    detector = StallDetector(timeout=60, clock=clock)
    assert detector.stalled(status("running", 1, GEN_START)) is None
    clock.now = 50
    assert detector.stalled(status("idle", 0)) is None  # torn status: not progress, not reset
    clock.now = 61
    assert detector.stalled(status("running", 1, GEN_START)) == pytest.approx(61)
    clock.now = 62
    assert detector.stalled(status("running", 2, GEN_START + timedelta(seconds=5))) is None


def test_stall_detector_does_not_count_a_backend_pause():
    clock = FakeClock()
    detector = StallDetector(timeout=10, clock=clock)
    detector.stalled(status("running", 4, GEN_START))
    clock.now = 100
    assert detector.stalled(status("paused", 4, GEN_START)) is None


def test_needs_start_reconciles_with_run_status():
    # The backend's previous run had ended when the generation began.
    ended = BackendBaseline(runner_status="completed", run_started_at="2026-11-27T03:00:00")
    assert needs_start(status("idle"), ended)
    assert not needs_start(status("running", 2, started="2026-11-27T04:00:00"), ended)
    assert not needs_start(status("starting"), ended)
    # A run that began after the baseline (a crash after POST /start): never again.
    assert not needs_start(status("completed", 12, started="2026-11-27T04:00:00"), ended)
    # The run that had ended before the generation began: a new generation runs it again.
    assert needs_start(status("completed", 12, started="2026-11-27T03:00:00"), ended)
    # A retry after a failure or a stop on the backend starts it again.
    assert needs_start(status("failed", 3, started="2026-11-27T04:00:00"), ended)
    assert needs_start(status("stopped", 3, started="2026-11-27T04:00:00"), ended)


def test_a_run_is_this_generations_by_the_backends_own_record_not_by_clocks():
    # Naive local times of a backend nine hours ahead of us: only equality is compared.
    ended = BackendBaseline(runner_status="completed", run_started_at="2026-11-27T21:00:00")
    assert not is_this_generations_run(status("completed", started="2026-11-27T21:00:00"), ended)
    assert is_this_generations_run(status("completed", started="2026-11-27T20:59:00"), ended)
    # No start times from this backend: an ended run's record changes only with a new run.
    at = datetime(2026, 11, 27, 21, tzinfo=UTC)
    quiet = BackendBaseline(runner_status="stopped", run_updated_at=at.isoformat())
    assert not is_this_generations_run(status("stopped", updated=at), quiet)
    assert is_this_generations_run(status("completed", updated=at + timedelta(hours=1)), quiet)
    # A run that was live when the generation began was adopted by it.
    live = BackendBaseline(runner_status="running", run_started_at="2026-11-27T21:00:00")
    assert is_this_generations_run(status("completed", started="2026-11-27T21:00:00"), live)
    assert not is_this_generations_run(status("idle"), BackendBaseline())


def test_a_report_is_this_generations_unless_the_backend_had_it_already():
    baseline = BackendBaseline(report_ids=["r1"])
    assert not is_this_generations_report(Report(report_id="r1"), baseline)
    assert is_this_generations_report(Report(report_id="r2"), baseline)


def test_a_completed_preparation_task_with_a_failed_result_is_a_failure():
    failed = PrepareStatus(
        status="completed",
        progress=100,
        result={"status": "failed", "error": "没有找到符合条件的实体"},
    )
    failure = preparation_failure(failed)
    assert failure is not None and failure.step == "preparing"
    assert failure.message == "preparation failed: 没有找到符合条件的实体"
    assert not failed.succeeded
    done = PrepareStatus(status="completed", progress=100, result={"status": "ready"})
    assert preparation_failure(done) is None and done.succeeded


def test_outage_tracker_backs_off_then_fails_clearly():
    clock = FakeClock()
    tracker = OutageTracker(tolerance=30, step=Step.MONITORING, base_delay=1, clock=clock)
    error = BackendUnavailable("connection refused")
    delays = []
    with pytest.raises(StepFailed) as info:
        while True:
            delays.append(tracker.failed(error))
            clock.now += delays[-1]
    assert delays[:4] == [1, 2, 4, 8]
    assert 30 <= clock.now <= 32
    assert info.value.step == "monitoring"
    assert "connection refused" in info.value.message


def test_outage_tracker_resets_when_backend_answers():
    clock = FakeClock()
    tracker = OutageTracker(tolerance=5, step=Step.MONITORING, base_delay=1, clock=clock)
    tracker.failed(BackendUnavailable("x"))
    clock.now = 4
    tracker.recovered()
    clock.now = 20
    assert tracker.failed(BackendUnavailable("x")) == 1


def test_progress_description_round_trips():
    detail = {"current_round": 3, "total_rounds": 12}
    description = encode_description("round 3/12", "monitoring", detail)
    assert description.startswith("round 3/12")
    assert decode_description(description) == {"step": "monitoring", "detail": detail}
    assert decode_description("no marker") is None


def test_artifact_keys_are_lowercase_dashes():
    from autopilot.names import progress_artifact_key

    assert progress_artifact_key("sim_AB12") == "autopilot-sim-1-a-b12"


def test_crashed_runs_restart_at_once_then_with_growing_delays():
    from autopilot.worker.recovery import restart_delay

    assert [restart_delay(n) for n in (1, 2, 3, 4, 8)] == [0.0, 2.0, 4.0, 8.0, 60.0]
