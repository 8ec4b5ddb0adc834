"""Tells dead runs from living ones, on any host, by watching their leases change.

A run is dead when this judge, watching without interruption, has seen the same (state,
lease mark) for a whole window: its process neither renewed the lease nor moved the run on.
That watch reads only this process's own monotonic clock (the one exception, PENDING
runs, is below), and whatever interrupts the watching (a failed Prefect read, this process
stalled longer than a window) clears every observation: after a Prefect outage no run can
renew, and none is judged until each has had a full window again.

A run with no process by design (paused, awaiting a confirmation) is never in the input: only
RUNNING and PENDING runs are judged. A PENDING run's process may still be starting (imports,
a loaded host), so it gets `pending_factor` windows. A run left PENDING by a runner that died
while starting it has no process and no lease at all; its age is also taken on one clock, the
Prefect server's (`pending_ages`): older than `pending_factor` windows there and watched for
one window, it is dead, so it is recovered even when this judge's watching keeps being
interrupted (a judge restarts with its worker). That compares the server's clock with the
submitting runner's, which must agree to within seconds.

The same-host shortcut (`died_here`): a RUNNING run whose current mark names this host and a
process that is gone died, no window needed. Only the mark of the run's current Running stint
counts: an older one (before a takeover or a pause) names a process that ended on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, StateType

from autopilot.liveness import LeaseMark
from autopilot.names import LEASE_LABEL
from autopilot.worker.executors import process_alive

# What the judge sees of one run: its state's id, whether it is PENDING, its lease label.
Sighting = tuple[UUID | None, bool, str | None]


@dataclass(frozen=True)
class _Seen:
    sighting: Sighting
    since: float


class LivenessJudge:
    """Remembers, per run, since when it has looked the same."""

    def __init__(
        self,
        window: float,
        pending_factor: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.pending_factor = pending_factor
        self._clock = clock
        self._seen: dict[UUID, _Seen] = {}
        self._last_look: float | None = None

    def observe(
        self, runs: Mapping[UUID, Sighting], pending_ages: Mapping[UUID, float] | None = None
    ) -> set[UUID]:
        """Record one look at every running run; returns those whose window has lapsed.
        `pending_ages`: how long each PENDING run has been pending, by the server's clock."""
        now = self._clock()
        if self._last_look is not None and now - self._last_look > self.window:
            self._seen.clear()  # this process was not watching: it cannot vouch for the gap
        self._last_look = now
        seen: dict[UUID, _Seen] = {}
        dead: set[UUID] = set()
        for run_id, sighting in runs.items():
            before = self._seen.get(run_id)
            if before is None or before.sighting != sighting:
                seen[run_id] = _Seen(sighting, now)
                continue
            seen[run_id] = before
            pending = sighting[1]
            watched = now - before.since
            limit = self.window * (self.pending_factor if pending else 1.0)
            age = (pending_ages or {}).get(run_id) if pending else None
            # Old on the server's clock, and watched for a window: a live run that was held up
            # by a Prefect outage proposes Running within that window after it ends.
            old_enough = age is not None and age >= limit and watched >= self.window
            if watched >= limit or old_enough:
                dead.add(run_id)
        self._seen = seen  # runs that stopped running are forgotten
        return dead

    def blind(self) -> None:
        """A look failed: forget everything seen so far."""
        self._seen.clear()
        self._last_look = None


def died_here(run: FlowRun, host_id: str, alive: Callable[[int], bool] = process_alive) -> bool:
    """Whether the run's current executor is a process of this host that is gone. A reused
    pid looks alive: the run then waits for its window, never the other way round."""
    if run.state is None or run.state.type != StateType.RUNNING:
        return False
    mark = LeaseMark.parse(run.labels.get(LEASE_LABEL))
    return (
        mark is not None
        and mark.host == host_id
        and mark.is_of(run.state.id)
        and not alive(mark.pid)
    )
