"""Recover the runs of deployments served by others (`autopilot recover`).

    python -m autopilot.worker.watch --deployment auto-pilot/process

A process work pool's `prefect worker start` runs no code of ours between flow runs, and
Prefect's process worker reports a killed run Crashed a second time after the flow's crash
hook restarted it, which leaves it Crashed. One of these (or an `autopilot worker --recover
auto-pilot/process`) anywhere restarts such runs and judges the pool's runs by their lease,
as a worker does for its own deployment.
"""

from __future__ import annotations

import argparse
import logging

import anyio

from autopilot.errors import InvalidInput
from autopilot.logs import basic_config, use_log_format
from autopilot.prefect_env import ensure_prefect_api_url
from autopilot.settings import get_settings
from autopilot.worker.sweep import Sweep

logger = logging.getLogger("autopilot.worker")


async def watch(deployments: list[str], sweep_seconds: float) -> None:
    settings = get_settings()
    sweep = Sweep.from_settings(deployments, sweep_seconds)
    logger.info("%s: recovering the runs of %s", settings.host_id, ", ".join(deployments))
    await sweep.forever()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: sweep until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deployment", action="append", required=True, metavar="FLOW/DEPLOYMENT",
        help="a deployment whose runs to recover (e.g. auto-pilot/process); repeatable",
    )  # fmt: skip
    parser.add_argument("--sweep-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    ensure_prefect_api_url()
    try:
        use_log_format()
    except InvalidInput as exc:
        parser.error(exc.message)
    basic_config()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        anyio.run(watch, args.deployment, args.sweep_seconds)
    except InvalidInput as exc:
        parser.error(exc.message)


if __name__ == "__main__":
    main()
