"""`python -m simulator --host --port --data-dir --round-seconds --prepare-seconds
--report-seconds --clock-offset-seconds --timestamp-zone`."""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator import clock
from simulator.server import serve


def _zone(text: str) -> str:
    try:
        clock.parse_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _offset(text: str) -> float:
    try:
        return clock.parse_offset(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Bundled multimo-compatible simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--data-dir", type=Path, default=Path(".autopilot/simulator"))
    parser.add_argument("--round-seconds", type=float, default=1.0)
    parser.add_argument("--prepare-seconds", type=float, default=2.0)
    parser.add_argument("--report-seconds", type=float, default=1.0)
    parser.add_argument(
        "--clock-offset-seconds",
        type=_offset,
        default=0.0,
        help="the simulator's clock runs this far ahead (negative: behind) of the real one",
    )
    parser.add_argument(
        "--timestamp-zone",
        type=_zone,
        default=clock.UTC_NAME,
        help="'utc' (ISO 8601, +00:00) or an offset like +08:00: naive local time, no suffix"
        " (write a negative one as --timestamp-zone=-05:00)",
    )
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        round_seconds=args.round_seconds,
        prepare_seconds=args.prepare_seconds,
        report_seconds=args.report_seconds,
        clock_offset_seconds=args.clock_offset_seconds,
        timestamp_zone=args.timestamp_zone,
    )


if __name__ == "__main__":
    main()
