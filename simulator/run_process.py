"""The run process: executes the rounds of one simulation run, in its own OS process.

`python -m simulator.run_process --data-dir D --simulation-id S --epoch E --round-seconds R`

It lives in its own session so it survives the server dying, holds the simulation's run lock
(see runlock.py) for its whole life, and commits each round (its actions, the round row and
the run counters) in one transaction, so a round is all-or-nothing. Before each commit it
re-checks, inside the transaction, that its run is still the current one (same epoch) and
still running: a stop or a forced restart therefore ends it at the next round at the latest,
even if the signal sent by the server was lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from simulator import faults, runlock
from simulator.engine import Action, World
from simulator.store import Store, now_iso

log = logging.getLogger("simulator.run")

LOCK_WAIT_SECONDS = 5.0
ACTIVE = ("starting", "running")


class RunEnded(Exception):
    """The run is no longer ours to execute (stopped, restarted, or finished)."""


def platforms_of(platform: str, sim: dict[str, Any]) -> list[str]:
    enabled = [p for p in ("twitter", "reddit") if sim[f"enable_{p}"]]
    return enabled if platform == "parallel" else [p for p in enabled if p == platform]


def load_actions(conn: sqlite3.Connection, simulation_id: str) -> list[Action]:
    rows = conn.execute(
        "SELECT round, platform, agent_id, action_type, post_id, target_post_id,"
        " target_agent_id, content FROM actions WHERE simulation_id = ? ORDER BY id",
        (simulation_id,),
    ).fetchall()
    return [Action(*row) for row in rows]


def _check_current(conn: sqlite3.Connection, simulation_id: str, epoch: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM runs WHERE simulation_id = ?", (simulation_id,)).fetchone()
    if row is None or row["epoch"] != epoch or row["runner_status"] not in ACTIVE:
        raise RunEnded
    return dict(row)


def commit_round(
    store: Store, simulation_id: str, epoch: int, round_no: int, actions: list[Action]
) -> bool:
    """Persist one round atomically. Returns True when it was the last round."""
    twitter = sum(1 for a in actions if a.platform == "twitter")
    reddit = len(actions) - twitter
    now = now_iso()
    with store.write() as conn:
        run = _check_current(conn, simulation_id, epoch)
        if run["current_round"] != round_no - 1:
            # Someone else already recorded this round (cannot happen with the lock, but a
            # round counter that goes backwards or double-counts is worse than stopping).
            raise RunEnded
        conn.executemany(
            "INSERT INTO actions (simulation_id, round, platform, agent_id, action_type,"
            " post_id, target_post_id, target_agent_id, content) VALUES (?,?,?,?,?,?,?,?,?)",
            [(simulation_id, *a) for a in actions],
        )
        conn.execute(
            "INSERT INTO rounds (simulation_id, round, twitter_actions, reddit_actions,"
            " finished_at) VALUES (?,?,?,?,?)",
            (simulation_id, round_no, twitter, reddit, now),
        )
        last = round_no >= int(run["total_rounds"])
        conn.execute(
            "UPDATE runs SET current_round = ?, twitter_actions = twitter_actions + ?,"
            " reddit_actions = reddit_actions + ?, updated_at = ?, runner_status = ?,"
            " completed_at = ? WHERE simulation_id = ?",
            (
                round_no,
                twitter,
                reddit,
                now,
                "completed" if last else "running",
                now if last else None,
                simulation_id,
            ),
        )
    return last


def fail_run(store: Store, simulation_id: str, epoch: int, error: str) -> None:
    with store.write() as conn:
        _check_current(conn, simulation_id, epoch)
        now = now_iso()
        conn.execute(
            "UPDATE runs SET runner_status = 'failed', error = ?, updated_at = ?"
            " WHERE simulation_id = ?",
            (error, now, simulation_id),
        )
        conn.execute(
            "UPDATE simulations SET status = 'failed', updated_at = ? WHERE simulation_id = ?",
            (now, simulation_id),
        )


def run(store: Store, simulation_id: str, epoch: int, round_seconds: float) -> int:
    lock_fd = runlock.try_acquire(store.sim_dir(simulation_id), LOCK_WAIT_SECONDS)
    if lock_fd is None:
        log.info("%s: another run process holds the lock; exiting", simulation_id)
        return 0
    try:
        return _run_locked(store, simulation_id, epoch, round_seconds)
    except RunEnded:
        log.info("%s: run epoch %s is no longer active; exiting", simulation_id, epoch)
        return 0
    finally:
        os.close(lock_fd)


def _run_locked(store: Store, simulation_id: str, epoch: int, round_seconds: float) -> int:
    with store.write() as conn:
        run_row = _check_current(conn, simulation_id, epoch)
        conn.execute(
            "UPDATE runs SET pid = ?, runner_status = 'running', updated_at = ?"
            " WHERE simulation_id = ?",
            (os.getpid(), now_iso(), simulation_id),
        )
        sim = dict(
            conn.execute(
                "SELECT * FROM simulations WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
        )
        # Replay what earlier processes recorded: the world is a function of its actions.
        done = load_actions(conn, simulation_id)
    world = World(json.loads(sim["config_json"]), platforms_of(run_row["platform"], sim))
    world.replay(done)
    start = int(run_row["current_round"]) + 1
    total = int(run_row["total_rounds"])
    log.info("%s: epoch %s running rounds %s..%s", simulation_id, epoch, start, total)
    for round_no in range(start, total + 1):
        if round_seconds > 0:
            time.sleep(round_seconds)
        with store.read() as conn:
            _check_current(conn, simulation_id, epoch)
            switches = faults.effective(conn, simulation_id)
        if switches.get("fail_at_round") == round_no:
            fail_run(store, simulation_id, epoch, f"injected failure at round {round_no}")
            return 1
        last = commit_round(store, simulation_id, epoch, round_no, world.step(round_no))
        if switches.get("kill_run_at_round") == round_no and not last:
            log.warning("%s: killing myself after round %s (fault switch)", simulation_id, round_no)
            os.kill(os.getpid(), signal.SIGKILL)
    log.info("%s: run completed", simulation_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one simulation's rounds.")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--simulation-id", required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--round-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s run[{os.getpid()}] %(levelname)s %(message)s",
    )
    # SIGTERM (a stop) must end us between statements; an open transaction is rolled back by
    # SQLite, so the round in progress is simply not recorded.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(Store(args.data_dir), args.simulation_id, args.epoch, args.round_seconds)
    except Exception:
        log.exception("%s: run process crashed", args.simulation_id)
        _record_crash(args.data_dir, args.simulation_id, args.epoch)
        return 1


def _record_crash(data_dir: Path, simulation_id: str, epoch: int) -> None:
    try:
        fail_run(Store(data_dir), simulation_id, epoch, "run process crashed")
    except Exception:  # the crash may be the database itself; the log has the details
        log.exception("%s: could not record the crash", simulation_id)


if __name__ == "__main__":
    raise SystemExit(main())
