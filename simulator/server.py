"""Run the simulator over HTTP (blocking)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import uvicorn

from simulator import clock
from simulator.app import create_app


def configure_logging(level: int = logging.INFO) -> None:
    # Everything (uvicorn's access log included) to stderr; stdout stays free for callers.
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 5001,
    data_dir: Path = Path(".autopilot/simulator"),
    round_seconds: float = 1.0,
    prepare_seconds: float = 2.0,
    report_seconds: float = 1.0,
    clock_offset_seconds: float = 0.0,
    timestamp_zone: str = clock.UTC_NAME,
) -> None:
    configure_logging()
    app = create_app(
        Path(data_dir),
        round_seconds=round_seconds,
        prepare_seconds=prepare_seconds,
        report_seconds=report_seconds,
        clock_offset_seconds=clock_offset_seconds,
        timestamp_zone=timestamp_zone,
    )
    logging.getLogger("simulator").info(
        "simulator on http://%s:%s, data in %s, %ss per round, clock %+gs, timestamps in %s",
        host,
        port,
        Path(data_dir).resolve(),
        round_seconds,
        clock_offset_seconds,
        timestamp_zone,
    )
    uvicorn.run(app, host=host, port=port, log_config=None)
