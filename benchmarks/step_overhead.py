"""Orchestration overhead per step: the five steps called bare vs inside the Prefect flow.

Starts its own Prefect server (SQLite), bundled simulator and serving worker on free loopback
ports. Every trial runs these variants, in an order rotated each trial, each on a fresh
simulation (10 agents, 3 rounds, round_seconds 0, prepare and report 0.3 s on the simulator):

  direct      the five step functions called bare (`task.fn(ctx)`) in this process: the same
              HTTP work against the same simulator, no Prefect run (their run loggers are
              disabled so `get_run_logger` works; progress and report artifacts are still
              written through the Prefect API, without a run id)
  flow        `auto_pilot(...)` called in this process as a flow against the real server
              (a flow run, five task runs, persisted results, API logs, control checks)
  deployment  a flow run of deployment auto-pilot/local, executed by the worker (runner poll
              1 s, the product default) in a new process: created → COMPLETED seen
  noop-flow   an empty flow in this process: the fixed cost of one flow run
  noop-5tasks the same flow calling five empty tasks with persisted results and a cache key,
              the Prefect part of a step without its work

The monitor polls every 0.02 s (launch option `poll_interval`). Prepare and report poll
their backend task every 1 s (constants in tasks/), in every variant alike. Each step's
function (`task.fn`) is wrapped with a timer in this process, so the time spent inside the five
step functions is known for the direct and the in-process flow variants alike.

Overhead per step, five estimates (medians over the trials; each trial's walls are printed):
  A  (flow - direct) / 5                      the brief's definition; paired by trial, so the
                                              simulator's own jitter (process spawn, threads)
                                              lands in it
  B  (flow - time inside its step functions) / 5   everything Prefect adds around the steps,
                                              measured within one run (no cross-run noise)
  F  (flow run start→end - step functions) / 5   B without the fixed cost of creating and
                                              tearing down the flow run
  D  (step functions in flow - bare) / 5      Prefect work inside the steps (control-state
                                              reads, API logging, artifacts with run ids)
  E  (noop-5tasks - noop-flow) / 5            Prefect's cost of one persisted, cached task
                                              (server-side run times)

When flow-run heartbeats are on (`deployments.serve --heartbeat-seconds`, or
PREFECT_FLOWS_HEARTBEAT_FREQUENCY; off by default), the fixed cost per flow run (wall - run)
includes Prefect 3.9.1's heartbeat thread, which sleeps in 1 s slices and is joined at the end
of every sync flow run: 0-1 s, depending on phase.

    .venv/bin/python benchmarks/step_overhead.py [--trials 6]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_support import bench_environment, code_version, running_stack  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

ENV = bench_environment("autopilot-bench-steps-")

from prefect import flow, task  # noqa: E402
from prefect.logging import get_logger  # noqa: E402

from autopilot.client import MultimoClient  # noqa: E402
from autopilot.models import RunOptions, StepContext  # noqa: E402
from autopilot.names import new_generation_id  # noqa: E402
from flows.auto_pilot import auto_pilot  # noqa: E402
from tasks.complete import complete  # noqa: E402
from tasks.generate_report import generate_report  # noqa: E402
from tasks.monitor import monitor_simulation  # noqa: E402
from tasks.prepare import prepare_simulation  # noqa: E402
from tasks.start import start_simulation  # noqa: E402
from tests.prefect_stack import (  # noqa: E402
    launch,
    read_flow_run,
    state_type,
    task_runs,
)

POLL = 0.02
ROUNDS = 3
VARIANTS = ["direct", "flow", "deployment", "noop-flow", "noop-5tasks"]


@contextlib.contextmanager
def run_loggers_disabled() -> Iterator[None]:
    """Outside a run `get_run_logger` raises unless both run loggers are disabled."""
    loggers = [get_logger("prefect.flow_runs"), get_logger("prefect.task_runs")]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, before, strict=True):
            lg.disabled = was


STEPS = [prepare_simulation, start_simulation, monitor_simulation, generate_report, complete]
STEP_NAMES = [t.name for t in STEPS]
# Seconds spent inside each step's own function during the current run, either variant.
BODIES: dict[str, float] = {}


def instrument(step: Any) -> None:
    """Time the step's function wherever it runs: called bare or by Prefect's task engine
    (which calls `task.fn`; the signature is kept, so parameter binding is unchanged)."""
    original = step.fn

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            BODIES[step.name] = BODIES.get(step.name, 0.0) + time.perf_counter() - t0

    step.fn = timed


def bodies() -> dict[str, float]:
    return {f"body:{name}": BODIES[name] for name in STEP_NAMES}


def run_direct(sim: str) -> dict[str, float]:
    ctx = StepContext(
        simulation_id=sim,
        generation=0,
        generation_id=new_generation_id(),
        options=RunOptions(poll_interval=POLL),
    )
    BODIES.clear()
    with run_loggers_disabled(), warnings.catch_warnings():
        # "Artifact creation outside of a flow or task run is deprecated": it still works.
        warnings.simplefilter("ignore", FutureWarning)
        t0 = time.perf_counter()
        prepared = prepare_simulation.fn(ctx)
        start_simulation.fn(ctx, prepared.baseline)
        monitored = monitor_simulation.fn(ctx)
        report = generate_report.fn(ctx, prepared.baseline)
        complete.fn(ctx, monitored, report)
        wall = time.perf_counter() - t0
    assert monitored.current_round == ROUNDS, monitored
    return {"wall": wall, **bodies()}


def run_flow(sim: str) -> dict[str, float]:
    BODIES.clear()
    t0 = time.perf_counter()
    state = auto_pilot(simulation_id=sim, options=RunOptions(poll_interval=POLL), return_state=True)
    wall = time.perf_counter() - t0
    assert state.is_completed(), state
    flow_run_id = state.state_details.flow_run_id
    return {"wall": wall, **bodies(), **server_times(flow_run_id), **task_run_times(flow_run_id)}


def task_run_times(flow_run_id: Any) -> dict[str, float]:
    """Each step's task run, start_time → end_time, as the server recorded it."""
    runs = wait_until(
        lambda: (r := task_runs(flow_run_id)) and len(r) == 5 and all(t.end_time for t in r) and r,
        timeout=30,
        message="five finished task runs",
    )
    # Task run names are `{step}-...` (the suffix varies: a random one, or the simulation id).
    return {
        f"taskrun:{step}": (r.end_time - r.start_time).total_seconds()
        for r in runs
        for step in STEP_NAMES
        if r.name == step or r.name.startswith(f"{step}-")
    }


def run_deployment(sim: str) -> dict[str, float]:
    t0 = time.perf_counter()
    run_id = launch(sim, poll_interval=POLL)
    wait_until(lambda: state_type(run_id) == "COMPLETED", timeout=120, interval=0.1)
    wall = time.perf_counter() - t0
    return {"wall": wall, **server_times(run_id)}


def server_times(flow_run_id: Any) -> dict[str, float]:
    """The run (start_time → end_time) and the wait before it (created → start_time)."""
    run = read_flow_run(flow_run_id)
    return {
        "run": (run.end_time - run.start_time).total_seconds(),
        "dispatch": (run.start_time - run.created).total_seconds(),
    }


@task(persist_result=True, cache_key_fn=lambda ctx, params: f"bench-noop-{params['key']}")
def noop_task(key: str) -> str:
    return key


@flow(name="bench-noop", persist_result=True)
def noop_flow(key: str, tasks: int) -> None:
    for i in range(tasks):
        noop_task(f"{key}-{i}")


def run_noop(key: str, tasks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    state = noop_flow(key, tasks, return_state=True)
    wall = time.perf_counter() - t0
    assert state.is_completed(), state
    return {"wall": wall, **server_times(state.state_details.flow_run_id)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for step in STEPS:
        instrument(step)
    began = time.monotonic()
    with running_stack(ENV, round_seconds=0, prepare_seconds=0.3, report_seconds=0.3) as stack:
        print(f"code {code_version()}", flush=True)
        backend = MultimoClient(ENV.sim_url)
        stack.cleanup.callback(backend.close)

        def new_sim() -> str:
            return backend.create_simulation(
                agents=10, total_simulation_hours=ROUNDS, minutes_per_round=60
            )

        runners: dict[str, Callable[[int], dict[str, float]]] = {
            "direct": lambda i: run_direct(new_sim()),
            "flow": lambda i: run_flow(new_sim()),
            "deployment": lambda i: run_deployment(new_sim()),
            "noop-flow": lambda i: run_noop(f"t{i}-0", 0),
            "noop-5tasks": lambda i: run_noop(f"t{i}-5", 5),
        }
        # Warm-up (not counted): imports, connections, first-run paths of every variant.
        for name in VARIANTS:
            runners[name](-1)
        for trial in range(args.trials):
            if time.monotonic() - began > 1200:
                print(f"time budget spent: stopping after {trial} trials")
                break
            order = VARIANTS[trial % len(VARIANTS) :] + VARIANTS[: trial % len(VARIANTS)]
            for name in order:
                results[name].append(runners[name](trial))
            print(
                f"trial {trial + 1}: "
                + ", ".join(f"{n} {results[n][-1]['wall'] * 1000:.0f}" for n in VARIANTS)
                + " ms (wall)"
            )
    report(results)


def med(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    if len(values) < len(rows):
        print(f"note: {key} missing in {len(rows) - len(values)} of {len(rows)} rows")
    return statistics.median(values) * 1000 if values else float("nan")


def report(results: dict[str, list[dict[str, float]]]) -> None:
    n = len(results["direct"])
    print(
        f"\n{n} trials interleaved (order rotated); 3-round simulations, monitor poll {POLL}s; "
        "medians in ms"
    )
    print(f"{'variant':<13}{'wall':>9}{'min':>9}{'max':>9}{'run':>9}{'dispatch':>10}")
    for name, rows in results.items():
        walls = [r["wall"] * 1000 for r in rows]
        run = f"{med(rows, 'run'):9.0f}" if "run" in rows[0] else f"{'-':>9}"
        dispatch = f"{med(rows, 'dispatch'):10.0f}" if "dispatch" in rows[0] else f"{'-':>10}"
        print(
            f"{name:<13}{statistics.median(walls):9.0f}{min(walls):9.0f}{max(walls):9.0f}"
            f"{run}{dispatch}"
        )
    print("(wall = measured here, from the call to the result / to COMPLETED seen; run = the")
    print(" flow run's start_time → end_time on the server; dispatch = created → start_time)")

    print("\nper step, ms (medians): the step's own function called bare / inside the flow,")
    print("and its task run's start_time → end_time on the server")
    print(f"{'step':<19}{'bare':>8}{'in flow':>9}{'task run':>10}{'run - fn':>10}")
    for step in STEP_NAMES:
        bare, inside = med(results["direct"], f"body:{step}"), med(results["flow"], f"body:{step}")
        task_run = med(results["flow"], f"taskrun:{step}")
        print(f"{step:<19}{bare:8.0f}{inside:9.0f}{task_run:10.0f}{task_run - inside:10.0f}")

    def summed(row: dict[str, float], prefix: str) -> float:
        return sum(v for k, v in row.items() if k.startswith(prefix))

    direct, flows, noop = results["direct"], results["flow"], results["noop-flow"]
    paired = list(zip(direct, flows, noop, strict=True))
    estimates = [
        ("A (flow - direct) / 5", [(f["wall"] - d["wall"]) / 5 for d, f, _ in paired]),
        (
            "B (flow - its step functions) / 5",
            [(f["wall"] - summed(f, "body:")) / 5 for f in flows],
        ),
        (
            "F (flow run - its step functions) / 5",
            [(f["run"] - summed(f, "body:")) / 5 for f in flows],
        ),
        (
            "D step functions in flow - bare, / 5",
            [(summed(f, "body:") - summed(d, "body:")) / 5 for d, f, _ in paired],
        ),
        (
            "E (noop-5tasks run - noop-flow run) / 5",
            [(t["run"] - z["run"]) / 5 for t, z in zip(results["noop-5tasks"], noop, strict=True)],
        ),
    ]
    print("\noverhead per step, ms: median (min..max over the trials)")
    for label, values in estimates:
        ms = [v * 1000 for v in values]
        print(f"  {label:<38}{statistics.median(ms):8.1f}   ({min(ms):.1f}..{max(ms):.1f})")
    deploy_extra = [
        (p["wall"] - f["wall"]) * 1000 for p, f in zip(results["deployment"], flows, strict=True)
    ]
    print("fixed cost per flow run, ms: median (min..max)")
    for label, ms in [
        ("flow wall - flow run (create, teardown)", [(f["wall"] - f["run"]) * 1000 for f in flows]),
        ("noop-flow wall, in process", [z["wall"] * 1000 for z in noop]),
        ("deployment wall - flow wall", deploy_extra),
        ("deployment dispatch", [p["dispatch"] * 1000 for p in results["deployment"]]),
    ]:
        print(f"  {label:<38}{statistics.median(ms):8.0f}   ({min(ms):.0f}..{max(ms):.0f})")


if __name__ == "__main__":
    main()
