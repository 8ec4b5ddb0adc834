"""The periodic look at the runs of some deployments: restart what died, on any host.

`autopilot worker` sweeps the deployment it serves (and any named with `--recover`);
`autopilot recover` only sweeps, for deployments served by others (a process work pool's
`prefect worker start` runs no code of ours between flow runs)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound

from autopilot.errors import InvalidInput
from autopilot.names import LEASE_LABEL
from autopilot.settings import get_settings
from autopilot.worker.accepted import accepted_here, forget_all_but
from autopilot.worker.judge import LivenessJudge, died_here
from autopilot.worker.recovery import (
    restart_crashed,
    resume_shut_down,
    running_runs,
    take_over_all,
)
from autopilot.worker.vouch import vouch_for_starting

logger = logging.getLogger(__name__)


async def server_time(client: PrefectClient) -> datetime:
    """The Prefect server's clock (its answer's Date header, to the second)."""
    response = await client.request("GET", "/health")
    return parsedate_to_datetime(response.headers["date"])


class Sweep:
    """One worker's recovery sweep over the runs of some deployments."""

    def __init__(
        self,
        deployments: list[str],
        every: float,
        max_restarts: int,
        host_id: str,
        lease_window: float,
    ) -> None:
        self.deployment_names = deployments
        self._ids: dict[str, UUID] = {}
        self.every = every
        self.max_restarts = max_restarts
        self.host_id = host_id
        if lease_window <= 2 * every:
            # A judge forgets what it saw when looks are further apart than a window: it
            # would never declare anything dead.
            raise InvalidInput(
                f"the lease window ({lease_window:g} s, AUTOPILOT_LEASE_WINDOW) must be longer "
                f"than two sweeps ({every:g} s each)",
                error_code="INVALID_TIMINGS",
            )
        self.judge = LivenessJudge(lease_window)
        self._suspects: set[UUID] = set()

    @classmethod
    def from_settings(cls, deployments: list[str], every: float) -> Sweep:
        """A sweep with this host's identity, restart cap and lease window."""
        settings = get_settings()
        return cls(
            deployments,
            every,
            settings.max_crash_restarts,
            settings.host_id,
            settings.lease_window,
        )

    async def deployment_ids(self, client: PrefectClient) -> list[UUID]:
        """The ids of the watched deployments that exist (one may be registered later)."""
        for name in self.deployment_names:
            if name not in self._ids:
                try:
                    self._ids[name] = (await client.read_deployment_by_name(name)).id
                except ObjectNotFound:
                    continue
        return list(self._ids.values())

    async def once(self, client: PrefectClient) -> None:
        """One look: crashed runs, shut-down runs, then the running ones' liveness."""
        deployments = await self.deployment_ids(client)
        if not deployments:
            return
        await restart_crashed(client, deployments, self.max_restarts, min_age=self.every)
        # Another worker's shutdown: this one carries its runs on. Only the last few sweeps'
        # worth of cancellations: older ones were seen by an earlier sweep.
        await resume_shut_down(client, deployments, timedelta(seconds=4 * self.every))
        runs = await running_runs(client, deployments)
        pending = [run for run in runs if run.state is not None and run.state.is_pending()]
        # Runs still starting on this host: never judged here, and their lease moves for others.
        forget_all_but({run.id for run in pending})
        vouched = await vouch_for_starting(client, runs, self.host_id, accepted_here())
        # The server's clock is read only when it is needed: PENDING runs are rare.
        now = await server_time(client) if pending else None
        lapsed = self.judge.observe(
            {
                run.id: (
                    run.state.id if run.state else None,
                    run.state is not None and run.state.is_pending(),
                    str(run.labels.get(LEASE_LABEL)),
                )
                for run in runs
            },
            {
                run.id: (now - run.state.timestamp).total_seconds()
                for run in pending
                if now is not None and run.state is not None and run.state.timestamp
            },
        )
        # Same host, process gone, in two sweeps running: its own runner would have noticed
        # in between had it been alive (an orphan that outlived its runner and died later).
        gone = {run.id for run in runs if died_here(run, self.host_id)}
        here = [run for run in runs if run.id in gone & self._suspects]
        self._suspects = gone
        await take_over_all(client, here, "its process died after its runner", self.max_restarts)
        window = self.judge.window
        stale = [run for run in runs if run.id in lapsed - gone - vouched]
        reason = f"its lease lapsed: no sign of life for {window:.0f}s"
        await take_over_all(client, stale, reason, self.max_restarts)

    async def forever(self) -> None:
        while True:
            await anyio.sleep(self.every)
            try:
                async with get_client() as client:
                    await self.once(client)
            except Exception as exc:  # a Prefect API hiccup must not kill the worker
                self.judge.blind()
                logger.warning("recovery sweep failed: %s", exc)
