"""N auto-pilots across H hosts on one Prefect server on PostgreSQL, through a Prefect outage.

Hosts as in tests/hosts (a worker each, its own identity and data dir, shared results), with
the product's default liveness timings (renewals 5 s, window 20 s, sweeps 5 s). Starts N
auto-pilots at once on long simulations, waits until all of them monitor, kills the Prefect
server for `--outage` seconds and starts it again on the same database, then waits until all
complete. Prints: how long until all monitored, failures (runs not Completed), false "dead"
verdicts (Crashed states: no process was killed), side effects per simulation from the
simulator's ledger (one prepare, start and report each).

    .venv/bin/python benchmarks/many_hosts_load.py [--active 100] [--hosts 3] [--outage 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="autopilot-bench-hosts-"))
os.environ.update(PREFECT_HOME=str(WORK / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")

from benchmarks.bench_support import code_version  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.hosts.cluster import (  # noqa: E402
    DEPLOYMENT,
    cluster_on_postgres,
    lease_of,
    state_history,
)
from tests.prefect_stack import launch, read_flow_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=240)
    parser.add_argument("--round-seconds", type=float, default=2.0)
    args = parser.parse_args()

    print(f"code {code_version()}; {args.active} auto-pilots, {args.hosts} hosts; work {WORK}")
    simulator = {"round_seconds": args.round_seconds, "prepare_seconds": 2, "report_seconds": 2}
    env = {**os.environ, "AUTOPILOT_POLL_INTERVAL": "10"}
    # timings={}: the product's defaults.
    with cluster_on_postgres(WORK, env, simulator, timings={}, sweep_seconds="5") as cluster:
        for i in range(args.hosts):
            cluster.host(f"h{i}").start()
        t0 = time.monotonic()
        sims = [cluster.create_simulation(rounds=args.rounds) for _ in range(args.active)]
        runs = {launch(sim, deployment=DEPLOYMENT): sim for sim in sims}

        def all_monitoring() -> bool:
            return all(
                (m := lease_of(r)) is not None and m.beat > 1 and cluster.ledger(s)["start"]
                for r, s in runs.items()
            )

        wait_until(all_monitoring, timeout=1800, interval=5)
        print(f"all {args.active} started and renewing {time.monotonic() - t0:.0f}s after "
              "the first launch", flush=True)  # fmt: skip
        hosts_of_runs = Counter(lease_of(r).host for r in runs)  # type: ignore[union-attr]
        print(f"runs per host: {dict(sorted(hosts_of_runs.items()))}")
        down_at = datetime.now(UTC)
        start_again = cluster.stop_prefect()
        print(f"Prefect server down for {args.outage:.0f}s", flush=True)
        time.sleep(args.outage)
        start_again()
        up_at = datetime.now(UTC)
        print("Prefect server up again", flush=True)

        def all_ended() -> bool:
            return all(
                read_flow_run(r).state.type.value in {"COMPLETED", "FAILED", "CANCELLED"}
                for r in runs
            )

        wait_until(all_ended, timeout=args.rounds * args.round_seconds + 1800, interval=10)
        ended = Counter(read_flow_run(r).state.type.value for r in runs)
        crashes = [s.timestamp for r in runs for s in state_history(r) if s.type.value == "CRASHED"]
        # The outage's verdicts: from its start to one window after it (a judge needs a window
        # of watching after its first successful look).
        during = sum(1 for at in crashes if down_at <= at <= up_at + timedelta(seconds=20))
        before = sum(1 for at in crashes if at < down_at)
        effects = Counter(tuple(sorted(cluster.ledger(s).items())) for s in runs.values())
        print(f"ended: {dict(ended)}; failures {args.active - ended['COMPLETED']}")
        print(f"false dead verdicts (Crashed states, nothing was killed): {len(crashes)}: "
              f"{before} while starting, {during} in the outage (+1 window), "
              f"{len(crashes) - before - during} after")  # fmt: skip
        for ledger, count in effects.items():
            print(f"  {count} simulations with ledger {dict(ledger)}")


if __name__ == "__main__":
    main()
