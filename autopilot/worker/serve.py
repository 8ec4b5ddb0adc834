"""Serve the auto-pilot as deployment `auto-pilot/<name>` and recover dead runs by itself.

    python -m deployments.serve            (also: `autopilot worker`; deployments/serve.py
                                            is only this module's entry point)

Before serving it restarts runs a dead runner left behind (never one a living process still
executes); while serving, the flow's crash hook restarts runs whose process died, and a sweep
catches any the hook missed.
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import anyio

from autopilot.prefect_env import ensure_prefect_api_url
from autopilot.settings import get_settings

logger = logging.getLogger("autopilot.worker")

DEFAULT_DEPLOYMENT_NAME = "local"


def prepare_environment() -> None:
    """Fix the paths every flow process inherits: data dir and result storage, absolute."""
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOPILOT_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(settings.results_path))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    get_settings.cache_clear()


async def _sweep(deployment_id: UUID, every: float, max_restarts: int, data_dir: Path) -> None:
    from prefect.client.orchestration import get_client

    from autopilot.worker.recovery import (
        dead_running_runs,
        restart_crashed,
        restart_dead,
        resume_shut_down,
    )

    suspects: set[UUID] = set()
    while True:
        await anyio.sleep(every)
        try:
            async with get_client() as client:
                await restart_crashed(client, deployment_id, max_restarts, min_age=every)
                # Another worker's shutdown: this one carries its runs on. Only the last few
                # sweeps' worth of cancellations: older ones were seen by an earlier sweep.
                await resume_shut_down(client, deployment_id, timedelta(seconds=4 * every))
                dead = await dead_running_runs(client, deployment_id, data_dir)
                # Dead in two sweeps in a row: its own runner would have noticed in between.
                await restart_dead(client, dead & suspects, max_restarts)
                suspects = dead
        except Exception as exc:  # a Prefect API hiccup must not kill the worker
            logger.warning("recovery sweep failed: %s", exc)


async def serve(
    name: str = DEFAULT_DEPLOYMENT_NAME,
    poll_seconds: float = 1.0,
    heartbeat_seconds: int = 0,
    sweep_seconds: float = 15.0,
) -> None:
    """Register the deployment, recover orphans, then run the runner and the sweep."""
    prepare_environment()
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from autopilot.worker.recovery import recover_orphans
    from flows.auto_pilot import auto_pilot

    settings = get_settings()
    runner = Runner(
        name=f"autopilot-{name}",
        query_seconds=poll_seconds,
        # Off by default: recovery here uses the executor registry, not heartbeats, and each
        # heartbeat is a stored event (8,640 per 72 h at 30 s) plus ~1 s joined at flow end.
        heartbeat_seconds=heartbeat_seconds or None,
        limit=None,
    )
    deployment_id = await runner.aadd_flow(auto_pilot, name=name)
    async with get_client() as client:
        restarted = await recover_orphans(
            client, deployment_id, settings.data_dir.resolve(), settings.max_crash_restarts
        )
    if restarted:
        logger.warning("restarted %d run(s) left by a dead runner", len(restarted))
    async with anyio.create_task_group() as group:
        group.start_soon(
            _sweep,
            deployment_id,
            sweep_seconds,
            settings.max_crash_restarts,
            settings.data_dir.resolve(),
        )
        await runner.start()
        group.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=DEFAULT_DEPLOYMENT_NAME)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=0,
        help="flow-run heartbeat events (min 30), for Prefect automations on multi-host "
        "pools; 0 = off",
    )
    parser.add_argument("--sweep-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    ensure_prefect_api_url()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    anyio.run(serve, args.name, args.poll_seconds, args.heartbeat_seconds, args.sweep_seconds)


if __name__ == "__main__":
    main()
