"""Seconds from a disruption to progress again, on the real stack with the product's defaults.

Starts its own Prefect server, bundled simulator and worker (runner poll 1 s, control check
1 s, flow heartbeat off: the worker's default) on free loopback ports, then measures, per trial:
  kill-flow     SIGKILL of the flow process mid-monitoring → the next run-status poll
  kill-worker   SIGKILL of the worker and its flow processes, worker restarted at once → the
                next run-status poll
  suspend       suspend requested → the flow process exited, and the last run-status poll
                (negative: the last poll came before the request)
  resume        resume requested → the flow run RUNNING again, and → the next poll
Polls are read from the simulator's access log. Prints p50 / max per measure.

    .venv/bin/python benchmarks/recovery_timings.py [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_support import bench_environment, percentile, running_stack  # noqa: E402
from tests.helpers import run_status_poll_times, wait_until  # noqa: E402

ENV = bench_environment(
    "autopilot-bench-", AUTOPILOT_POLL_INTERVAL="1", AUTOPILOT_CONTROL_CHECK_INTERVAL="1"
)

from autopilot.client import MultimoClient  # noqa: E402
from autopilot.worker.executors import living_executor  # noqa: E402
from tests.prefect_stack import launch, state_type  # noqa: E402


def next_poll_after(log: Path, simulation_id: str, t0: float, timeout: float = 120) -> float:
    return wait_until(
        lambda: next((t for t in run_status_poll_times(log, simulation_id) if t > t0), None),
        timeout=timeout,
        interval=0.05,
        message="next poll",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    data_dir, sim_log = ENV.data_dir, ENV.sim_log
    results: dict[str, list[float]] = {
        k: []
        for k in [
            "kill-flow",
            "kill-worker",
            "suspend-exit",
            "suspend-last-poll",
            "resume-running",
            "resume-poll",
        ]
    }
    with running_stack(ENV, round_seconds=0.2, prepare_seconds=0.5, report_seconds=0.2) as stack:
        from prefect.flow_runs import resume_flow_run, suspend_flow_run

        worker = stack.worker
        backend = MultimoClient(ENV.sim_url)
        stack.cleanup.callback(backend.close)
        for trial in range(args.trials):
            sim = backend.create_simulation(agents=20, total_simulation_hours=400)
            run_id = launch(sim)
            wait_until(lambda s=sim: backend.run_status(s).current_round >= 3, timeout=90)

            pid = living_executor(data_dir, run_id)
            assert pid is not None
            t0 = time.time()
            os.kill(pid, signal.SIGKILL)
            results["kill-flow"].append(next_poll_after(sim_log, sim, t0) - t0)

            time.sleep(1.5)  # let the restarted run settle into monitoring
            t0 = time.time()
            worker.kill(with_flow_processes=True)
            worker.start()
            results["kill-worker"].append(next_poll_after(sim_log, sim, t0) - t0)

            time.sleep(1.5)
            t0 = time.time()
            suspend_flow_run(flow_run_id=run_id)
            wait_until(lambda r=run_id: living_executor(data_dir, r) is None, timeout=60)
            results["suspend-exit"].append(time.time() - t0)
            results["suspend-last-poll"].append(max(run_status_poll_times(sim_log, sim)) - t0)

            t0 = time.time()
            resume_flow_run(run_id)
            wait_until(lambda r=run_id: state_type(r) == "RUNNING", timeout=60, interval=0.05)
            results["resume-running"].append(time.time() - t0)
            results["resume-poll"].append(next_poll_after(sim_log, sim, t0) - t0)

            backend.stop(sim)
            print(
                f"trial {trial + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items())
            )
    print(f"\n{args.trials} trials; runner poll 1 s, control check 1 s, flow heartbeat off")
    print(f"{'measure':<20}{'p50 s':>8}{'max s':>8}")
    for name, values in results.items():
        print(f"{name:<20}{percentile(sorted(values), 50):>8.2f}{max(values):>8.2f}")


if __name__ == "__main__":
    main()
