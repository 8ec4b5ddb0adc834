"""The seven auto-pilot operations on Prefect; the only code the REST shim and the CLI call.

State lives in Prefect alone: a variable per simulation (mode, generation), one flow run per
attempt (tagged with the simulation), its task runs and its progress artifact.

Generations and attempts: `reset`, `stop` and `start force=true` bump the generation, so the
next start begins every step afresh; a start after a *failed* attempt stays in the generation
and resumes from the finished steps. The idempotency key `autopilot-{sim}-g{gen}[-a{n}]` makes
concurrent starts create one flow run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import anyio
from anyio.abc import TaskGroup

from autopilot import names
from autopilot.api_models import (
    AutopilotStatus,
    ConfigResult,
    ControlResult,
    Mode,
    NoStateStatus,
    ResetResult,
    StartResult,
    Status,
)
from autopilot.client import MultimoClient
from autopilot.errors import BackendRejected, BackendUnavailable, NotFound
from autopilot.models import SimulationConfig, Step, steps_before
from autopilot.run.confirm import StepConfirmation
from autopilot.service.prefect_store import PrefectStore
from autopilot.service.projection import RunSnapshot, is_active, no_state, project
from autopilot.service.rules import (
    PauseAction,
    StartAction,
    check_pause,
    check_resume,
    check_running,
    check_simulation_id,
    generation_to_take_from,
    keeps_simulation_running,
    next_generation,
    parse_from_step,
    parse_mode,
    plan_start,
    started_by_current_generation,
    stop_begins_a_generation,
)
from autopilot.service.status_cache import CacheTimings, StatusCache, StatusInputs
from autopilot.settings import Settings

logger = logging.getLogger(__name__)


class AutopilotService:
    """config, start, pause, resume, stop, status and reset for one deployment and backend."""

    def __init__(
        self,
        settings: Settings,
        backend_factory: Callable[[], MultimoClient] | None = None,
        store: PrefectStore | None = None,
    ) -> None:
        self.settings = settings
        self._backend_factory = backend_factory or (lambda: MultimoClient.from_settings(settings))
        self.store = store or PrefectStore(settings.deployment_name)
        # Serialises changes per simulation inside this process: twenty racing starts make
        # one write and nineteen cheap reads. Across processes the idempotency key decides.
        self._locks: dict[str, anyio.Lock] = {}
        self.status_cache: StatusCache | None = None
        # Told the error code of each backend error this service's calls meet (/metrics).
        self.on_backend_error: Callable[[str], None] | None = None

    async def start_status_cache(
        self, group: TaskGroup, timings: CacheTimings | None = None
    ) -> StatusCache:
        """Answer status from memory kept current by Prefect's events (a long-lived process)."""
        cache = StatusCache(
            self.store.status_inputs,
            self.store.latest_progress,
            self.store.follow_changes,
            timings,
        )
        await group.start(cache.run)
        self.status_cache = cache
        return cache

    def _changed(self, simulation_id: str) -> None:
        """This process wrote the simulation's state: its next status must not be remembered."""
        if self.status_cache is not None:
            self.status_cache.invalidate(simulation_id)

    def _lock(self, simulation_id: str) -> anyio.Lock:
        return self._locks.setdefault(simulation_id, anyio.Lock())

    # -- backend helpers (the client is synchronous: run it off the event loop) ------------

    async def _backend(self, call: Callable[[MultimoClient], Any]) -> Any:
        def run() -> Any:
            with self._backend_factory() as client:
                return call(client)

        try:
            return await anyio.to_thread.run_sync(run)
        except (BackendUnavailable, BackendRejected) as exc:
            if self.on_backend_error is not None:
                self.on_backend_error(exc.error_code)
            raise

    async def _require_simulation(self, simulation_id: str) -> None:
        try:
            await self._backend(lambda c: c.get_simulation(simulation_id))
        except NotFound:
            raise NotFound(
                f"simulation {simulation_id} does not exist on the backend",
                error_code="SIMULATION_NOT_FOUND",
            ) from None

    async def _stop_backend(self, simulation_id: str) -> bool:
        """Stop the simulation if it runs; idempotent. True if a stop was sent."""

        def stop(client: MultimoClient) -> bool:
            if client.run_status(simulation_id).runner_status not in {
                "running",
                "paused",
                "starting",
            }:
                return False
            try:
                client.stop(simulation_id)
            except BackendRejected:
                return False  # it stopped on its own meanwhile
            return True

        try:
            return bool(await self._backend(stop))
        except NotFound:
            return False

    async def _config(self, simulation_id: str) -> SimulationConfig:
        return await self.store.read_config(names.variable_name(simulation_id))

    async def _save(self, simulation_id: str, config: SimulationConfig) -> None:
        await self.store.write_config(names.variable_name(simulation_id), config)

    async def _cancel_active(
        self, simulation_id: str, config: SimulationConfig, latest: RunSnapshot | None
    ) -> None:
        """Cancel the active run (if any); stop the simulation if this generation started it."""
        if is_active(latest):
            assert latest is not None
            await self.store.cancel(UUID(latest.flow_run_id), latest.state_type)
        # A suspended run has no process to run the cancellation hook: stop it ourselves.
        if started_by_current_generation(config, latest):
            await self._stop_backend(simulation_id)

    # -- the seven operations --------------------------------------------------------------

    async def config(self, simulation_id: str, mode: str | None) -> ConfigResult:
        """Set the simulation's mode; the generation is kept."""
        check_simulation_id(simulation_id)
        parsed = parse_mode(mode)
        await self._require_simulation(simulation_id)
        config = await self._config(simulation_id)
        config.mode = parsed
        try:
            await self._save(simulation_id, config)
        finally:
            self._changed(simulation_id)
        return ConfigResult(
            simulation_id=simulation_id, mode=parsed, message=f"auto-pilot mode set to {parsed}"
        )

    async def start(
        self, simulation_id: str, force: bool = False, from_step: str | None = None
    ) -> StartResult:
        """Start the auto-pilot, or return the active run; `force` starts a new generation,
        at `from_step` if given (the steps before it taken as done)."""
        check_simulation_id(simulation_id)
        step = parse_from_step(from_step, force)
        async with self._lock(simulation_id):
            try:
                return await self._start(simulation_id, force, step)
            finally:
                self._changed(simulation_id)

    async def _start(self, simulation_id: str, force: bool, from_step: Step | None) -> StartResult:
        config = await self._config(simulation_id)
        await self._require_simulation(simulation_id)
        runs = await self.store.runs(simulation_id)
        plan = plan_start(config, runs, force)
        if plan.action is StartAction.RETURN_ACTIVE:
            current = await self.store.latest_run(simulation_id, runs)
            return self._start_result(simulation_id, config, current, "already active", False)
        source = None
        if from_step is not None:
            source = generation_to_take_from(await self.store.finished_steps(runs), from_step)
        keep_simulation = keeps_simulation_running(from_step)
        if plan.cancel_active and not keep_simulation:
            # Its steps tell whether it started the simulation (runs() has no details).
            detailed = await self.store.latest_run(simulation_id, runs)
            await self._cancel_active(simulation_id, config, detailed)
        if plan.new_generation:
            next_generation(config, runs[0] if runs else None, "force")
            config.from_step, config.steps_from_generation = from_step, source
            await self._save(simulation_id, config)
            if plan.cancel_active and keep_simulation:
                # Only once the new generation is saved: the cancelled run's hooks then see
                # it superseded and leave the simulation running for the new one to watch.
                detailed = await self.store.latest_run(simulation_id, runs)
                if is_active(detailed):
                    assert detailed is not None
                    await self.store.cancel(UUID(detailed.flow_run_id), detailed.state_type)
        elif plan.needs_identity:
            # First start (or a variable from before generation ids): give it an identity.
            config.generation_id = names.new_generation_id()
            await self._save(simulation_id, config)
        created = await self.store.create_run(
            simulation_id,
            config.generation,
            names.idempotency_key(
                simulation_id, config.generation, config.generation_id or "", plan.attempt
            ),
        )
        message = "auto-pilot restarted (new generation)" if force else "auto-pilot started"
        if config.mode is Mode.MANUAL:
            message += "; manual mode: it waits for a confirmation (resume) after each step"
        if from_step is not None:
            taken = ", ".join(step.value for step in steps_before(from_step))
            message = (
                f"auto-pilot restarted at {from_step.value} (new generation); "
                f"{taken} taken as done from generation {source}"
            )
        return self._start_result(simulation_id, config, created, message, force)

    def _start_result(
        self,
        simulation_id: str,
        config: SimulationConfig,
        run: RunSnapshot | None,
        message: str,
        force: bool,
    ) -> StartResult:
        status = project(simulation_id, config, run)
        return StartResult(
            simulation_id=simulation_id,
            status=status.status,
            current_step=status.current_step,
            step_progress=status.step_progress,
            step_message=status.step_message,
            message=message,
            force_restarted=force,
            flow_run_id=status.flow_run_id,
            generation=status.generation,
        )

    async def pause(self, simulation_id: str) -> ControlResult:
        """Suspend the running flow run; its step yields within a second."""
        check_simulation_id(simulation_id)
        # Serialised like start and stop: ten racing pauses make one suspension and nine
        # "already paused" answers.
        async with self._lock(simulation_id):
            return await self._pause(simulation_id)

    async def _pause(self, simulation_id: str) -> ControlResult:
        config = await self._config(simulation_id)
        action, latest = check_pause(config, await self.store.latest_run(simulation_id))
        if action is PauseAction.WAIT_UNTIL_RUNNING:
            # A run the runner is about to start must not have its state forced under it (it
            # would run anyway, or be lost to the runner): wait until it runs, then suspend.
            latest.state_type = await self.store.wait_until_running(
                UUID(latest.flow_run_id), timeout=self.settings.pause_wait
            )
            check_running(latest.state_type, latest.state_type.title())
        try:
            await self.store.suspend(UUID(latest.flow_run_id))
        finally:
            self._changed(simulation_id)
        return self._control_result(
            simulation_id,
            config,
            latest,
            Status.PAUSED,
            "auto-pilot paused: the current step stops at its next check",
        )

    async def resume(self, simulation_id: str, note: str | None = None) -> ControlResult:
        """Resume the suspended flow run; finished steps are not run again. A run waiting
        for a confirmation (manual mode) is confirmed, with the `note` kept with the run."""
        check_simulation_id(simulation_id)
        async with self._lock(simulation_id):
            return await self._resume(simulation_id, note)

    async def _resume(self, simulation_id: str, note: str | None) -> ControlResult:
        config = await self._config(simulation_id)
        latest = check_resume(config, await self.store.latest_run(simulation_id))
        message = "auto-pilot resumed"
        run_input = None
        if latest.awaiting_step is not None:
            # The same input as the Prefect UI's Resume form submits.
            run_input = StepConfirmation(note=note or "").model_dump()
            message = f"auto-pilot resumed: {latest.awaiting_step} confirmed"
        try:
            await self.store.resume(UUID(latest.flow_run_id), run_input)
        finally:
            self._changed(simulation_id)
        return self._control_result(simulation_id, config, latest, Status.ACTIVE, message)

    def _control_result(
        self,
        simulation_id: str,
        config: SimulationConfig,
        run: RunSnapshot,
        status: Status,
        message: str,
    ) -> ControlResult:
        """The answer of a pause or resume: the new status and the run's current step."""
        return ControlResult(
            simulation_id=simulation_id,
            status=status,
            current_step=project(simulation_id, config, run).current_step,
            message=message,
            flow_run_id=run.flow_run_id,
        )

    async def stop(self, simulation_id: str) -> ControlResult:
        """Cancel the run and stop the simulation; idempotent; ends `inactive`."""
        check_simulation_id(simulation_id)
        async with self._lock(simulation_id):
            try:
                return await self._stop(simulation_id)
            finally:
                self._changed(simulation_id)

    async def _stop(self, simulation_id: str) -> ControlResult:
        await self._require_simulation(simulation_id)
        config = await self._config(simulation_id)
        latest = await self.store.latest_run(simulation_id)
        await self._cancel_active(simulation_id, config, latest)
        if stop_begins_a_generation(config, latest):
            next_generation(config, latest, "stop")
            await self._save(simulation_id, config)
        return ControlResult(
            simulation_id=simulation_id,
            status=Status.INACTIVE,
            message="auto-pilot stopped and the simulation stopped on the backend",
            flow_run_id=latest.flow_run_id if latest else None,
        )

    async def status(self, simulation_id: str) -> AutopilotStatus | NoStateStatus:
        """The projection of Prefect's records; answers without any worker alive."""
        check_simulation_id(simulation_id)
        config, latest = await self._status_inputs(simulation_id)
        if config is None and latest is None:
            return no_state(simulation_id)
        config = config or SimulationConfig()
        return project(simulation_id, config, latest)

    async def _status_inputs(self, simulation_id: str) -> StatusInputs:
        if self.status_cache is not None:
            return await self.status_cache.get(simulation_id)
        return await self.store.status_inputs(simulation_id)

    async def reset(self, simulation_id: str) -> ResetResult:
        """Cancel any active run and start a new generation; the mode is kept."""
        check_simulation_id(simulation_id)
        async with self._lock(simulation_id):
            try:
                return await self._reset(simulation_id)
            finally:
                self._changed(simulation_id)

    async def _reset(self, simulation_id: str) -> ResetResult:
        await self._require_simulation(simulation_id)
        config = await self._config(simulation_id)
        latest = await self.store.latest_run(simulation_id)
        await self._cancel_active(simulation_id, config, latest)
        next_generation(config, latest, "reset")
        await self._save(simulation_id, config)
        return ResetResult(
            simulation_id=simulation_id,
            message=f"auto-pilot reset; mode {config.mode} kept",
            generation=config.generation,
        )
