"""The status endpoint's memory of Prefect's records, kept current by Prefect's event stream.

A status is four Prefect reads (the variable, the latest run, its task runs, its progress
artifact), 6-10 ms each on a quiet SQLite server. A UI polling many simulations pays that on
every call although almost nothing changes between two calls. So the shim answers from
memory and Prefect tells it what changed:

- run, step, new-artifact and variable events mark the simulation for a re-read shortly
  after (`settle`) and once more later (`confirm`), because a step's state reaches the
  database through the server's event pipeline and may land after the event is delivered;
- progress *updates* are not followed as events (the server emits none; the flow's client
  emits `prefect.artifact.updated`, one per round, which would cost a full re-read each):
  the latest progress of all cached active runs is read in one query every `progress_every`;
- this process's own writes (start, pause, ...) drop the entry: the next status reads anew;
- an entry is re-read in the background at half its `max_age` (5 s) and never served older,
  since Prefect silently drops events for a subscriber that falls 256 behind;
  re-reads run `refresh_concurrency` at a time.

The memory is trusted only while the event stream is connected and keeps up (events
arrive within `max_lag` of happening) and the progress poll succeeds: on any gap
everything is dropped and status reads Prefect directly, as it does in processes that do
not run the cache (the CLI).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus

from autopilot.models import SimulationConfig
from autopilot.names import variable_name
from autopilot.service.prefect_store import ChangeRefs
from autopilot.service.projection import ProgressRecord, RunSnapshot, is_active

logger = logging.getLogger(__name__)

StatusInputs = tuple[SimulationConfig | None, RunSnapshot | None]


@dataclass
class _Entry:
    inputs: StatusInputs
    loaded_at: float


@dataclass(frozen=True)
class CacheTimings:
    """How fast the cache follows changes; injectable so tests need not wait on defaults."""

    settle: float = 0.3
    confirm: float = 2.0
    progress_every: float = 1.0
    # Prefect drops events for a subscriber more than 256 behind (server/events/stream.py),
    # silently: this bounds how stale a lost event can leave a status.
    max_age: float = 5.0
    reconnect_every: float = 1.0
    capacity: int = 5000
    # Re-reads at once: one at a time, 100 age-based re-reads queued ahead of an event's
    # re-read held it back 13 s on a loaded 2-core box.
    refresh_concurrency: int = 8
    # Events delivered later than this after they happened: the stream is backed up (a
    # loaded server), so the memory may miss changes still in the pipe.
    max_lag: float = 2.0


class StatusCache:
    """Status inputs per simulation, served from memory while Prefect's events vouch for them."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[StatusInputs]],
        read_progress: Callable[[list[str]], Awaitable[dict[str, ProgressRecord]]],
        follow_changes: Callable[[Callable[[], None]], AsyncIterator[ChangeRefs]],
        timings: CacheTimings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._read_progress = read_progress
        self._follow_changes = follow_changes
        self.timings = timings or CacheTimings()
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Bumped by every change and invalidation: a read that began before one is not kept.
        self._versions: dict[str, int] = {}
        # Bumped whenever everything is forgotten (a gap in the stream): a read begun before
        # a gap may miss a change made in it.
        self._epoch = 0
        self._due: dict[str, float] = {}
        # Second re-reads, kept apart from `_due` so a burst of events cannot postpone them.
        self._confirms: dict[str, float] = {}
        # Re-reads under way: a hot simulation must not queue one per request meanwhile.
        self._refreshing: set[str] = set()
        self._connected = False
        self._lagging = False
        self._progress_ok_at: float | None = None
        self._wake = anyio.Event()
        self.hits = 0
        self.loads = 0

    # -- what the service calls ------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Connected to the event stream, and the last progress poll is recent."""
        if not self._connected or self._lagging or self._progress_ok_at is None:
            return False
        return self._clock() - self._progress_ok_at < 3 * self.timings.progress_every + 2.0

    async def get(self, simulation_id: str) -> StatusInputs:
        """The status inputs, from memory when that is safe, else read (and remembered)."""
        entry = self._entries.get(simulation_id)
        if entry is not None and self.healthy:
            age = self._clock() - entry.loaded_at
            if age < self.timings.max_age:
                self.hits += 1
                self._entries.move_to_end(simulation_id)
                stale_soon = age > self.timings.max_age / 2
                if stale_soon and simulation_id not in self._refreshing:
                    self._schedule(simulation_id, 0.0)
                return entry.inputs
        return await self._read(simulation_id)

    def invalidate(self, simulation_id: str) -> None:
        """This process changed the simulation: the next status must read it anew."""
        self._bump(simulation_id)
        self._entries.pop(simulation_id, None)

    # -- reading and remembering -----------------------------------------------------

    async def _read(self, simulation_id: str) -> StatusInputs:
        version, epoch = self._versions.get(simulation_id, 0), self._epoch
        healthy_before = self.healthy
        inputs = await self._load(simulation_id)
        self.loads += 1
        # Keep it only if nothing happened meanwhile that it may not show.
        unchanged = self._versions.get(simulation_id, 0) == version and self._epoch == epoch
        if healthy_before and self.healthy and unchanged:
            self._keep_newer_progress(simulation_id, inputs[1])
            self._entries[simulation_id] = _Entry(inputs, self._clock())
            self._entries.move_to_end(simulation_id)
            while len(self._entries) > self.timings.capacity:
                evicted, _ = self._entries.popitem(last=False)
                self._versions.pop(evicted, None)
        return inputs

    def _keep_newer_progress(self, simulation_id: str, loaded: RunSnapshot | None) -> None:
        """A progress poll that ran during the read may have seen newer progress: keep it."""
        entry = self._entries.get(simulation_id)
        remembered = entry.inputs[1] if entry else None
        if loaded is None or remembered is None or remembered.flow_run_id != loaded.flow_run_id:
            return
        newer = remembered.progress
        if newer is not None and (
            loaded.progress is None or _newer(newer.updated, loaded.progress.updated)
        ):
            loaded.progress = newer

    def _bump(self, simulation_id: str) -> None:
        self._versions[simulation_id] = self._versions.get(simulation_id, 0) + 1

    def _schedule(self, simulation_id: str, delay: float) -> None:
        due = self._clock() + delay
        self._due[simulation_id] = min(self._due.get(simulation_id, due), due)
        self._wake.set()

    def _forget_all(self) -> None:
        self._epoch += 1
        for simulation_id in self._entries:
            self._bump(simulation_id)
        self._entries.clear()
        self._due.clear()
        self._confirms.clear()

    # -- keeping it current (runs as a background task of the shim) -------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow events, poll progress and re-read what changed, until cancelled."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._follow)
            group.start_soon(self._poll_progress)
            group.start_soon(self._refresh_due)
            task_status.started()

    async def _follow(self) -> None:
        while True:
            try:
                async for refs in self._follow_changes(self._on_connected):
                    self._on_change(refs)
                logger.info("Prefect event stream closed; status reads Prefect directly")
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                logger.info("Prefect event stream unavailable (%s); status reads directly", exc)
            finally:
                self._connected = False
                self._forget_all()
            await anyio.sleep(self.timings.reconnect_every)

    def _on_connected(self) -> None:
        # Whatever happened before the subscription stood is unknown: start empty.
        self._forget_all()
        self._connected = True

    def _on_change(self, refs: ChangeRefs) -> None:
        if refs.occurred is not None:
            lag = (datetime.now(UTC) - refs.occurred).total_seconds()
            if lag > self.timings.max_lag and not self._lagging:
                logger.info("Prefect events arrive %.1fs late; status reads directly", lag)
                self._forget_all()
            self._lagging = lag > self.timings.max_lag
        touched = set(refs.simulation_ids) & self._entries.keys()
        if refs.flow_run_ids or refs.variable_names:
            for simulation_id, entry in self._entries.items():
                latest = entry.inputs[1]
                run_changed = latest is not None and latest.flow_run_id in refs.flow_run_ids
                if run_changed or variable_name(simulation_id) in refs.variable_names:
                    touched.add(simulation_id)
        for simulation_id in touched:
            self._bump(simulation_id)
            self._schedule(simulation_id, self.timings.settle)
            self._confirm_later(simulation_id)

    def _confirm_later(self, simulation_id: str) -> None:
        self._confirms[simulation_id] = self._clock() + self.timings.confirm

    async def _refresh_due(self) -> None:
        tick = min(self.timings.settle, 0.1) or 0.05
        limiter = anyio.CapacityLimiter(self.timings.refresh_concurrency)
        async with anyio.create_task_group() as group:
            while True:
                now = self._clock()
                for times in (self._due, self._confirms):
                    for simulation_id, due in list(times.items()):
                        if due <= now:
                            del times[simulation_id]
                            group.start_soon(self._refresh, simulation_id, limiter)
                self._wake = anyio.Event()
                with anyio.move_on_after(tick):
                    await self._wake.wait()

    async def _refresh(self, simulation_id: str, limiter: anyio.CapacityLimiter) -> None:
        self._refreshing.add(simulation_id)
        try:
            async with limiter:
                await self._refresh_now(simulation_id)
        finally:
            self._refreshing.discard(simulation_id)

    async def _refresh_now(self, simulation_id: str) -> None:
        if simulation_id not in self._entries or not self.healthy:
            return
        try:
            await self._read(simulation_id)
        except Exception as exc:
            # Prefect failing now also fails the progress poll, which drops the memory.
            logger.info("status re-read of %s failed: %s", simulation_id, exc)
            self._entries.pop(simulation_id, None)

    async def _poll_progress(self) -> None:
        while True:
            runs = self._active_runs()
            try:
                found = await self._read_progress(list(runs)) if runs else {}
            except Exception as exc:
                if self._progress_ok_at is not None:
                    logger.info("progress poll failed (%s); status reads directly", exc)
                self._progress_ok_at = None
                self._forget_all()
            else:
                self._progress_ok_at = self._clock()
                self._apply_progress(runs, found)
            await anyio.sleep(self.timings.progress_every)

    def _active_runs(self) -> dict[str, str]:
        """flow_run_id → simulation_id of every remembered run that may still progress."""
        return {
            latest.flow_run_id: simulation_id
            for simulation_id, entry in self._entries.items()
            if (latest := entry.inputs[1]) is not None and is_active(latest)
        }

    def _apply_progress(self, runs: dict[str, str], found: dict[str, Any]) -> None:
        for flow_run_id, progress in found.items():
            entry = self._entries.get(runs.get(flow_run_id, ""))
            latest = entry.inputs[1] if entry else None
            if latest is None or latest.flow_run_id != flow_run_id:
                continue
            current = latest.progress
            # Only forward: a poll that began before a re-read may return older progress.
            if current is None or _newer(progress.updated, current.updated):
                latest.progress = progress


def _newer(candidate: datetime | None, current: datetime | None) -> bool:
    return candidate is not None and (current is None or candidate > current)
