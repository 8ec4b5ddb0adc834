"""What the service changes in Prefect: the variable, new runs, cancel, suspend, resume."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import (
    Abort,
    FlowPauseTimeout,
    NotPausedError,
    ObjectAlreadyExists,
    ObjectNotFound,
    Pause,
    PrefectHTTPStatusError,
)
from prefect.states import Cancelled, Cancelling

from autopilot import names
from autopilot.errors import Conflict, PrefectUnavailable
from autopilot.models import SimulationConfig
from autopilot.service.prefect_store.connection import unavailable_as_error
from autopilot.service.prefect_store.reads import RunReads
from autopilot.service.prefect_store.snapshots import run_snapshot
from autopilot.service.projection import RunSnapshot


class RunControls(RunReads):
    """Changes; `create_run` reads the new run's details when it may have any."""

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
                self._known_deployment_id = None
                deployment_id = await self._deployment_id(client)
                run = await self._create(client, deployment_id, simulation_id, generation, key)
            snapshot = run_snapshot(run)
            # A run that never ran (a new one, always, unless the key was used) has no steps
            # or progress yet: nothing to read.
            if run.run_count or snapshot.state_type not in {StateType.SCHEDULED, StateType.PENDING}:
                await self._load_details(client, snapshot)
        return snapshot

    async def _deployment_id(self, client: PrefectClient) -> UUID:
        """The deployment's id, read once per process (serving it again keeps its id)."""
        if self._known_deployment_id is not None:
            return self._known_deployment_id
        try:
            deployment = await client.read_deployment_by_name(self.deployment_name)
        except ObjectNotFound:
            raise PrefectUnavailable(
                f"deployment {self.deployment_name} is not registered: start `autopilot "
                "worker` (or `autopilot up`)",
                error_code="DEPLOYMENT_NOT_FOUND",
            ) from None
        self._known_deployment_id = deployment.id
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

    async def cancel(self, flow_run_id: UUID, state_type: StateType) -> None:
        """Cancel a run: through its runner if a process executes it, else directly."""
        # Only a process (running, or being started: pending) can be killed by a runner; a
        # scheduled, suspended or crashed run left Cancelling would stay so forever.
        running = {StateType.RUNNING, StateType.CANCELLING, StateType.PENDING}
        state: State[Any] = Cancelling() if state_type in running else Cancelled()
        async with self._api() as client:
            await client.set_flow_run_state(flow_run_id, state, force=True)

    async def wait_until_running(self, flow_run_id: UUID, timeout: float) -> StateType:
        """Wait (bounded) while the run is scheduled or pending; return its state type."""
        deadline = anyio.current_time() + timeout
        while True:
            async with self._api() as client:
                run = await client.read_flow_run(flow_run_id)
            state_type = run.state.type if run.state else StateType.SCHEDULED
            if (
                state_type not in {StateType.SCHEDULED, StateType.PENDING}
                or anyio.current_time() > deadline
            ):
                return state_type
            await anyio.sleep(0.25)

    async def suspend(self, flow_run_id: UUID) -> None:
        """Suspend a running run: its step yields at its next check, the process exits."""
        from prefect.flow_runs import asuspend_flow_run

        # Prefect's helper opens its own client: only its failures are ours to map.
        async with unavailable_as_error():
            try:
                await asuspend_flow_run(flow_run_id=flow_run_id)
            except Pause as exc:
                # Prefect's signal (a BaseException) for "rejected: the run is paused already".
                raise Conflict("auto-pilot is already paused", error_code="ALREADY_PAUSED") from exc
            except (RuntimeError, Abort) as exc:
                raise Conflict(f"cannot pause: {exc}", error_code="NOT_ACTIVE") from exc

    async def resume(self, flow_run_id: UUID, run_input: dict[str, Any] | None = None) -> None:
        """Resume a suspended run; `run_input` answers a wait that asked for input."""
        from prefect.flow_runs import aresume_flow_run

        # Prefect's helper opens its own client: only its failures are ours to map.
        async with unavailable_as_error():
            try:
                await aresume_flow_run(flow_run_id, run_input=run_input)
            except NotPausedError as exc:
                raise Conflict("auto-pilot is not paused", error_code="NOT_PAUSED") from exc
            except FlowPauseTimeout as exc:
                raise Conflict(
                    "the pause expired: the run can no longer be resumed; start it again",
                    error_code="NOT_PAUSED",
                ) from exc
            except (RuntimeError, NotImplementedError, Abort) as exc:
                raise Conflict(f"cannot resume: {exc}", error_code="NOT_PAUSED") from exc
