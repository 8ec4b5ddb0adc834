"""Seconds from a disruption to progress again, on the real stack with the product's defaults.

Starts its own Prefect server, bundled simulator and worker (runner poll 2 s, control check
1 s) on free loopback ports, then measures, per trial:
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
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORK = Path(tempfile.mkdtemp(prefix="autopilot-bench-"))
from tests.helpers import (  # noqa: E402
    free_port,
    run_status_poll_times,
    start_simulator,
    stop_process,
    wait_until,
)

PREFECT_PORT = free_port()
os.environ.update(
    {
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_HOME": str(WORK / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(WORK / "results"),
        "AUTOPILOT_DATA_DIR": str(WORK / "data"),
        "AUTOPILOT_POLL_INTERVAL": "1",
        "AUTOPILOT_CONTROL_CHECK_INTERVAL": "1",
    }
)

from autopilot.client import MultimoClient  # noqa: E402
from autopilot.executors import living_executor  # noqa: E402
from tests.prefect_stack import (  # noqa: E402
    Worker,
    deployment_ready,
    launch,
    start_prefect_server,
    state_type,
)


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
    data_dir = WORK / "data"
    prefect = start_prefect_server(WORK / "prefect", PREFECT_PORT, WORK / "prefect.log")
    sim_port = free_port()
    simulator = start_simulator(WORK / "sim", sim_port, round_seconds=0.2, prepare_seconds=0.5)
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim_log = WORK / "sim" / f"server-{sim_port}.log"
    worker = Worker(
        {**os.environ, "AUTOPILOT_BACKEND_URL": sim_url}, WORK / "worker.log", poll_seconds=2
    )
    worker.start()
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
    try:
        wait_until(deployment_ready, timeout=90, interval=0.5, message="deployment")
        from prefect.flow_runs import resume_flow_run, suspend_flow_run

        backend = MultimoClient(sim_url)
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
    finally:
        worker.stop()
        stop_process(simulator)
        os.killpg(prefect.pid, signal.SIGTERM)
        prefect.wait(timeout=30)
    print(f"\n{args.trials} trials; runner poll 2 s, control check 1 s, flow heartbeat 30 s")
    print(f"{'measure':<20}{'p50 s':>8}{'max s':>8}")
    for name, values in results.items():
        print(f"{name:<20}{statistics.median(values):>8.2f}{max(values):>8.2f}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
