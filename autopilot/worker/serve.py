"""Serve the auto-pilot as deployment `auto-pilot/<name>` and recover dead runs by itself.

    python -m deployments.serve            (also: `autopilot worker`; deployments/serve.py
                                            is only this module's entry point)

Before serving it restarts the runs whose process died on this host with its runner; while
serving, the flow's crash hook restarts runs whose process died, and a sweep restarts any run
of the deployment, from any host, whose lease lapsed (autopilot/worker/recovery.py).
"""

from __future__ import annotations

import argparse
import logging
import os

import anyio

from autopilot.errors import InvalidInput
from autopilot.logs import basic_config, use_log_format
from autopilot.prefect_env import ensure_prefect_api_url
from autopilot.settings import get_settings

logger = logging.getLogger("autopilot.worker")

DEFAULT_DEPLOYMENT_NAME = "local"


def prepare_environment() -> None:
    """Fix what every flow process inherits: data dir and result storage (absolute), and
    Prefect's client retrying a server error."""
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOPILOT_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(settings.results_path))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A Prefect server on PostgreSQL answers 500 when its connection pool is exhausted (100
    # runs starting at once: "QueuePool limit ... reached", many_hosts_load on fa6a7e9), and a
    # flow whose start-up read got one failed. Prefect's client retries 429/502/503 with
    # back-off; 500 too, in the flow processes, which inherit this environment.
    os.environ.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")
    get_settings.cache_clear()


async def serve(
    name: str = DEFAULT_DEPLOYMENT_NAME,
    poll_seconds: float = 1.0,
    heartbeat_seconds: int = 0,
    sweep_seconds: float = 5.0,
    recover: tuple[str, ...] = (),
) -> None:
    """Register the deployment, recover orphans, then run the runner and the sweep (over
    this deployment and those named in `recover`)."""
    prepare_environment()
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from autopilot.worker.accepted import note_runner_acceptances
    from autopilot.worker.recovery import recover_orphans
    from autopilot.worker.sweep import Sweep
    from flows.auto_pilot import auto_pilot

    settings = get_settings()
    # Runs this worker's runner accepts are vouched for until their process marks its lease.
    note_runner_acceptances()
    sweep = Sweep.from_settings([f"{auto_pilot.name}/{name}", *recover], sweep_seconds)
    runner = Runner(
        name=f"autopilot-{name}",
        query_seconds=poll_seconds,
        # Off by default: liveness is the runs' own lease (autopilot/liveness.py), and each
        # heartbeat is a stored event (8,640 per 72 h at 30 s) plus ~1 s joined at flow end.
        heartbeat_seconds=heartbeat_seconds or None,
        limit=None,
    )
    deployment_id = await runner.aadd_flow(auto_pilot, name=name)
    async with get_client() as client:
        restarted = await recover_orphans(
            client, [deployment_id], settings.host_id, settings.max_crash_restarts
        )
    if restarted:
        logger.warning("restarted %d run(s) left by a dead runner", len(restarted))
    logger.info("%s: serving auto-pilot/%s", settings.host_id, name)
    async with anyio.create_task_group() as group:
        group.start_soon(sweep.forever)
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
    parser.add_argument("--sweep-seconds", type=float, default=5.0)
    parser.add_argument(
        "--recover",
        action="append",
        default=[],
        metavar="FLOW/DEPLOYMENT",
        help="also recover the runs of this deployment (e.g. auto-pilot/process); repeatable",
    )
    args = parser.parse_args(argv)
    ensure_prefect_api_url()
    try:
        use_log_format()
    except InvalidInput as exc:
        parser.error(exc.message)
    basic_config()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        anyio.run(
            serve,
            args.name,
            args.poll_seconds,
            args.heartbeat_seconds,
            args.sweep_seconds,
            tuple(args.recover),
        )
    except InvalidInput as exc:
        parser.error(exc.message)


if __name__ == "__main__":
    main()
