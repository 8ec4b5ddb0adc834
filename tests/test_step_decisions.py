"""The steps' pure decisions, tested without Prefect or HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopilot.backend_models import Report, RunStatus
from autopilot.errors import BackendUnavailable, StepFailed
from autopilot.models import Step
from autopilot.progress_codec import decode_description, encode_description
from tasks.backend import step_cache_key
from tasks.generate_report import is_current
from tasks.monitor_rules import StallDetector, Verdict, classify, round_percent
from tasks.outage import OutageTracker
from tasks.progress import artifact_key
from tasks.start import needs_start

GEN_START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def status(runner_status: str, round_: int = 0, updated: datetime | None = None) -> RunStatus:
    return RunStatus(
        runner_status=runner_status,
        current_round=round_,
        total_rounds=12,
        updated_at=updated.isoformat() if updated else None,
    )


def test_cache_key_has_no_slash_dot_or_run_id():
    key = step_cache_key("sim_ab.c/d", 3, Step.STARTING)
    assert key == "autopilot-sim_ab-c-d-g3-starting"


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
    before = GEN_START - timedelta(hours=1)
    after = GEN_START + timedelta(seconds=3)
    assert needs_start(status("idle"), GEN_START)
    assert not needs_start(status("running", 2, after), GEN_START)
    assert not needs_start(status("starting"), GEN_START)
    # Finished by this generation (a crash after POST /start): never again.
    assert not needs_start(status("completed", 12, after), GEN_START)
    # Finished by an earlier generation: a new generation runs it again.
    assert needs_start(status("completed", 12, before), GEN_START)
    assert needs_start(status("failed", 3, before), GEN_START)


def test_report_currency():
    old = Report(report_id="r1", created_at=(GEN_START - timedelta(minutes=1)).isoformat())
    new = Report(report_id="r2", created_at=(GEN_START + timedelta(minutes=1)).isoformat())
    assert not is_current(old, GEN_START)
    assert is_current(new, GEN_START)


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


def test_artifact_key_is_lowercase_dashes():
    assert artifact_key("sim_AB12") == "autopilot-sim-ab12"


def test_crashed_runs_restart_at_once_then_with_growing_delays():
    from autopilot.recovery import restart_delay

    assert [restart_delay(n) for n in (1, 2, 3, 4, 8)] == [0.0, 2.0, 4.0, 8.0, 60.0]
