"""`GET /metrics`: the auto-pilot in Prometheus' text format, for the people who run it.

Two sources, because the work happens in flow processes the shim does not share memory with:
- At scrape time, from Prefect (two reads): how many auto-pilots are in each status and step
  (the latest run of each simulation among the newest 200 auto-pilot runs), and the status
  cache's counters.
- From Prefect's event stream, which the shim follows while it runs: each step's ends by
  outcome, their durations, and runs that crashed. Counters start at zero when the shim
  starts (as Prometheus counters do after a restart); events while the stream is down are
  not counted.
- The backend errors the shim's own calls met (its checks that a simulation exists, its
  stops), by error code. The flow processes ride out theirs and log them.

Metric names (all prefixed `autopilot_`):
    autopilots{status,step}                  gauge
    step_runs_total{step,outcome}            counter   outcome: Completed, Cached, Failed, ...
    step_duration_seconds{step}              histogram steps that ended Completed or Failed
    crash_restarts_total                     counter   auto-pilot runs that crashed
    backend_errors_total{kind}               counter
    status_cache_hits_total, status_cache_reads_total, status_cache_healthy
    prefect_reachable                        gauge     whether this scrape read Prefect
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autopilot import names
from autopilot.errors import AutopilotError
from autopilot.models import Step
from autopilot.service.operations import AutopilotService
from autopilot.service.projection import status_of

logger = logging.getLogger(__name__)

STEPS = frozenset(step.value for step in Step)
# From seconds (a test's steps) to the 72 hours a monitoring step may take.
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)
RECONNECT_SECONDS = 5.0


class _Snapshot(Collector):
    """The gauges read from Prefect at scrape time (filled in by `ShimMetrics.refresh`)."""

    def __init__(self) -> None:
        self.autopilots: dict[tuple[str, str], int] = {}
        self.cache: tuple[int, int, bool] | None = None
        self.prefect_reachable = True

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "autopilot_autopilots",
            "Auto-pilots by status and step (each simulation's latest run among the newest "
            "200 auto-pilot runs).",
            labels=["status", "step"],
        )
        for (status, step), count in sorted(self.autopilots.items()):
            gauge.add_metric([status, step], count)
        yield gauge
        yield GaugeMetricFamily(
            "autopilot_prefect_reachable",
            "1 if the last scrape read Prefect; 0 if not (autopilots then shows that read's).",
            value=int(self.prefect_reachable),
        )
        if self.cache is not None:
            hits, reads, healthy = self.cache
            yield CounterMetricFamily(
                "autopilot_status_cache_hits", "Status answers served from memory.", value=hits
            )
            yield CounterMetricFamily(
                "autopilot_status_cache_reads", "Status answers read from Prefect.", value=reads
            )
            yield GaugeMetricFamily(
                "autopilot_status_cache_healthy",
                "1 while status answers from memory, 0 while it reads Prefect each time.",
                value=int(healthy),
            )


class ShimMetrics:
    """The shim's metrics: one registry per app, so tests can run several shims."""

    def __init__(self, service: AutopilotService) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.step_runs = Counter(
            "autopilot_step_runs",
            "Steps (task runs) that ended, by outcome (Prefect's state name).",
            ["step", "outcome"],
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "autopilot_step_duration_seconds",
            "How long a step ran until it completed or failed (one attempt of it).",
            ["step"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.crash_restarts = Counter(
            "autopilot_crash_restarts",
            "Auto-pilot runs that crashed (each is restarted on its own id, capped).",
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "autopilot_backend_errors",
            "Backend errors the shim's own calls met, by error code.",
            ["kind"],
            registry=self.registry,
        )
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        service.on_backend_error = lambda kind: self.backend_errors.labels(kind).inc()

    async def refresh(self) -> None:
        """Read what the gauges show (two Prefect reads); Prefect unreachable leaves the
        last reading, and says so."""
        cache = self.service.status_cache
        self._snapshot.cache = None if cache is None else (cache.hits, cache.loads, cache.healthy)
        store = self.service.store
        try:
            latest = await store.latest_runs()
            progress = await store.latest_progress([run.flow_run_id for run in latest.values()])
        except AutopilotError as exc:
            logger.info("metrics: Prefect not read (%s)", exc.message)
            self._snapshot.prefect_reachable = False
            return
        self._snapshot.prefect_reachable = True
        counts: dict[tuple[str, str], int] = {}
        for run in latest.values():
            record = progress.get(run.flow_run_id)
            step = record.step if record is not None and record.step in STEPS else "idle"
            key = (status_of(run).value, str(step))
            counts[key] = counts.get(key, 0) + 1
        self._snapshot.autopilots = counts

    def observe(self, event: Any) -> None:
        """Count one Prefect event (a step's end, a run's crash) of the auto-pilot flow."""
        if not _of_the_auto_pilot(event):
            return
        if event.event == "prefect.flow-run.Crashed":
            self.crash_restarts.inc()
            return
        if not event.event.startswith("prefect.task-run."):
            return
        step = names.step_of_task_run(event.resource.get("prefect.resource.name") or "")
        state = (event.payload or {}).get("validated_state") or {}
        if step not in STEPS or state.get("type") not in _ENDED:
            return
        outcome = str(state.get("name") or state.get("type"))
        self.step_runs.labels(step, outcome).inc()
        started = _start_time((event.payload or {}).get("task_run") or {})
        # A cache hit did no work: it would only blur the durations.
        timed = state.get("type") in {"COMPLETED", "FAILED"} and outcome != "Cached"
        if started is not None and timed:
            duration = (event.occurred - started).total_seconds()
            self.step_duration.labels(step).observe(max(0.0, duration))

    async def follow_events(self) -> None:
        """Count the auto-pilot's events until cancelled, reconnecting after a drop."""
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        event_filter = EventFilter(
            event=EventNameFilter(prefix=["prefect.task-run.", "prefect.flow-run.Crashed"])
        )
        while True:
            try:
                async with PrefectEventSubscriber(
                    filter=event_filter, reconnection_attempts=0
                ) as subscriber:
                    async for event in subscriber:
                        self.observe(event)
            except Exception as exc:  # the stream dropped: the counters miss the gap
                logger.info("metrics: event stream lost (%s); reconnecting", exc)
            await anyio.sleep(RECONNECT_SECONDS)


_ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _of_the_auto_pilot(event: Any) -> bool:
    """Whether the event belongs to a run of the auto-pilot flow (its related flow)."""
    return any(
        resource.get("prefect.resource.role") == "flow"
        and resource.get("prefect.resource.name") == names.FLOW_NAME
        for resource in event.related
    )


def _start_time(task_run: dict[str, Any]) -> datetime | None:
    value = task_run.get("start_time")
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
