"""`python -m simulator --host --port --data-dir --round-seconds --prepare-seconds`."""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.server import serve


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
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        round_seconds=args.round_seconds,
        prepare_seconds=args.prepare_seconds,
        report_seconds=args.report_seconds,
    )


if __name__ == "__main__":
    main()
