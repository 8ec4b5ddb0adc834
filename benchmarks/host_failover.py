"""How fast a dead host's auto-pilot is noticed and runs again on another host.

Hosts as in tests/hosts (a worker each, its own identity and data dir, one Prefect server on a
throwaway PostgreSQL, one shared result folder), with the product's default liveness timings:
renewals every 5 s, a 20 s window, sweeps every 5 s. Each trial starts an auto-pilot, waits
until it monitors, SIGKILLs every process of the host executing it at a random moment, and
measures from the kill:

  noticed     the run's Crashed state ("its lease lapsed"), as Prefect's server timestamps it
  running     the new attempt's first lease mark, from another host
  monitoring  the new attempt back in its monitoring step (its first backend poll follows)

The killed host is replaced by a fresh one, so two hosts stay up. Goals (issue 12): noticed
p50 <= 30 s, monitoring again <= 45 s. Prefect's own zombie automation needs ~75 s at a 30 s
heartbeat, and costs a stored event per beat (benchmarks/liveness_signal.py).

    .venv/bin/python benchmarks/host_failover.py [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="autopilot-bench-failover-"))
os.environ.update(PREFECT_HOME=str(WORK / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")

from autopilot.worker.vouch import is_vouching  # noqa: E402
from benchmarks.bench_support import code_version, percentile  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.hosts.cluster import (  # noqa: E402
    DEPLOYMENT,
    cluster_on_postgres,
    lease_of,
    state_history,
)
from tests.prefect_stack import launch, running_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    print(f"code {code_version()}; {args.trials} trials; work {WORK}")
    noticed, running, monitoring = [], [], []
    simulator = {"round_seconds": 0.5, "prepare_seconds": 1, "report_seconds": 1}
    env = {**os.environ, "AUTOPILOT_POLL_INTERVAL": "2"}
    # timings={}: the product's defaults.
    with cluster_on_postgres(WORK, env, simulator, timings={}, sweep_seconds="5") as cluster:
        hosts = [cluster.host(f"h{i}").start() for i in range(2)]
        for trial in range(args.trials):
            sim = cluster.create_simulation(rounds=400)
            run_id = launch(sim, deployment=DEPLOYMENT)
            wait_until(lambda r=run_id: running_task(r) == "monitoring", timeout=120)
            time.sleep(rng.uniform(0, 10))  # a random moment of monitoring
            victim_name = lease_of(run_id).host  # type: ignore[union-attr]
            victim = next(h for h in hosts if h.name == victim_name)
            killed_at = time.time()
            victim.kill()
            wait_until(
                # The new attempt's own mark, not its worker's vouching while it starts.
                lambda r=run_id, v=victim_name: (m := lease_of(r)) is not None and m.host != v
                and not is_vouching(m),
                timeout=180, interval=0.2,
            )  # fmt: skip
            running.append(time.time() - killed_at)
            wait_until(lambda r=run_id: running_task(r) == "monitoring", timeout=120)
            monitoring.append(time.time() - killed_at)
            crashed = [s for s in state_history(run_id) if s.type.value == "CRASHED"]
            noticed.append(crashed[-1].timestamp.timestamp() - killed_at)
            print(
                f"trial {trial + 1}: killed {victim_name}; noticed {noticed[-1]:.1f}s, "
                f"running on another host {running[-1]:.1f}s, monitoring {monitoring[-1]:.1f}s",
                flush=True,
            )
            hosts.remove(victim)
            hosts.append(cluster.host(f"h{trial + 2}").start())
    for name, values in (("noticed", noticed), ("running", running), ("monitoring", monitoring)):
        if values:
            ordered = sorted(values)
            print(
                f"{name:<11} p50 {statistics.median(ordered):5.1f}s  "
                f"p90 {percentile(ordered, 90):5.1f}s  max {ordered[-1]:5.1f}s"
            )


if __name__ == "__main__":
    main()
