"""The simulator's clock: every timestamp it writes or serves comes from `now_iso()`.

Two settings let a test stand in for a backend whose timestamps the orchestrator must never
compare with its own clock:
- offset seconds: the simulator's clock runs that far ahead of the real one (negative =
  behind);
- zone: `utc` writes ISO 8601 with `+00:00`; an offset like `+08:00` writes naive local
  wall-clock time in that zone with no suffix at all, as the real multimo does.

The settings live in environment variables (`SIMULATOR_CLOCK_OFFSET_SECONDS`,
`SIMULATOR_TIMESTAMP_ZONE`) rather than in a module global: run processes are spawned with a
copy of the server's environment, so they inherit the same clock without any flag plumbing.
Only timestamps are skewed; deadlines (fault durations) and log lines keep the real clock,
since tests compare those with their own.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

OFFSET_ENV = "SIMULATOR_CLOCK_OFFSET_SECONDS"
ZONE_ENV = "SIMULATOR_TIMESTAMP_ZONE"
UTC_NAME = "utc"
_ZONE = re.compile(r"^([+-])(\d\d):(\d\d)$")
MAX_OFFSET_SECONDS = 100 * 365 * 86400  # beyond this datetime arithmetic overflows soon


def parse_offset(value: float | str) -> float:
    offset = float(value)
    if not math.isfinite(offset) or abs(offset) > MAX_OFFSET_SECONDS:
        raise ValueError(f"clock offset must be finite and within a century, not {value!r}")
    return offset


def parse_zone(text: str) -> timezone | None:
    """None for `utc` (aware output), else the fixed zone naive times are written in."""
    if text.strip().lower() == UTC_NAME:
        return None
    match = _ZONE.match(text.strip())
    if not match or int(match.group(2)) > 23 or int(match.group(3)) > 59:
        raise ValueError(f"timestamp zone must be 'utc' or an offset like +08:00, not {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def configure(offset_seconds: float = 0.0, zone: str = UTC_NAME) -> None:
    """Set this process's clock (and, through the environment, its future children's)."""
    # Refuse bad settings here, not at the first timestamp (or in a run process).
    offset = parse_offset(offset_seconds)
    parse_zone(zone)
    os.environ[OFFSET_ENV] = repr(offset)
    os.environ[ZONE_ENV] = zone.strip()


@lru_cache(maxsize=8)
def _settings(offset: str, zone: str) -> tuple[timedelta, timezone | None]:
    # Cached on the raw strings: parsing once per distinct setting, not once per timestamp.
    return timedelta(seconds=parse_offset(offset or 0)), parse_zone(zone or UTC_NAME)


def now_iso() -> str:
    offset, zone = _settings(os.environ.get(OFFSET_ENV, ""), os.environ.get(ZONE_ENV, ""))
    now = datetime.now(UTC) + offset
    # Always with microseconds: fixed-width strings keep sorting them textually sound.
    if zone is None:
        return now.isoformat(timespec="microseconds")
    return now.astimezone(zone).replace(tzinfo=None).isoformat(timespec="microseconds")
