"""How a flow run becomes *the* auto-pilot of its simulation, whoever created it.

A run made by the shim, the CLI, the Prefect UI's Run button or `prefect deployment run` is
the same flow; before its first step it:

1. resolves its generation from the simulation's variable (creating the variable if this is
   the first run ever): no generation given → the current one; an older one → superseded;
   a newer one → it begins that generation (a new random generation id);
2. tags itself and records its generation in its parameters, so status finds it;
3. claims the simulation with a claim artifact (the server stamps its creation), then reads
   the claims of the simulation's other active runs of its generation or newer: the earliest
   claim wins. A run that claims later always sees an earlier claim (it reads after it
   wrote, and the earlier one was written before that), so two racing runs never both win.
   The loser untags itself and ends without touching the backend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import ArtifactCreate, VariableCreate, VariableUpdate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort
from prefect.exceptions import ObjectAlreadyExists

from autopilot import names
from autopilot.errors import AutopilotError
from autopilot.models import SimulationConfig, Step

logger = logging.getLogger(__name__)

# Runs that hold their simulation: a Crashed one is about to be restarted, a Scheduled or
# Pending one that has claimed is a restart or a resume on its way.
_HOLDING = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CRASHED,
]
# A Crashed run nobody restarted within this long holds nothing (status shows it failed).
_CRASH_HOLD = timedelta(seconds=120)
REFUSED_TAG = "autopilot-refused"


@dataclass(frozen=True)
class Generation:
    """The generation a run belongs to: its number and its random identity."""

    number: int
    identity: str
    # Set when the generation began at a later step (SimulationConfig.from_step).
    from_step: Step | None = None
    steps_from_generation: int | None = None


class Superseded(AutopilotError):
    """The simulation has moved on to a newer generation (stopped, reset, force-started)."""

    error_code = "SUPERSEDED"


class Refused(AutopilotError):
    """Another run holds the simulation: this one must end without acting."""

    error_code = "REFUSED"


def read_config(client: SyncPrefectClient, simulation_id: str) -> SimulationConfig | None:
    variable = client.read_variable_by_name(names.variable_name(simulation_id))
    if variable is None or not isinstance(variable.value, dict):
        return None
    return SimulationConfig.model_validate(variable.value)


def _write_config(client: SyncPrefectClient, simulation_id: str, config: SimulationConfig) -> None:
    value: Any = config.model_dump(mode="json")
    client.update_variable(VariableUpdate(name=names.variable_name(simulation_id), value=value))


def resolve_generation(
    client: SyncPrefectClient, simulation_id: str, requested: int | None
) -> Generation:
    """The run's generation, from the variable; raises `Superseded` for an old one."""
    config = read_config(client, simulation_id)
    if config is None:
        fresh = SimulationConfig(generation=requested or 0, generation_id=names.new_generation_id())
        try:
            client.create_variable(
                VariableCreate(
                    name=names.variable_name(simulation_id), value=fresh.model_dump(mode="json")
                )
            )
            config = fresh
        except ObjectAlreadyExists:  # another run or the service got there first
            config = read_config(client, simulation_id) or fresh
    if requested is not None and requested < config.generation:
        raise Superseded(
            f"generation {requested} was superseded by generation {config.generation} "
            "(stopped, reset or force-started)"
        )
    if (requested is not None and requested > config.generation) or not config.generation_id:
        # Asked for a newer generation (or a variable from before generation ids): begin it.
        if requested is not None and requested > config.generation:
            config.from_step = config.steps_from_generation = None  # a whole new generation
        config.generation = max(config.generation, requested or 0)
        config.generation_id = names.new_generation_id()
        _write_config(client, simulation_id, config)
    assert config.generation_id is not None
    return Generation(
        config.generation, config.generation_id, config.from_step, config.steps_from_generation
    )


def tag_run(
    client: SyncPrefectClient, flow_run: FlowRun, simulation_id: str, generation: int
) -> None:
    """Make the run findable as the simulation's auto-pilot (tags, generation parameter)."""
    wanted = names.run_tags(simulation_id, generation)
    stale = {t for t in flow_run.tags if t.startswith(names.GENERATION_TAG_PREFIX)} - set(wanted)
    tags = sorted((set(flow_run.tags) - stale - {REFUSED_TAG}) | set(wanted))
    parameters = dict(flow_run.parameters)
    if set(flow_run.tags) != set(tags) or parameters.get("generation") != generation:
        parameters["generation"] = generation
        client.update_flow_run(
            flow_run.id,
            tags=tags,
            parameters=parameters,
            name=names.FLOW_RUN_NAME.format(simulation_id=simulation_id, generation=generation),
        )


def _untag(client: SyncPrefectClient, flow_run_id: UUID) -> None:
    run = client.read_flow_run(flow_run_id)
    tags = [t for t in run.tags if t != names.AUTOPILOT_TAG and not t.startswith("autopilot-sim")]
    client.update_flow_run(flow_run_id, tags=[*tags, REFUSED_TAG])


def _claims(client: SyncPrefectClient, simulation_id: str, flow_run_ids: list[UUID]) -> list[Any]:
    return client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[names.claim_artifact_key(simulation_id)]),
            flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids),
        ),
        sort=ArtifactSort.CREATED_DESC,
        limit=200,
    )


def _holds(run: FlowRun, generation: int, now: datetime) -> bool:
    if int(run.parameters.get("generation") or 0) < generation or run.state is None:
        return False
    if run.state.type == StateType.CRASHED:
        return now - run.state.timestamp < _CRASH_HOLD
    return True


def claim(
    client: SyncPrefectClient, flow_run_id: UUID, simulation_id: str, generation: int
) -> None:
    """Claim the simulation for this run (once per run); raises `Refused` naming the holder."""
    if not _claims(client, simulation_id, [flow_run_id]):
        client.create_artifact(
            ArtifactCreate(
                key=names.claim_artifact_key(simulation_id),
                type="markdown",
                data=f"This run is the auto-pilot of `{simulation_id}` (generation {generation}).",
                description="auto-pilot claim: the earliest claim among active runs acts",
                flow_run_id=flow_run_id,
            )
        )
    now = datetime.now(UTC)
    active = {
        run.id: run
        for run in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[names.simulation_tag(simulation_id)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_HOLDING)),
            ),
            limit=200,
        )
        if run.id == flow_run_id or _holds(run, generation, now)
    }
    claims = _claims(client, simulation_id, list(active) or [flow_run_id])
    earliest = min(claims, key=lambda a: (a.created, str(a.id)), default=None)
    if earliest is None or earliest.flow_run_id == flow_run_id:
        return
    holder = active.get(earliest.flow_run_id)
    _untag(client, flow_run_id)
    holder_name = holder.name if holder is not None else "?"
    raise Refused(
        f"simulation {simulation_id} already has an active auto-pilot run: "
        f"{earliest.flow_run_id} ({holder_name}); this run ends without acting"
    )
