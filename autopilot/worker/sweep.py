"""The worker's periodic look at its deployment's runs: restart what died, on any host."""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient, get_client

from autopilot.names import LEASE_LABEL
from autopilot.worker.judge import LivenessJudge, died_here
from autopilot.worker.recovery import (
    restart_crashed,
    resume_shut_down,
    running_runs,
    take_over_all,
)

logger = logging.getLogger(__name__)


class Sweep:
    """One worker's recovery sweep over one deployment."""

    def __init__(
        self,
        deployment_id: UUID,
        every: float,
        max_restarts: int,
        host_id: str,
        lease_window: float,
    ) -> None:
        self.deployment_id = deployment_id
        self.every = every
        self.max_restarts = max_restarts
        self.host_id = host_id
        self.judge = LivenessJudge(lease_window)
        self._suspects: set[UUID] = set()

    async def once(self, client: PrefectClient) -> None:
        """One look: crashed runs, shut-down runs, then the running ones' liveness."""
        await restart_crashed(client, self.deployment_id, self.max_restarts, min_age=self.every)
        # Another worker's shutdown: this one carries its runs on. Only the last few sweeps'
        # worth of cancellations: older ones were seen by an earlier sweep.
        await resume_shut_down(client, self.deployment_id, timedelta(seconds=4 * self.every))
        runs = await running_runs(client, self.deployment_id)
        lapsed = self.judge.observe(
            {
                run.id: (
                    run.state.id if run.state else None,
                    run.state is not None and run.state.is_pending(),
                    str(run.labels.get(LEASE_LABEL)),
                )
                for run in runs
            }
        )
        # Same host, process gone, in two sweeps running: its own runner would have noticed
        # in between had it been alive (an orphan that outlived its runner and died later).
        gone = {run.id for run in runs if died_here(run, self.host_id)}
        here = [run for run in runs if run.id in gone & self._suspects]
        self._suspects = gone
        await take_over_all(client, here, "its process died after its runner", self.max_restarts)
        window = self.judge.window
        stale = [run for run in runs if run.id in lapsed and run.id not in gone]
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
