"""How long a simulation has left: rounds per hour from what the monitor saw, and the ETA.

Pure: the monitor feeds `RoundClock` its polls (wall time, round); `estimate` turns them into
a rate and a time of completion. Made to hold up on a 72-hour run:
- A pause, a worker restart or a Prefect outage leaves a hole in the polls. Across a hole the
  rounds may or may not have moved (a paused backend does not advance), so the time of a hole
  never enters the rate: polls further apart than `gap` seconds start a new segment.
- The first rounds are often slow (agents warming up, caches cold): rounds below
  `warmup_rounds` count only while nothing later has been seen.
- The pace drifts over days: only the last `window` seconds of observed time count.
- A fresh attempt (after a restart) has seen nothing yet: until it has, the backend's own
  average since the simulation started (`fallback_rate`, on the backend's clock alone) serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# Polls further apart than this mean nobody was watching in between.
DEFAULT_GAP = 120.0
DEFAULT_WINDOW = 3600.0
DEFAULT_WARMUP_ROUNDS = 2


@dataclass(frozen=True)
class Estimate:
    rounds_per_hour: float
    eta_seconds: float
    estimated_completion_at: datetime

    def text(self) -> str:
        return f"{self.rounds_per_hour:.0f} rounds/h, about {duration_text(self.eta_seconds)} left"

    def as_detail(self) -> dict[str, float | str]:
        """The three fields of `progress_detail`."""
        return {
            "rounds_per_hour": round(self.rounds_per_hour, 2),
            "eta_seconds": round(self.eta_seconds),
            "estimated_completion_at": self.estimated_completion_at.isoformat(),
        }


@dataclass
class Segment:
    """Uninterrupted watching: the first poll, the first poll at each later round (a round's
    start, to within a poll), and the latest poll."""

    first: tuple[float, int]
    starts: list[tuple[float, int]] = field(default_factory=list)
    last: tuple[float, int] = (0.0, 0)

    def __post_init__(self) -> None:
        self.last = self.first


@dataclass
class RoundClock:
    """The polls of one monitoring attempt, as segments of uninterrupted watching."""

    gap: float = DEFAULT_GAP
    segments: list[Segment] = field(default_factory=list)
    # A 72-hour run has thousands of rounds: the window needs only the recent ones.
    max_starts: int = 2000

    def observe(self, at: float, current_round: int) -> None:
        last = self.segments[-1].last if self.segments else None
        if last is None or at - last[0] > self.gap or at < last[0]:
            self.segments.append(Segment((at, current_round)))
            return
        segment = self.segments[-1]
        if current_round != last[1]:
            segment.starts.append((at, current_round))
        segment.last = (at, current_round)
        while sum(len(s.starts) for s in self.segments) > self.max_starts:
            if len(self.segments) > 1:
                self.segments.pop(0)
            else:
                segment.starts.pop(0)


def observed_rate(
    segments: list[Segment],
    window: float = DEFAULT_WINDOW,
    warmup_rounds: int = DEFAULT_WARMUP_ROUNDS,
) -> float | None:
    """Rounds per second over the last `window` s of watching, from one round's start to a
    later one's (None: no whole round seen yet). A round under way for longer than the
    rounds before it took counts too: a slowdown shows before the round ends."""
    past_warmup = any(r >= warmup_rounds for segment in segments for _, r in segment.starts)
    rounds = seconds = 0.0
    for segment in reversed(segments):
        starts = [p for p in segment.starts if not past_warmup or p[1] >= warmup_rounds]
        if len(starts) < 2:
            continue
        budget = window - seconds
        end_t, end_r = starts[-1]
        begin_t, begin_r = next((t, r) for t, r in starts if end_t - t <= budget)
        if (begin_t, begin_r) == (end_t, end_r):
            begin_t, begin_r = starts[-2]  # the window is shorter than one round
        span, done = end_t - begin_t, end_r - begin_r
        # The round under way, once it has run longer than the rounds before took.
        ongoing = segment.last[0] - end_t
        span += max(0.0, ongoing - span / done) if done > 0 else 0.0
        rounds += done
        seconds += span
        if seconds >= window:
            break
    if rounds <= 0 or seconds <= 0:
        return None
    return rounds / seconds


def estimate(
    segments: list[Segment],
    current_round: int,
    total_rounds: int,
    now: datetime,
    fallback_rate: float | None = None,
    window: float = DEFAULT_WINDOW,
    warmup_rounds: int = DEFAULT_WARMUP_ROUNDS,
) -> Estimate | None:
    """The pace and the time left, or None while there is nothing to go on."""
    rate = observed_rate(segments, window, warmup_rounds) or fallback_rate
    if rate is None or rate <= 0 or total_rounds <= 0:
        return None
    left = max(0, total_rounds - current_round) / rate
    return Estimate(rate * 3600, left, now + timedelta(seconds=left))


def backend_rate(
    started_at: str | None, updated_at: str | None, current_round: int
) -> float | None:
    """Rounds per second since the simulation started, both ends on the backend's clock (so a
    skewed backend clock does not matter); None if either time is missing or unreadable."""
    if not started_at or not updated_at or current_round <= 0:
        return None
    try:
        started = _parse(started_at)
        updated = _parse(updated_at)
    except ValueError:
        return None
    elapsed = (updated - started).total_seconds()
    return current_round / elapsed if elapsed > 0 else None


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration_text(seconds: float) -> str:
    """A time left as people say it: "42s", "17m", "3h 05m", "2d 04h"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"
