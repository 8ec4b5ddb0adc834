"""The ETA estimator on recorded poll series: (wall second, round) as the monitor saw them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopilot.eta import RoundClock, backend_rate, duration_text, estimate, observed_rate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def polls(
    round_seconds: list[float], poll: float = 10.0, t0: float = 0.0
) -> list[tuple[float, int]]:
    """What a monitor polling every `poll` s records while round i takes round_seconds[i]."""
    ends, t = [], t0
    for duration in round_seconds:
        t += duration
        ends.append(t)
    series, at = [], t0
    while at <= ends[-1]:
        series.append((at, sum(1 for end in ends if end <= at)))
        at += poll
    return series


def clock_of(*series: list[tuple[float, int]], gap: float = 120.0) -> RoundClock:
    clock = RoundClock(gap=gap)
    for run in series:
        for at, current_round in run:
            clock.observe(at, current_round)
    return clock


def per_hour(clock: RoundClock, **kwargs: float) -> float:
    rate = observed_rate(clock.segments, **kwargs)  # type: ignore[arg-type]
    assert rate is not None
    return rate * 3600


def test_a_steady_run_gives_its_pace_and_the_time_left():
    series = polls([60.0] * 30)
    clock = clock_of(series)
    last_round = series[-1][1]
    found = estimate(clock.segments, last_round, 100, NOW)
    assert found is not None
    assert found.rounds_per_hour == pytest.approx(60, rel=0.02)
    assert found.eta_seconds == pytest.approx((100 - last_round) * 60, rel=0.02)
    assert found.estimated_completion_at == NOW + timedelta(seconds=found.eta_seconds)
    assert set(found.as_detail()) == {"rounds_per_hour", "eta_seconds", "estimated_completion_at"}


def test_slow_first_rounds_do_not_drag_the_pace_down():
    series = polls([600.0, 600.0] + [60.0] * 20)
    assert per_hour(clock_of(series)) == pytest.approx(60, rel=0.03)
    # The naive average since the start would say about 33 rounds per hour.
    naive = series[-1][1] / series[-1][0] * 3600
    assert naive < 35


def test_only_warm_up_rounds_seen_still_gives_an_estimate():
    assert per_hour(clock_of(polls([300.0, 300.0, 300.0]))) == pytest.approx(12, rel=0.05)


def test_a_pause_is_not_counted_as_a_slow_round():
    before = polls([60.0] * 30)
    t, r = before[-1]
    # Twenty minutes without polls (paused: the backend did not advance), then the same pace.
    # Without the gap rule the last hour would read as 40 rounds per hour.
    after = [(at + t + 1200, rr + r) for at, rr in polls([60.0] * 10)]
    assert per_hour(clock_of(before, after)) == pytest.approx(60, rel=0.03)


def test_an_unwatched_stretch_counts_for_nothing_whatever_moved_in_it():
    before = polls([60.0] * 30)
    t, r = before[-1]
    # A worker restart of 30 minutes in which the backend, paused part of the time, did only
    # 10 rounds nobody saw start or end.
    after = [(at + t + 1800, rr + r + 10) for at, rr in polls([60.0] * 10)]
    assert per_hour(clock_of(before, after)) == pytest.approx(60, rel=0.03)


def test_a_fresh_attempt_uses_the_backends_average_until_it_saw_a_whole_round():
    fallback = backend_rate("2026-12-06T08:00:00Z", "2026-12-06T10:00:00Z", 100)
    assert fallback is not None and fallback * 3600 == pytest.approx(50)
    fresh = clock_of([(0.0, 100), (10.0, 100), (20.0, 101)])  # one round start seen, not two
    found = estimate(fresh.segments, 101, 200, NOW, fallback_rate=fallback)
    assert found is not None and found.rounds_per_hour == pytest.approx(50)
    assert estimate(fresh.segments, 101, 200, NOW) is None


def test_the_pace_follows_a_slowdown_within_the_window():
    series = polls([60.0] * 60 + [120.0] * 40)
    assert per_hour(clock_of(series), window=3600) == pytest.approx(30, rel=0.05)


def test_a_round_taking_far_longer_than_the_others_shows_before_it_ends():
    series = polls([60.0] * 10 + [3000.0])
    steady = per_hour(clock_of(series[: 10 * 6 + 1]))
    slowed = per_hour(clock_of(series[:-1]))
    assert steady == pytest.approx(60, rel=0.03)
    assert slowed < steady / 3


def test_a_finished_simulation_has_nothing_left():
    clock = clock_of(polls([60.0] * 10))
    found = estimate(clock.segments, 10, 10, NOW)
    assert found is not None and found.eta_seconds == 0


@pytest.mark.parametrize(
    ("started", "updated", "done"),
    [(None, "2026-12-06T10:00:00Z", 5), ("2026-12-06T10:00:00", "garbage", 5),
     ("2026-12-06T10:00:00", "2026-12-06T10:00:00", 5),
     ("2026-12-06T09:00:00", "2026-12-06T10:00:00", 0)],
)  # fmt: skip
def test_no_backend_average_without_two_readable_times_and_some_rounds(started, updated, done):
    assert backend_rate(started, updated, done) is None


def test_a_72_hour_run_keeps_a_bounded_record():
    clock = RoundClock(max_starts=500)
    for at, current_round in polls([10.0] * 5000, poll=5.0):
        clock.observe(at, current_round)
    assert sum(len(segment.starts) for segment in clock.segments) <= 500
    assert per_hour(clock) == pytest.approx(360, rel=0.02)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3, "0s"), (42, "42s"), (17 * 60 + 5, "17m"), (3 * 3600 + 5 * 60, "3h 05m"),
     (52 * 3600, "2d 04h")],
)  # fmt: skip
def test_time_left_reads_as_people_say_it(seconds: float, text: str):
    assert duration_text(seconds) == text


def test_status_watch_shows_the_pace_and_the_time_left():
    from rich.progress import Progress

    from autopilot.cli.watch import _draw

    progress = Progress()
    bars = {step: progress.add_task(step, total=100, detail="") for step in ("monitoring",)}
    detail = {
        "current_round": 7, "total_rounds": 40, "twitter_actions": 3, "reddit_actions": 4,
        "rounds_per_hour": 59.6, "eta_seconds": 1990, "estimated_completion_at": "x",
    }  # fmt: skip
    _draw(progress, bars, "monitoring", {"progress_detail": detail, "step_progress": 17})
    shown = progress.tasks[0].fields["detail"]
    assert shown.startswith("round 7/40") and shown.endswith("60 rounds/h, 33m left"), shown
