"""Reads and writes the auto-pilot's state in Prefect (variables, flow runs, artifacts).

Every Prefect call of the service goes through here, so an unreachable Prefect API becomes
`PrefectUnavailable` in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterFlowRunId,
    ArtifactCollectionFilterType,
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort, TaskRunSort
from prefect.exceptions import (
    Abort,
    FlowPauseTimeout,
    NotPausedError,
    ObjectAlreadyExists,
    ObjectNotFound,
    Pause,
    PrefectHTTPStatusError,
)
from prefect.states import Cancelled, Cancelling, State

from autopilot import names
from autopilot.errors import Conflict, PrefectUnavailable
from autopilot.models import SimulationConfig
from autopilot.progress_codec import decode_description
from autopilot.service.projection import ProgressRecord, RunSnapshot, StepRecord

A = TypeVar("A")
B = TypeVar("B")

RUN_HISTORY_LIMIT = 50
# The most rows one Prefect read returns (its default PREFECT_API_DEFAULT_LIMIT).
PAGE = 200

# The events that can change a status: run and step states, new progress artifacts, the
# per-simulation variable. (Progress *updates* are polled instead: see status_cache.py.)
STATUS_EVENT_PREFIXES = [
    "prefect.flow-run.",
    "prefect.task-run.",
    "prefect.artifact-collection.",
    "prefect.variable.",
]


class ConnectionRefused(httpx.TransportError):
    """The Prefect server refused the connection: it is down (or restarting)."""


class FailFastTransport(httpx.AsyncHTTPTransport):
    """Turns a refused connection into an error Prefect's client does not retry.

    Once a client has connected, Prefect retries refused connections with back-off for
    about a minute (2+4+8+16+32 s): right for a flow run, wrong for a shim request that
    should answer 503 now. Busy answers (503, 429) are still retried as Prefect does.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            raise ConnectionRefused(str(exc), request=request) from exc


@asynccontextmanager
async def unavailable_as_error() -> AsyncIterator[None]:
    """Prefect connection failures and 5xx surface as `PrefectUnavailable`."""
    try:
        yield
    except (httpx.TransportError, PrefectHTTPStatusError) as exc:
        if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500:
            raise
        raise PrefectUnavailable(f"the Prefect API is unreachable: {type(exc).__name__}") from exc


@asynccontextmanager
async def prefect() -> AsyncIterator[PrefectClient]:
    """A fresh Prefect client whose failures surface as `PrefectUnavailable`."""
    async with unavailable_as_error(), get_client() as client:
        yield client


@dataclass(frozen=True)
class ChangeRefs:
    """What one Prefect event touched, in the terms the status cache keys on."""

    simulation_ids: frozenset[str]
    flow_run_ids: frozenset[str]
    variable_names: frozenset[str]
    # When it happened: how far behind the stream runs.
    occurred: datetime | None = None


def _change_refs(event: Any) -> ChangeRefs:
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


def _progress_record(artifact: Any) -> ProgressRecord:
    """A progress artifact (or its collection row) as the projection needs it."""
    decoded = decode_description(artifact.description) or {}
    data: Any = artifact.data
    return ProgressRecord(
        percent=int(float(data or 0)),
        step=decoded.get("step"),
        detail=decoded.get("detail") or {},
        summary=(artifact.description or "").split("\n", 1)[0],
        updated=artifact.updated,
    )


async def both(
    first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]]
) -> tuple[A, B]:
    """Two calls at once; the first error is raised as itself (not as an exception group,
    which the shim's error handlers would not recognise)."""
    results: list[Any] = [None, None]
    errors: list[Exception] = []

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            results[index] = await call()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, first)
        group.start_soon(run, 1, second)
    if errors:
        raise errors[0]
    return results[0], results[1]


def _snapshot(run: FlowRun) -> RunSnapshot:
    state = run.state
    return RunSnapshot(
        flow_run_id=str(run.id),
        generation=int(run.parameters.get("generation") or 0),
        state_type=state.type.value if state else "SCHEDULED",
        state_name=(state.name if state else None) or "Scheduled",
        state_message=state.message if state else None,
        state_timestamp=state.timestamp if state else None,
        created=run.created,
        start_time=run.start_time,
        end_time=run.end_time,
        run_count=run.run_count,
    )


class PrefectStore:
    """The Prefect side of the service."""

    def __init__(self, deployment_name: str, httpx_settings: dict[str, Any] | None = None) -> None:
        self.deployment_name = deployment_name
        # Extra settings of the kept client's httpx client (event hooks that count requests).
        self._httpx_settings = httpx_settings or {}
        # A long-lived process (the shim) keeps one client: opening one costs ~25 ms here,
        # more than a request on it.
        self._client: PrefectClient | None = None
        self._deployment_ids: dict[str, UUID] = {}

    async def open(self) -> None:
        """Keep one Prefect client open until `close()`."""
        if self._client is None:
            settings = {"transport": FailFastTransport(), **self._httpx_settings}
            client = get_client(httpx_settings=settings)
            await client.__aenter__()
            self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)

    @asynccontextmanager
    async def _api(self) -> AsyncIterator[PrefectClient]:
        if self._client is None:
            async with prefect() as client:
                yield client
            return
        async with unavailable_as_error():
            yield self._client

    # -- the per-simulation variable -------------------------------------------------

    async def read_config_or_none(self, name: str) -> SimulationConfig | None:
        async with self._api() as client:
            variable = await client.read_variable_by_name(name)
        if variable is None or not isinstance(variable.value, dict):
            return None
        return SimulationConfig.model_validate(variable.value)

    async def read_config(self, name: str) -> SimulationConfig:
        return await self.read_config_or_none(name) or SimulationConfig()

    async def write_config(self, name: str, config: SimulationConfig) -> None:
        """Update the variable, creating it the first time (on the kept client: no second
        client for `Variable.aset`, and one call where the variable exists)."""
        value = config.model_dump(mode="json")
        async with self._api() as client:
            try:
                await client.update_variable(VariableUpdate(name=name, value=value))
                return
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
            try:
                await client.create_variable(VariableCreate(name=name, value=value))
            except ObjectAlreadyExists:
                # Another process created it between our two calls: ours is the newer value.
                await client.update_variable(VariableUpdate(name=name, value=value))

    # -- flow runs -------------------------------------------------------------------

    async def runs(self, simulation_id: str) -> list[RunSnapshot]:
        """The simulation's runs, newest first (by generation, then creation)."""
        async with self._api() as client:
            found = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[names.simulation_tag(simulation_id)])
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=RUN_HISTORY_LIMIT,
            )
        snapshots = [_snapshot(run) for run in found]
        snapshots.sort(key=lambda s: (s.generation, s.created or 0), reverse=True)  # type: ignore[arg-type, return-value]
        return snapshots

    async def latest_run(
        self, simulation_id: str, runs: list[RunSnapshot] | None = None
    ) -> RunSnapshot | None:
        """The newest run with its steps and latest progress (of `runs` when already read)."""
        if runs is None:
            runs = await self.runs(simulation_id)
        if not runs:
            return None
        latest = runs[0]
        async with self._api() as client:
            await self._load_details(client, latest)
        return latest

    async def _load_details(self, client: PrefectClient, run: RunSnapshot) -> None:
        flow_run_id = UUID(run.flow_run_id)
        task_runs, artifacts = await both(
            lambda: client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            ),
            lambda: client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                    type=ArtifactFilterType(any_=["progress"]),
                ),
                sort=ArtifactSort.UPDATED_DESC,
                limit=1,
            ),
        )
        run.steps = [
            StepRecord(
                name=names.step_of_task_run(task_run.name),
                state_type=task_run.state.type.value if task_run.state else "PENDING",
                state_name=(task_run.state.name if task_run.state else None) or "Pending",
                interrupted="StepInterrupted"
                in ((task_run.state and task_run.state.message) or ""),
            )
            for task_run in task_runs
        ]
        if artifacts:
            run.progress = _progress_record(artifacts[0])

    async def status_inputs(
        self, simulation_id: str
    ) -> tuple[SimulationConfig | None, RunSnapshot | None]:
        """The variable and the latest run with its details: two rounds of parallel reads."""
        config, runs = await both(
            lambda: self.read_config_or_none(names.variable_name(simulation_id)),
            lambda: self.runs(simulation_id),
        )
        latest = runs[0] if runs else None
        if latest is not None:
            async with self._api() as client:
                await self._load_details(client, latest)
        return config, latest

    async def latest_progress(self, flow_run_ids: list[str]) -> dict[str, ProgressRecord]:
        """The newest progress of each of these runs that wrote any: one read per page of
        runs (Prefect answers at most `PAGE` rows; a run has one progress collection)."""
        found: dict[str, ProgressRecord] = {}
        async with self._api() as client:
            for start in range(0, len(flow_run_ids), PAGE):
                page = flow_run_ids[start : start + PAGE]
                collections = await client.read_latest_artifacts(
                    artifact_filter=ArtifactCollectionFilter(
                        flow_run_id=ArtifactCollectionFilterFlowRunId(any_=[UUID(i) for i in page]),
                        type=ArtifactCollectionFilterType(any_=["progress"]),
                    ),
                    limit=PAGE,
                )
                found.update(
                    (str(collection.flow_run_id), _progress_record(collection))
                    for collection in collections
                    if collection.flow_run_id is not None
                )
        return found

    async def follow_changes(self, connected: Callable[[], None]) -> AsyncIterator[ChangeRefs]:
        """What each status-relevant Prefect event touched, until the stream drops.

        `connected` is called once the subscription stands. The stream does not reconnect by
        itself: a caller that caches must learn of every gap, since events may be lost in it.
        """
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        event_filter = EventFilter(  # type: ignore[call-arg]
            event=EventNameFilter(  # type: ignore[call-arg]
                prefix=STATUS_EVENT_PREFIXES, exclude_name=["prefect.flow-run.heartbeat"]
            )
        )
        async with (
            unavailable_as_error(),
            PrefectEventSubscriber(filter=event_filter, reconnection_attempts=0) as subscriber,
        ):
            connected()
            async for event in subscriber:
                yield _change_refs(event)

    async def create_run(self, simulation_id: str, generation: int, key: str) -> RunSnapshot:
        """Create (or, for a used key, get back) the flow run of this attempt."""
        async with self._api() as client:
            deployment_id = await self._deployment_id(client)
            try:
                run = await self._create(client, deployment_id, simulation_id, generation, key)
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                # The deployment was deleted and served again under a new id since we read it.
                self._deployment_ids.pop(self.deployment_name, None)
                deployment_id = await self._deployment_id(client)
                run = await self._create(client, deployment_id, simulation_id, generation, key)
            snapshot = _snapshot(run)
            # A run that never ran (a new one, always, unless the key was used) has no steps
            # or progress yet: nothing to read.
            if run.run_count or snapshot.state_type not in {"SCHEDULED", "PENDING"}:
                await self._load_details(client, snapshot)
        return snapshot

    async def _deployment_id(self, client: PrefectClient) -> UUID:
        """The deployment's id, read once per process (serving it again keeps its id)."""
        cached = self._deployment_ids.get(self.deployment_name)
        if cached is not None:
            return cached
        try:
            deployment = await client.read_deployment_by_name(self.deployment_name)
        except ObjectNotFound:
            raise PrefectUnavailable(
                f"deployment {self.deployment_name} is not registered: start `autopilot "
                "worker` (or `autopilot up`)",
                error_code="DEPLOYMENT_NOT_FOUND",
            ) from None
        self._deployment_ids[self.deployment_name] = deployment.id
        return deployment.id

    @staticmethod
    async def _create(
        client: PrefectClient, deployment_id: UUID, simulation_id: str, generation: int, key: str
    ) -> FlowRun:
        return await client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"simulation_id": simulation_id, "generation": generation},
            tags=names.run_tags(simulation_id, generation),
            idempotency_key=key,
        )

    async def cancel(self, flow_run_id: UUID, state_type: str) -> None:
        """Cancel a run: through its runner if a process executes it, else directly."""
        # Only a process (running, or being started: pending) can be killed by a runner; a
        # scheduled, suspended or crashed run left Cancelling would stay so forever.
        running = {"RUNNING", "CANCELLING", "PENDING"}
        state: State[Any] = Cancelling() if state_type in running else Cancelled()
        async with self._api() as client:
            await client.set_flow_run_state(flow_run_id, state, force=True)

    async def wait_until_running(self, flow_run_id: UUID, timeout: float) -> str:
        """Wait (bounded) while the run is scheduled or pending; return its state type."""
        deadline = anyio.current_time() + timeout
        while True:
            async with self._api() as client:
                run = await client.read_flow_run(flow_run_id)
            state_type = run.state.type.value if run.state else "SCHEDULED"
            if state_type not in {"SCHEDULED", "PENDING"} or anyio.current_time() > deadline:
                return state_type
            await anyio.sleep(0.25)

    async def suspend(self, flow_run_id: UUID) -> None:
        """Suspend a running run: its step yields at its next check, the process exits."""
        from prefect.flow_runs import asuspend_flow_run

        async with prefect():
            try:
                await asuspend_flow_run(flow_run_id=flow_run_id)
            except Pause as exc:
                # Prefect's signal (a BaseException) for "rejected: the run is paused already".
                raise Conflict("auto-pilot is already paused", error_code="ALREADY_PAUSED") from exc
            except (RuntimeError, Abort) as exc:
                raise Conflict(f"cannot pause: {exc}", error_code="NOT_ACTIVE") from exc

    async def resume(self, flow_run_id: UUID) -> None:
        from prefect.flow_runs import aresume_flow_run

        async with prefect():
            try:
                await aresume_flow_run(flow_run_id)
            except NotPausedError as exc:
                raise Conflict("auto-pilot is not paused", error_code="NOT_PAUSED") from exc
            except FlowPauseTimeout as exc:
                raise Conflict(
                    "the pause expired: the run can no longer be resumed; start it again",
                    error_code="NOT_PAUSED",
                ) from exc
            except (RuntimeError, NotImplementedError, Abort) as exc:
                raise Conflict(f"cannot resume: {exc}", error_code="NOT_PAUSED") from exc
