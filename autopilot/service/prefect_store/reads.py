"""What the service reads from Prefect: the per-simulation variable, the runs, their steps and
their progress."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import PrefectClient
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
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort, TaskRunSort

from autopilot import names
from autopilot.models import SimulationConfig
from autopilot.service.prefect_store.connection import PrefectConnection, both
from autopilot.service.prefect_store.snapshots import progress_record, run_snapshot
from autopilot.service.projection import ProgressRecord, RunSnapshot, StepRecord

RUN_HISTORY_LIMIT = 50
# The most rows one Prefect read returns (its default PREFECT_API_DEFAULT_LIMIT).
PAGE = 200


class RunReads(PrefectConnection):
    """Reads, the independent ones at once (`both`)."""

    async def read_config_or_none(self, name: str) -> SimulationConfig | None:
        async with self._api() as client:
            variable = await client.read_variable_by_name(name)
        if variable is None or not isinstance(variable.value, dict):
            return None
        return SimulationConfig.model_validate(variable.value)

    async def read_config(self, name: str) -> SimulationConfig:
        return await self.read_config_or_none(name) or SimulationConfig()

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
        snapshots = [run_snapshot(run) for run in found]
        snapshots.sort(key=lambda s: (s.generation, s.created or 0), reverse=True)
        return snapshots

    async def latest_runs(self, limit: int = PAGE) -> dict[str, RunSnapshot]:
        """The latest run of each simulation among the newest `limit` auto-pilot runs (one
        read): what /metrics counts."""
        async with self._api() as client:
            found = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[names.AUTOPILOT_TAG])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=limit,
            )
        latest: dict[str, RunSnapshot] = {}
        # Newest first by start time; a newer generation wins over a later-started older one.
        for run in found:
            simulation_id = str(run.parameters.get("simulation_id") or "")
            snapshot = run_snapshot(run)
            known = latest.get(simulation_id)
            if simulation_id and (known is None or snapshot.generation > known.generation):
                latest[simulation_id] = snapshot
        return latest

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
                state_type=task_run.state.type if task_run.state else StateType.PENDING,
                state_name=(task_run.state.name if task_run.state else None) or "Pending",
                interrupted="StepInterrupted"
                in ((task_run.state and task_run.state.message) or ""),
            )
            for task_run in task_runs
        ]
        if artifacts:
            run.progress = progress_record(artifacts[0])

    async def finished_steps(self, runs: list[RunSnapshot]) -> dict[int, set[str]]:
        """The steps each generation of these runs finished, in any of its attempts (one
        read: the newest `PAGE` completed task runs)."""
        generation_of = {UUID(run.flow_run_id): run.generation for run in runs}
        if not generation_of:
            return {}
        async with self._api() as client:
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(generation_of))),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.COMPLETED])
                    )
                ),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=PAGE,
            )
        finished: dict[int, set[str]] = {gen: set() for gen in generation_of.values()}
        for task_run in task_runs:
            if task_run.flow_run_id in generation_of:
                generation = generation_of[task_run.flow_run_id]
                finished[generation].add(names.step_of_task_run(task_run.name))
        return finished

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
                    (str(collection.flow_run_id), progress_record(collection))
                    for collection in collections
                    if collection.flow_run_id is not None
                )
        return found
