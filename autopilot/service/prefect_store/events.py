"""Prefect's event stream, as what each event touched (the status cache's change feed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autopilot import names
from autopilot.service.prefect_store.connection import PrefectConnection, unavailable_as_error

# The events that can change a status: run and step states, new progress artifacts, the
# per-simulation variable. (Progress *updates* are polled instead: see status_cache.py.)
STATUS_EVENT_PREFIXES = [
    "prefect.flow-run.",
    "prefect.task-run.",
    "prefect.artifact-collection.",
    "prefect.variable.",
]


@dataclass(frozen=True)
class ChangeRefs:
    """What one Prefect event touched, in the terms the status cache keys on."""

    simulation_ids: frozenset[str]
    flow_run_ids: frozenset[str]
    variable_names: frozenset[str]
    # When it happened: how far behind the stream runs.
    occurred: datetime | None = None


def change_refs(event: Any) -> ChangeRefs:
    simulation_ids: set[str] = set()
    flow_run_ids: set[str] = set()
    variable_names: set[str] = set()
    for resource in [event.resource, *event.related]:
        rid = resource.id
        tagged = names.simulation_of_tag(rid.removeprefix("prefect.tag."))
        if rid.startswith("prefect.tag.") and tagged:
            simulation_ids.add(tagged)
        elif rid.startswith("prefect.flow-run."):
            flow_run_ids.add(rid.removeprefix("prefect.flow-run."))
    if event.event.startswith("prefect.variable.") and event.resource.name:
        variable_names.add(event.resource.name)
    return ChangeRefs(
        frozenset(simulation_ids),
        frozenset(flow_run_ids),
        frozenset(variable_names),
        event.occurred,
    )


class ChangeFeed(PrefectConnection):
    async def follow_changes(self, connected: Callable[[], None]) -> AsyncIterator[ChangeRefs]:
        """What each status-relevant Prefect event touched, until the stream drops.

        `connected` is called once the subscription stands. The stream does not reconnect by
        itself: a caller that caches must learn of every gap, since events may be lost in it.
        """
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        event_filter = EventFilter(
            event=EventNameFilter(
                prefix=STATUS_EVENT_PREFIXES, exclude_name=["prefect.flow-run.heartbeat"]
            )
        )
        async with (
            unavailable_as_error(),
            PrefectEventSubscriber(filter=event_filter, reconnection_attempts=0) as subscriber,
        ):
            connected()
            async for event in subscriber:
                yield change_refs(event)
