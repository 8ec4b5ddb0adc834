"""Latency of `POST /api/simulation/auto-pilot/status` with N auto-pilots actively monitoring.

Starts its own Prefect server (SQLite by default, or a throwaway PostgreSQL 15 cluster with
--db postgres), bundled simulator, serving worker and REST shim, all on free 127.0.0.1 ports.
Creates N long simulations (default 1000 rounds at 0.2 s each), sets each to `auto` and starts
it through the shim, waits until every one reports current_step "monitoring", then times
--calls status requests round-robin over the N with one keep-alive httpx client (after a
warm-up). Then times the same service call in-process (`AutopilotService.status`, no HTTP
shim), with one shared Prefect client (as the shim holds one) and with a fresh client per read
(as a one-shot CLI call), and the Prefect reads it is made of. The worker runs with
the product defaults: runner poll 1 s, flow-run heartbeats off, monitor poll 30 s, control
check 1 s (one flow-run read per second per active run). The shim answers status from its
event-fed cache (autopilot/service/status_cache.py), as it does by default.

    .venv/bin/python benchmarks/status_latency.py [--active 10] [--calls 500]
    .venv/bin/python benchmarks/status_latency.py --db postgres --active 100 --round-seconds 2
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_support import (  # noqa: E402
    Stack,
    bench_environment,
    code_version,
    percentile,
    running_stack,
)

# Imported before our environment is set: tests.stack_fixtures imports tests.conftest, which
# rewrites PREFECT_API_URL, PREFECT_HOME, ... for a test session and makes a temp dir.
from tests.conftest import SESSION_DIR as _TEST_SESSION_DIR  # noqa: E402
from tests.helpers import stop_process  # noqa: E402
from tests.stack_fixtures import start_shim  # noqa: E402

atexit.register(shutil.rmtree, _TEST_SESSION_DIR, ignore_errors=True)
ENV = bench_environment("autopilot-bench-status-")
WORK = ENV.work

import anyio  # noqa: E402
import httpx  # noqa: E402

from autopilot.client import MultimoClient  # noqa: E402
from autopilot.worker.executors import living_executor  # noqa: E402

PREFIX = "/api/simulation/auto-pilot"


def stats_ms(samples: list[float]) -> str:
    ordered = sorted(s * 1000 for s in samples)
    return (
        f"{percentile(ordered, 50):8.2f}{percentile(ordered, 99):8.2f}"
        f"{statistics.fmean(ordered):8.2f}{ordered[-1]:9.2f}"
    )


def step_counts() -> dict[str, int]:
    """Task runs now RUNNING by step, and flow runs FAILED or CRASHED (one query each)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )

    with get_client(sync_client=True) as client:
        running = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=["RUNNING"]))
            ),
            limit=200,  # the API maximum
        )
        ended = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["FAILED", "CRASHED"]))
            ),
            limit=200,  # the API maximum
        )
    counts = Counter(run.name.split("-")[0] for run in running)
    counts.update(run.state.type.value for run in ended if run.state)
    return dict(counts)


def session_cpu_seconds(sid: int) -> float:
    """utime + stime of every process in a session (the Prefect server and its children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def post(client: httpx.Client, endpoint: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"{PREFIX}/{endpoint}", json=body)
    payload = response.json()
    if response.status_code != 200 or not payload.get("success"):
        raise RuntimeError(f"{endpoint} {body}: {response.status_code} {payload}")
    return dict(payload["data"])


def time_http(
    client: httpx.Client, sims: list[str], calls: int, budget: float
) -> tuple[list[float], int]:
    samples, not_monitoring = [], 0
    deadline = time.monotonic() + budget
    for i in range(calls):
        if time.monotonic() > deadline:
            print(f"time budget of {budget:.0f}s spent after {i} calls")
            break
        sim = sims[i % len(sims)]
        t0 = time.perf_counter()
        response = client.post(f"{PREFIX}/status", json={"simulation_id": sim})
        samples.append(time.perf_counter() - t0)
        data = response.json()["data"]
        not_monitoring += data.get("current_step") != "monitoring"
    return samples, not_monitoring


def time_freshness(client: httpx.Client, sims: list[str], trials: int) -> list[float]:
    """Seconds from a pause (then a resume) made by another process (an in-process service
    without the shim's cache, as the CLI is) until the shim's status shows it: how stale the
    shim's remembered answer can be."""
    from autopilot.service.operations import AutopilotService
    from autopilot.settings import Settings

    writer = AutopilotService(Settings())

    def shown(sim: str, status: str, timeout: float = 30) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if post(client, "status", simulation_id=sim)["status"] == status:
                return time.perf_counter() - t0
            time.sleep(0.005)
        raise TimeoutError(f"{sim} not {status} after {timeout}s")

    samples = []
    for i in range(trials):
        sim = sims[i % len(sims)]
        anyio.run(writer.pause, sim)
        samples.append(shown(sim, "paused"))
        anyio.run(writer.resume, sim)
        samples.append(shown(sim, "active"))
    return samples


def time_in_process(sims: list[str], calls: int, budget: float) -> dict[str, list[float]]:
    """The service call without HTTP, with one shared Prefect client (as the shim holds it)
    and with a fresh client per read (as a one-shot CLI call), and the reads it is made of."""
    from prefect.client.orchestration import get_client

    from autopilot.names import variable_name
    from autopilot.service.operations import AutopilotService
    from autopilot.settings import Settings

    shared = AutopilotService(Settings())  # opened below: one client, like the shim
    fresh = AutopilotService(Settings())  # never opened: a fresh client per read
    store = shared.store

    async def open_close(_: str) -> None:
        async with get_client():
            pass

    async def measure() -> None:
        await store.open()
        try:
            parts: dict[str, Callable[[str], Awaitable[Any]]] = {
                "service.status, shared client": shared.status,
                "  read variable": lambda s: store.read_config_or_none(variable_name(s)),
                "  runs (flow runs by tag)": store.runs,
                "  latest_run (runs + task runs + artifact)": store.latest_run,
                "service.status, fresh client per read": fresh.status,
                "  get_client() open + close, no request": open_close,
            }
            for name in parts:
                results[name] = []
            for sim in sims:  # warm-up
                await shared.status(sim)
                await fresh.status(sim)
            deadline = time.monotonic() + budget
            for i in range(calls):
                if time.monotonic() > deadline:
                    print(f"time budget of {budget:.0f}s spent after {i} in-process rounds")
                    break
                sim = sims[i % len(sims)]
                for name, call in parts.items():
                    t0 = time.perf_counter()
                    await call(sim)
                    results[name].append(time.perf_counter() - t0)
        finally:
            await store.close()

    results: dict[str, list[float]] = {}
    anyio.run(measure)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--active", type=int, default=10)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--in-process-calls", type=int, default=200)
    parser.add_argument("--freshness-trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--round-seconds", type=float, default=0.2)
    parser.add_argument("--ready-timeout", type=float, default=900)
    parser.add_argument(
        "--budget", type=float, default=300, help="max seconds per timed phase (HTTP, in-process)"
    )
    args = parser.parse_args()
    sims: list[str] = []
    output: list[str] = []
    with running_stack(
        ENV, round_seconds=args.round_seconds, prepare_seconds=0.5, report_seconds=0.5, db=args.db
    ) as stack:
        print(
            f"code {code_version()}; prefect server ({args.db}) healthy in"
            f" {stack.server_seconds:.1f}s"
        )
        shim, shim_url = start_shim({**os.environ}, WORK / "shim.log")
        stack.cleanup.callback(stop_process, shim)
        backend = MultimoClient(ENV.sim_url)
        stack.cleanup.callback(stop_all, backend, sims)
        measure(args, stack, backend, shim_url, sims, output)
    if output:
        print("\n== summary ==" + "\n".join(output))


def stop_all(backend: MultimoClient, sims: list[str]) -> None:
    for sim in sims:
        with contextlib.suppress(Exception):
            backend.stop(sim)
    backend.close()


def measure(
    args: argparse.Namespace,
    stack: Stack,
    backend: MultimoClient,
    shim_url: str,
    sims: list[str],
    output: list[str],
) -> None:
    with httpx.Client(base_url=shim_url, timeout=httpx.Timeout(120, connect=10)) as client:
        t0 = time.monotonic()
        for _ in range(args.active):
            sim = backend.create_simulation(
                agents=20,
                total_simulation_hours=args.rounds,
                minutes_per_round=60,
                round_seconds=args.round_seconds,
            )
            sims.append(sim)
            post(client, "config", simulation_id=sim, mode="auto")
            post(client, "start", simulation_id=sim)
        print(f"{args.active} auto-pilots configured and started in {time.monotonic() - t0:.1f}s")

        # One Prefect query per check (N status calls per check would load the box).
        deadline = time.monotonic() + args.ready_timeout
        while (counts := step_counts()).get("monitoring", 0) < len(sims):
            if counts.get("FAILED") or counts.get("CRASHED"):
                raise RuntimeError(f"auto-pilot(s) failed or crashed: {counts}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all monitoring after {args.ready_timeout}s: {counts}")
            print(f"  {time.monotonic() - t0:6.0f}s: running task runs {counts}")
            time.sleep(10)
        # Warm-up: every simulation's first status through the shim is read from Prefect (and
        # remembered); the shim must agree that all are monitoring.
        first_calls, answers = [], []
        for sim in sims:
            t_first = time.perf_counter()
            answers.append(post(client, "status", simulation_id=sim)["current_step"])
            first_calls.append(time.perf_counter() - t_first)
        if set(answers) != {"monitoring"}:
            raise RuntimeError(f"the shim disagrees: {Counter(answers)}")
        ready_s = time.monotonic() - t0
        print(f"all {args.active} monitoring {ready_s:.0f}s after the first start")
        t0 = time.monotonic()
        cpu0 = session_cpu_seconds(stack.prefect.pid)
        http_samples, not_monitoring = time_http(client, sims, args.calls, args.budget)
        http_wall = time.monotonic() - t0
        server_cpu = (session_cpu_seconds(stack.prefect.pid) - cpu0) / http_wall
        load = os.getloadavg()[0]
        cache = client.get("/healthz").json()["data"]["status_cache"]
        fresh = time_freshness(client, sims, args.freshness_trials)
    # Printed as soon as measured: a long run may be interrupted later.
    output.append(f"\n{args.db}: {args.active} active auto-pilots, round {args.round_seconds}s")
    output.append(f"{'':<46}{'p50 ms':>8}{'p99 ms':>8}{'mean':>8}{'max':>9}")
    output.append(
        f"{f'POST /status via shim ({len(http_samples)} calls)':<46}{stats_ms(http_samples)}"
    )
    output.append(
        f"  ({http_wall:.1f}s wall, {len(http_samples) / http_wall:.1f} req/s;"
        f" {not_monitoring} answers not 'monitoring'; Prefect server CPU {server_cpu:.0%}"
        f" of one core meanwhile, load average {load:.1f} on {os.cpu_count()} cores)"
    )
    output.append(
        f"{f'  first status of each simulation ({len(first_calls)})':<46}{stats_ms(first_calls)}"
    )
    output.append(
        f"  (shim status cache {cache}; a pause or resume by another process shown after"
        f" p50 {percentile(sorted(fresh), 50) * 1000:.0f} ms, max {max(fresh) * 1000:.0f} ms"
        f" over {len(fresh)})"
    )
    print("\n".join(output), flush=True)
    in_process = time_in_process(sims, args.in_process_calls, args.budget)
    lines = []
    for name, samples in in_process.items():
        label = f"{name} ({len(samples)})" if name.startswith("service") else name
        lines.append(f"{label:<46}{stats_ms(samples)}")
    executors = sum(
        living_executor(WORK / "data", p.stem) is not None
        for p in (WORK / "data" / "executors").glob("*.json")
    )
    rounds = [backend.run_status(s).current_round for s in sims]
    lines.append(
        f"({executors} flow processes alive at the end; simulations at rounds"
        f" {min(rounds)}..{max(rounds)} of {args.rounds})"
    )
    print("\n".join(lines), flush=True)
    output += lines


if __name__ == "__main__":
    main()
