"""The status cache on the real stack: Prefect's event stream and progress poll keep a
remembered status current while another process (here: a second service without the cache,
as the CLI is) drives the auto-pilot; this process's own writes read back at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from autopilot.api_models import AutopilotStatus
from autopilot.service.operations import AutopilotService
from autopilot.service.status_cache import CacheTimings, StatusCache
from autopilot.settings import Settings
from tests.helpers import await_until
from tests.stack_fixtures import Stack

TIMINGS = CacheTimings(settle=0.1, confirm=1.0, progress_every=0.2)


def with_cached_reader(
    stack: Stack, body: Callable[[AutopilotService, AutopilotService, StatusCache], Awaitable[None]]
) -> None:
    """Run `body(reader with the cache, writer without it, the cache)`."""

    async def main() -> None:
        settings = Settings(backend_url=stack.simulator_url)
        reader, writer = AutopilotService(settings), AutopilotService(settings)
        await reader.store.open()
        try:
            async with anyio.create_task_group() as group:
                cache = await reader.start_status_cache(group, TIMINGS)
                await await_until(lambda: cache.healthy, timeout=30, message="cache connected")
                await body(reader, writer, cache)
                group.cancel_scope.cancel()
        finally:
            await reader.store.close()

    anyio.run(main)


def field(answer: AutopilotStatus | dict[str, Any], name: str) -> Any:
    return answer.get(name) if isinstance(answer, dict) else getattr(answer, name)


def test_a_remembered_status_follows_a_run_driven_by_another_process(stack: Stack):
    simulation_id = stack.create_simulation(rounds=30, round_seconds=0.2)
    rounds_seen: set[int] = set()

    async def body(reader: AutopilotService, writer: AutopilotService, cache: StatusCache):
        assert field(await reader.status(simulation_id), "mode") == "manual"
        await writer.config(simulation_id, "auto")

        async def mode_auto() -> bool:
            return str(field(await reader.status(simulation_id), "mode")) == "auto"

        await await_until(mode_auto, timeout=10, message="the variable event")
        await writer.start(simulation_id)

        async def completed() -> bool:
            answer = await reader.status(simulation_id)
            if field(answer, "current_step") == "monitoring":
                rounds_seen.add(field(answer, "progress_detail").get("current_round", -1))
            return str(field(answer, "status")) == "completed"

        await await_until(completed, timeout=120, interval=0.05, message="completed")
        fresh = await writer.status(simulation_id)
        remembered = await reader.status(simulation_id)
        for name in ("status", "current_step", "step_progress", "last_completed_step"):
            assert field(remembered, name) == field(fresh, name), name
        # Served from memory nearly always, yet it saw the monitoring rounds go by.
        assert cache.hits > 5 * cache.loads, (cache.hits, cache.loads)

    with_cached_reader(stack, body)
    assert len(rounds_seen - {-1}) >= 3, rounds_seen


def test_this_process_reads_its_own_writes_back_at_once(stack: Stack):
    simulation_id = stack.create_simulation(rounds=200, round_seconds=0.2)

    async def body(reader: AutopilotService, writer: AutopilotService, cache: StatusCache):
        await reader.status(simulation_id)  # remembered: no state yet
        await reader.config(simulation_id, "auto")
        assert str(field(await reader.status(simulation_id), "mode")) == "auto"
        started = await reader.start(simulation_id)
        answer = await reader.status(simulation_id)
        assert str(field(answer, "status")) == "active"
        assert field(answer, "flow_run_id") == started.flow_run_id
        reset = await reader.reset(simulation_id)
        answer = await reader.status(simulation_id)
        assert field(answer, "generation") == reset.generation
        assert str(field(answer, "status")) == "inactive"

    with_cached_reader(stack, body)
