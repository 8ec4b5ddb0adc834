"""How many Prefect API calls each operation costs, counted on the wire (an httpx event hook
on the service's own Prefect client), against the session's real Prefect server, worker and
simulator. A bound here is a regression test: every read is ~2-10 ms of a start's answer and
a row scan on the server, per click."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import httpx

from autopilot.api_models import Mode
from autopilot.service.operations import AutopilotService
from autopilot.service.prefect_store import PrefectStore
from autopilot.settings import Settings
from tests.stack_fixtures import Stack


class CountingStore(PrefectStore):
    """The product's Prefect adapter, with every request it sends counted."""

    def __init__(self, deployment_name: str) -> None:
        self.calls: Counter[str] = Counter()

        async def count(request: httpx.Request) -> None:
            self.calls[f"{request.method} {request.url.path.removeprefix('/api')}"] += 1

        super().__init__(deployment_name, httpx_settings={"event_hooks": {"request": [count]}})

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


def reads(calls: Counter[str]) -> int:
    """Calls that only read (Prefect's filters are POSTs to `/filter`)."""
    return sum(n for call, n in calls.items() if call.startswith("GET") or "/filter" in call)


def say(label: str, calls: Counter[str]) -> str:
    return f"{label}: {reads(calls)} reads of {sum(calls.values())} calls: {dict(calls)}"


def test_a_start_costs_few_prefect_calls(stack: Stack, capsys: Any):
    settings = Settings(backend_url=stack.simulator_url, status_cache=False)
    store = CountingStore(settings.deployment_name)
    service = AutopilotService(settings, store=store)
    sim = stack.create_simulation(rounds=40, round_seconds=0.3)
    other = stack.create_simulation(rounds=40, round_seconds=0.3)
    counted: dict[str, Counter[str]] = {}

    async def main() -> None:
        await store.open()
        try:
            await service.config(sim, Mode.AUTO.value)
            store.take()
            started = await service.start(sim)
            counted["first start"] = store.take()
            again = await service.start(sim)  # already active: answers with the run
            counted["start while active"] = store.take()
            assert again.flow_run_id == started.flow_run_id
            await service.config(other, Mode.AUTO.value)
            store.take()
            await service.start(other)
            counted["next simulation's start"] = store.take()
            await service.stop(sim)
            await service.stop(other)
        finally:
            await store.close()

    anyio.run(main)
    report = "\n".join(say(label, calls) for label, calls in counted.items())
    with capsys.disabled():
        print(f"\n{report}")
    # The first start: the variable, the runs, the deployment (once per process) -> create.
    assert reads(counted["first start"]) <= 3, report
    # The deployment's id is kept: the variable and the runs.
    assert reads(counted["next simulation's start"]) <= 2, report
    # Active: the variable, the runs, the newest run's steps and progress.
    assert reads(counted["start while active"]) <= 4, report
