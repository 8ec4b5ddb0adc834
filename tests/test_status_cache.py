"""The status cache's rules, with its three Prefect-facing collaborators replaced by an
in-memory record of "what Prefect holds" and a stream of change notices the test controls.

What must hold: a remembered answer is served only while the stream is connected and the
progress poll works; a change notice leads to a re-read (and a second one later, for writes
that land after their event); this process's own writes are read back at once; a read that
raced a change is not remembered. The real event stream is exercised in tests/api and
tests/faults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from autopilot.models import SimulationConfig
from autopilot.service.prefect_store import ChangeRefs
from autopilot.service.projection import ProgressRecord, RunSnapshot
from autopilot.service.status_cache import CacheTimings, StatusCache, StatusInputs
from tests.helpers import await_until

FAST = CacheTimings(settle=0.02, confirm=0.3, progress_every=0.02, max_age=60, reconnect_every=0.02)


def a_run(flow_run_id: str = "run-1", state_type: str = "RUNNING") -> RunSnapshot:
    return RunSnapshot(
        flow_run_id=flow_run_id,
        generation=0,
        state_type=state_type,
        state_name=state_type.title(),
        state_message=None,
        state_timestamp=datetime.now(UTC),
        created=None,
        start_time=None,
        end_time=None,
        run_count=1,
    )


def progress(percent: int) -> ProgressRecord:
    return ProgressRecord(percent, "monitoring", {}, f"{percent}%", datetime.now(UTC))


class FakePrefect:
    """What Prefect holds, how often it was read, and a change stream to push notices on."""

    def __init__(self) -> None:
        self.records: dict[str, StatusInputs] = {}
        self.progress: dict[str, ProgressRecord] = {}
        self.loads = 0
        self.progress_fails = False
        self.load_gate: anyio.Event | None = None
        self.load_seconds = 0.0
        self.loading = anyio.Event()
        self._send, self._receive = anyio.create_memory_object_stream[ChangeRefs | None](100)
        self.connections = 0

    async def load(self, simulation_id: str) -> StatusInputs:
        self.loads += 1
        config, run = self.records.get(simulation_id, (None, None))
        snapshot = (config.model_copy() if config else None, replace(run) if run else None)
        self.loading.set()
        if self.load_gate is not None:
            await self.load_gate.wait()
        if self.load_seconds:
            await anyio.sleep(self.load_seconds)  # a slow Prefect, as on a loaded box
        return snapshot

    async def read_progress(self, flow_run_ids: list[str]) -> dict[str, ProgressRecord]:
        if self.progress_fails:
            raise ConnectionError("Prefect is down")
        return {i: p for i, p in self.progress.items() if i in flow_run_ids}

    async def follow_changes(self, connected: Callable[[], None]) -> AsyncIterator[ChangeRefs]:
        self.connections += 1
        connected()
        async for refs in self._receive:
            if refs is None:  # the test dropped the connection
                raise ConnectionError("stream dropped")
            yield refs

    async def notify(
        self, simulation_id: str = "", flow_run_id: str = "", name: str = "", late: float = 0.0
    ) -> None:
        await self._send.send(
            ChangeRefs(
                frozenset([simulation_id] if simulation_id else []),
                frozenset([flow_run_id] if flow_run_id else []),
                frozenset([name] if name else []),
                datetime.now(UTC) - timedelta(seconds=late),
            )
        )

    async def drop_stream(self) -> None:
        await self._send.send(None)


def run_cache_test(body: Callable[[StatusCache, FakePrefect], Any]) -> None:
    async def main() -> None:
        fake = FakePrefect()
        cache = StatusCache(fake.load, fake.read_progress, fake.follow_changes, FAST)
        async with anyio.create_task_group() as group:
            await group.start(cache.run)
            await await_until(lambda: cache.healthy, timeout=5, message="cache healthy")
            await body(cache, fake)
            group.cancel_scope.cancel()

    anyio.run(main)


def mode_of(inputs: StatusInputs) -> str | None:
    return inputs[0].mode.value if inputs[0] else None


def test_a_remembered_answer_is_served_without_reading_prefect_again():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="auto"), a_run())
        for _ in range(5):
            assert mode_of(await cache.get("sim")) == "auto"
        assert (fake.loads, cache.loads, cache.hits) == (1, 1, 4)

    run_cache_test(body)


def test_a_change_notice_brings_the_new_record_in_without_a_request_waiting():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="manual"), a_run())
        await cache.get("sim")
        fake.records["sim"] = (SimulationConfig(mode="auto"), a_run())
        # No notice yet: the remembered answer stands (proof it is not read each time).
        assert mode_of(await cache.get("sim")) == "manual"
        await fake.notify(simulation_id="sim")
        await await_until(lambda: fake.loads == 2, timeout=5, message="the re-read")
        assert mode_of(await cache.get("sim")) == "auto"

    run_cache_test(body)


@pytest.mark.parametrize(
    "notice", [{"flow_run_id": "run-1"}, {"name": "autopilot-sim"}], ids=["by run", "by variable"]
)
def test_notices_about_the_latest_run_or_the_variable_reach_the_simulation(notice: Any):
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(), a_run("run-1"))
        await cache.get("sim")
        fake.records["sim"] = (SimulationConfig(), a_run("run-1", "COMPLETED"))
        await fake.notify(**notice)
        await await_until(
            lambda: cache._entries["sim"].inputs[1].state_type == "COMPLETED",  # type: ignore[union-attr]
            timeout=5,
            message="the completed state",
        )

    run_cache_test(body)


def test_a_write_landing_after_its_notice_is_picked_up_by_the_second_read():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="manual"), a_run())
        await cache.get("sim")
        await fake.notify(simulation_id="sim")
        await await_until(lambda: fake.loads == 2, timeout=5, message="the settle re-read")
        # The database write lands only now, after the first re-read.
        fake.records["sim"] = (SimulationConfig(mode="auto"), a_run())
        assert mode_of(await cache.get("sim")) == "manual"
        await await_until(lambda: fake.loads == 3, timeout=5, message="the confirm re-read")
        assert mode_of(await cache.get("sim")) == "auto"

    run_cache_test(body)


def test_an_own_write_is_read_back_at_once():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="manual"), None)
        await cache.get("sim")
        fake.records["sim"] = (SimulationConfig(mode="auto"), None)
        cache.invalidate("sim")
        assert mode_of(await cache.get("sim")) == "auto"

    run_cache_test(body)


async def read_while(
    cache: StatusCache, fake: FakePrefect, meanwhile: Callable[[], Awaitable[None]]
) -> None:
    """One status read of "sim" that waits in Prefect until `meanwhile` has happened."""
    fake.records["sim"] = (SimulationConfig(mode="manual"), None)
    fake.load_gate = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(cache.get, "sim")
        await fake.loading.wait()
        await meanwhile()
        fake.load_gate.set()
    fake.load_gate = None


def test_a_read_that_raced_a_change_is_not_remembered():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        async def write_finishes() -> None:
            cache.invalidate("sim")

        await read_while(cache, fake, write_finishes)
        assert "sim" not in cache._entries
        fake.records["sim"] = (SimulationConfig(mode="auto"), None)
        assert mode_of(await cache.get("sim")) == "auto"

    run_cache_test(body)


def test_progress_of_a_remembered_active_run_is_polled_in():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(), a_run("run-1"))
        fake.progress["run-1"] = progress(10)
        await cache.get("sim")
        fake.progress["run-1"] = progress(60)

        def remembered_percent() -> int | None:
            run = cache._entries["sim"].inputs[1]
            return run.progress.percent if run and run.progress else None

        await await_until(lambda: remembered_percent() == 60, timeout=5, message="60 %")
        run = (await cache.get("sim"))[1]
        assert run is not None and run.progress is not None and run.progress.percent == 60
        assert fake.loads == 1

    run_cache_test(body)


def test_nothing_is_served_from_memory_while_the_stream_is_down():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="manual"), None)
        await cache.get("sim")
        await fake.drop_stream()
        await await_until(lambda: not cache.healthy, timeout=5, message="cache unhealthy")
        before = fake.loads
        fake.records["sim"] = (SimulationConfig(mode="auto"), None)
        assert mode_of(await cache.get("sim")) == "auto"  # read, not remembered
        await cache.get("sim")
        assert fake.loads >= before + 2
        # Reconnected: it starts empty, then remembers again.
        await await_until(lambda: cache.healthy, timeout=5, message="cache healthy again")
        assert fake.connections == 2
        await cache.get("sim")
        loads = fake.loads
        await cache.get("sim")
        assert fake.loads == loads

    run_cache_test(body)


def test_nothing_is_served_from_memory_while_the_progress_poll_fails():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="manual"), a_run())
        await cache.get("sim")
        fake.progress_fails = True
        await await_until(lambda: not cache.healthy, timeout=5, message="cache unhealthy")
        assert cache._entries == {}
        fake.records["sim"] = (SimulationConfig(mode="auto"), a_run())
        assert mode_of(await cache.get("sim")) == "auto"

    run_cache_test(body)


def test_a_read_that_spanned_a_gap_in_the_stream_is_not_remembered():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        async def stream_drops_and_returns() -> None:
            # A change made in the gap may be missing from what the read saw.
            connections = fake.connections
            await fake.drop_stream()
            await await_until(lambda: fake.connections > connections and cache.healthy, timeout=5)

        await read_while(cache, fake, stream_drops_and_returns)
        assert "sim" not in cache._entries

    run_cache_test(body)


def test_a_burst_of_re_reads_is_worked_off_in_parallel():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        others = [f"other-{i}" for i in range(24)]
        for simulation_id in [*others, "sim"]:
            fake.records[simulation_id] = (SimulationConfig(mode="manual"), None)
            await cache.get(simulation_id)
        fake.load_seconds = 0.25
        for simulation_id in others:
            await fake.notify(simulation_id=simulation_id)
        fake.records["sim"] = (SimulationConfig(mode="auto"), None)
        await fake.notify(simulation_id="sim")
        # One at a time, 25 re-reads of 0.25 s would take over 6 s; 8 at a time, about 1 s.
        await await_until(
            lambda: mode_of(cache._entries["sim"].inputs) == "auto" if "sim" in cache._entries
            else False,
            timeout=3, message="the re-read behind the burst",
        )  # fmt: skip

    run_cache_test(body)


def test_nothing_is_served_from_memory_while_events_arrive_late():
    async def body(cache: StatusCache, fake: FakePrefect) -> None:
        fake.records["sim"] = (SimulationConfig(mode="manual"), None)
        await cache.get("sim")
        # A backed-up server: changes still in its pipe may be missing from memory.
        await fake.notify(simulation_id="other", late=10)
        await await_until(lambda: not cache.healthy, timeout=5, message="cache distrusted")
        fake.records["sim"] = (SimulationConfig(mode="auto"), None)
        assert mode_of(await cache.get("sim")) == "auto"
        # Caught up: trusted again.
        await fake.notify(simulation_id="other")
        await await_until(lambda: cache.healthy, timeout=5, message="cache trusted again")
        await cache.get("sim")
        loads = fake.loads
        await cache.get("sim")
        assert fake.loads == loads

    run_cache_test(body)
