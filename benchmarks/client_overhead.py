"""Per-call overhead of `MultimoClient.run_status` over a raw `httpx.Client` GET + `.json()`.

Starts a simulator subprocess on a free loopback port, creates one simulation, then times
both paths against the same endpoint in the same run. Rounds alternate between the two (the
order flips every round) so machine noise lands on both alike. Each sample is one call, timed
with perf_counter_ns; the raw client is configured like the MultimoClient one (same base URL
and timeouts, one keep-alive connection).

Usage: .venv/bin/python benchmarks/client_overhead.py [--calls 2000] [--warmup 200] [--batch 50]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from autopilot.client import MultimoClient  # noqa: E402
from tests.helpers import free_port, start_simulator, stop_process  # noqa: E402

TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def summary(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99),
        "mean": statistics.fmean(ordered),
    }


def timed(call: Callable[[], object], count: int, into: list[float]) -> None:
    for _ in range(count):
        began = time.perf_counter_ns()
        call()
        into.append((time.perf_counter_ns() - began) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per variant")
    parser.add_argument("--batch", type=int, default=50, help="calls per interleaved round")
    args = parser.parse_args()

    # SIGTERM unwinds like Ctrl-C, so the ExitStack below still stops the simulator.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as cleanup:
        data_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="overhead-")))
        port = free_port()
        # Nothing runs here: round/preparation timings do not matter, only the HTTP path.
        proc = start_simulator(data_dir, port)
        cleanup.callback(stop_process, proc)
        base_url = f"http://127.0.0.1:{port}"
        client = cleanup.enter_context(
            MultimoClient(base_url, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT)
        )
        raw = cleanup.enter_context(
            httpx.Client(base_url=base_url, timeout=httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT))
        )
        sim_id = client.create_simulation(agents=10, total_simulation_hours=3)
        path = f"/api/simulation/{sim_id}/run-status"
        samples, rounds = measure(client, raw, sim_id, path, args.calls, args.warmup, args.batch)
    report(samples, path.replace(sim_id, "<sim>"), args.calls, args.warmup, args.batch, rounds)


def measure(
    client: MultimoClient,
    raw: httpx.Client,
    sim_id: str,
    path: str,
    calls: int,
    warmup: int,
    batch: int,
) -> tuple[dict[str, list[float]], int]:
    def via_client() -> object:
        return client.run_status(sim_id)

    def via_raw() -> object:
        return raw.get(path).json()

    # Both paths see the same answer; then warm both connections and code paths.
    assert client.run_status(sim_id).runner_status == raw.get(path).json()["data"]["runner_status"]
    for _ in range(warmup):
        via_client()
        via_raw()

    samples: dict[str, list[float]] = {"MultimoClient.run_status": [], "raw httpx get+json": []}
    variants = list(zip(samples.values(), (via_client, via_raw), strict=True))
    done, rounds = 0, 0
    while done < calls:
        count = min(batch, calls - done)
        order = variants if rounds % 2 == 0 else variants[::-1]
        for into, call in order:
            timed(call, count, into)
        done += count
        rounds += 1
    return samples, rounds


def report(
    samples: dict[str, list[float]], path: str, calls: int, warmup: int, batch: int, rounds: int
) -> None:
    stats = {name: summary(values) for name, values in samples.items()}
    print(
        f"{calls} calls each after {warmup} warm-up, interleaved in {rounds} rounds of {batch}"
        f" (order flipped every round); GET {path} on 127.0.0.1,"
        f" python {sys.version.split()[0]}, httpx {httpx.__version__}"
    )
    print(f"{'':>26} {'p50 us':>9} {'p99 us':>9} {'mean us':>9}")
    for name, figures in stats.items():
        print(f"{name:>26} {figures['p50']:9.1f} {figures['p99']:9.1f} {figures['mean']:9.1f}")
    wrapped, bare = stats.values()
    print(
        f"{'overhead':>26} {wrapped['p50'] - bare['p50']:9.1f} "
        f"{wrapped['p99'] - bare['p99']:9.1f} {wrapped['mean'] - bare['mean']:9.1f}"
    )
    print(
        f"{'ratio client/raw':>26} {wrapped['p50'] / bare['p50']:9.3f} "
        f"{wrapped['p99'] / bare['p99']:9.3f} {wrapped['mean'] / bare['mean']:9.3f}"
    )


if __name__ == "__main__":
    main()
