"""Simulator throughput: 500 agents, 72 rounds, no sleeping between rounds.

Measures two things in-process:
- engine only: World.step for every round (the simulation logic);
- persisted: the run process's loop (run_process.run), i.e. the engine plus one SQLite
  transaction per round (actions, round row, counters) in WAL mode, as in production.

Usage: .venv/bin/python benchmarks/simulator_throughput.py [--agents 500] [--rounds 72]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from simulator import run_process
from simulator.engine import World
from simulator.profiles import build_config
from simulator.store import Store, now_iso

PLATFORMS = ["twitter", "reddit"]


def bench_engine(agents: int, rounds: int, seed: int) -> tuple[int, float]:
    world = World(build_config("sim_bench", seed, agents, PLATFORMS), PLATFORMS)
    began = time.perf_counter()
    actions = sum(len(world.step(r)) for r in range(1, rounds + 1))
    return actions, time.perf_counter() - began


def bench_persisted(agents: int, rounds: int, seed: int, data_dir: Path) -> tuple[int, float]:
    store = Store(data_dir)
    sim_id = "sim_benchmark01"
    config = build_config(sim_id, seed, agents, PLATFORMS)
    now = now_iso()
    with store.write() as conn:
        conn.execute(
            "INSERT INTO simulations (simulation_id, status, enable_twitter, enable_reddit,"
            " agents, total_simulation_hours, minutes_per_round, total_rounds, seed, prepared,"
            " config_json, created_at, updated_at)"
            " VALUES (?, 'running', 1, 1, ?, ?, 60, ?, ?, 1, ?, ?, ?)",
            (sim_id, agents, rounds, rounds, seed, json.dumps(config), now, now),
        )
        conn.execute(
            "INSERT INTO runs (simulation_id, epoch, runner_status, platform, current_round,"
            " total_rounds, twitter_actions, reddit_actions, started_at, updated_at)"
            " VALUES (?, 1, 'running', 'parallel', 0, ?, 0, 0, ?, ?)",
            (sim_id, rounds, now, now),
        )
    began = time.perf_counter()
    code = run_process.run(store, sim_id, epoch=1, round_seconds=0.0)
    elapsed = time.perf_counter() - began
    run = store.get_run(sim_id)
    assert code == 0 and run is not None and run["runner_status"] == "completed", run
    return run["twitter_actions"] + run["reddit_actions"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=72)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "engine only": bench_engine(args.agents, args.rounds, args.seed),
            "engine + SQLite": bench_persisted(args.agents, args.rounds, args.seed, Path(tmp)),
        }
    print(f"{args.agents} agents, {args.rounds} rounds, round_seconds=0")
    for name, (actions, elapsed) in results.items():
        print(
            f"{name:>16}: {actions} actions in {elapsed:.3f}s -> "
            f"{actions / elapsed:,.0f} agent-actions/s, {args.rounds / elapsed:,.1f} rounds/s"
        )


if __name__ == "__main__":
    main()
