"""Server-side control of run processes: start, stop, kill, and adoption after a restart.

State changes happen in one database transaction (with their ledger entry) before any
process is signalled or spawned; the run process re-checks that state every round, so the
database, not the signal, is what decides whether a run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from simulator import runlock
from simulator.errors import ApiError
from simulator.store import Store, append_ledger, now_iso

log = logging.getLogger("simulator.runner")

LIVE_STATUSES = ("starting", "running", "paused", "stopping")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def run_view(simulation_id: str, run: dict[str, Any] | None) -> dict[str, Any]:
    if run is None:
        return {
            "simulation_id": simulation_id,
            "runner_status": "idle",
            "current_round": 0,
            "total_rounds": 0,
            "progress_percent": 0.0,
            "twitter_actions_count": 0,
            "reddit_actions_count": 0,
            "total_actions_count": 0,
            "error": None,
            "updated_at": None,
            "started_at": None,
            "completed_at": None,
        }
    total, current = run["total_rounds"], run["current_round"]
    return {
        "simulation_id": simulation_id,
        "runner_status": run["runner_status"],
        "current_round": current,
        "total_rounds": total,
        "progress_percent": round(current * 100 / total, 1) if total else 0.0,
        "twitter_actions_count": run["twitter_actions"],
        "reddit_actions_count": run["reddit_actions"],
        "total_actions_count": run["twitter_actions"] + run["reddit_actions"],
        "platform": run["platform"],
        "error": run["error"],
        "updated_at": run["updated_at"],
        "started_at": run["started_at"],
        "completed_at": run["completed_at"],
    }


class RunManager:
    def __init__(self, store: Store, round_seconds: float) -> None:
        self.store = store
        self.round_seconds = round_seconds

    def _round_seconds_for(self, sim: dict[str, Any]) -> float:
        override = sim.get("round_seconds")
        return float(override) if override is not None else self.round_seconds

    def start(
        self, simulation_id: str, platform: str, max_rounds: int | None, force: bool
    ) -> dict[str, Any]:
        with self.store.write() as conn:
            sim = conn.execute(
                "SELECT * FROM simulations WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
            if sim is None:
                raise ApiError(404, f"simulation {simulation_id} not found")
            if not sim["prepared"]:
                # Also a simulation whose preparation completed with a failed result.
                why = f" (preparation failed: {sim['error']})" if sim["error"] else ""
                raise ApiError(
                    400, f"simulation is not prepared{why}; call /api/simulation/prepare"
                )
            if platform != "parallel" and not sim[f"enable_{platform}"]:
                raise ApiError(400, f"platform {platform} is not enabled for this simulation")
            run = conn.execute(
                "SELECT * FROM runs WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
            if run is not None and run["runner_status"] in LIVE_STATUSES and not force:
                raise ApiError(400, "simulation is already running")
            total = sim["total_rounds"] if not max_rounds else min(max_rounds, sim["total_rounds"])
            epoch = (run["epoch"] if run else 0) + 1
            old_pid = run["pid"] if run else None
            now = now_iso()
            # Every start is a fresh run (as in multimo, which ignores "resume"): the old
            # rounds and actions go, the epoch changes so an old process cannot write again.
            conn.execute("DELETE FROM actions WHERE simulation_id = ?", (simulation_id,))
            conn.execute("DELETE FROM rounds WHERE simulation_id = ?", (simulation_id,))
            conn.execute("DELETE FROM runs WHERE simulation_id = ?", (simulation_id,))
            conn.execute(
                "INSERT INTO runs (simulation_id, epoch, runner_status, platform, current_round,"
                " total_rounds, twitter_actions, reddit_actions, started_at, updated_at)"
                " VALUES (?, ?, 'running', ?, 0, ?, 0, 0, ?, ?)",
                (simulation_id, epoch, platform, total, now, now),
            )
            conn.execute(
                "UPDATE simulations SET status = 'running', updated_at = ? WHERE simulation_id = ?",
                (now, simulation_id),
            )
            append_ledger(
                conn,
                simulation_id,
                "start",
                {"epoch": epoch, "platform": platform, "total_rounds": total, "force": force},
            )
            sim_row = dict(sim)
        if old_pid and runlock.is_held(self.store.sim_dir(simulation_id)):
            self._signal(old_pid, signal.SIGKILL)
        self._spawn(simulation_id, epoch, self._round_seconds_for(sim_row))
        return run_view(simulation_id, self.store.get_run(simulation_id))

    def stop(self, simulation_id: str) -> dict[str, Any]:
        with self.store.write() as conn:
            if not _sim_exists(conn, simulation_id):
                raise ApiError(404, f"simulation {simulation_id} not found")
            run = conn.execute(
                "SELECT * FROM runs WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
            if run is None or run["runner_status"] not in ("starting", "running", "paused"):
                raise ApiError(400, "simulation is not running")
            now = now_iso()
            conn.execute(
                "UPDATE runs SET runner_status = 'stopped', updated_at = ? WHERE simulation_id = ?",
                (now, simulation_id),
            )
            conn.execute(
                "UPDATE simulations SET status = 'stopped', updated_at = ? WHERE simulation_id = ?",
                (now, simulation_id),
            )
            append_ledger(conn, simulation_id, "stop", {"at_round": run["current_round"]})
            pid = run["pid"]
        if pid and runlock.is_held(self.store.sim_dir(simulation_id)):
            self._signal(pid, signal.SIGTERM)
        return run_view(simulation_id, self.store.get_run(simulation_id))

    def kill(self, simulation_id: str) -> dict[str, Any]:
        """SIGKILL the run process, leaving its status frozen (a fault-injection tool)."""
        run = self.store.get_run(simulation_id)
        if run is None or not run["pid"] or not runlock.is_held(self.store.sim_dir(simulation_id)):
            raise ApiError(400, "no live run process for this simulation")
        self._signal(run["pid"], signal.SIGKILL)
        with self.store.write() as conn:
            append_ledger(conn, simulation_id, "kill", {"pid": run["pid"]})
        return {"simulation_id": simulation_id, "killed_pid": run["pid"]}

    def recover(self) -> None:
        """At server start: adopt live run processes, respawn dead ones that should run."""
        with self.store.read() as conn:
            rows = conn.execute(
                "SELECT r.simulation_id, r.epoch, r.current_round, s.round_seconds FROM runs r"
                " JOIN simulations s USING (simulation_id)"
                " WHERE r.runner_status IN ('starting', 'running')"
            ).fetchall()
        for row in rows:
            sim_id = row["simulation_id"]
            if runlock.is_held(self.store.sim_dir(sim_id)):
                log.info("%s: run process alive, adopting it", sim_id)
                continue
            log.info("%s: run process gone, resuming after round %s", sim_id, row["current_round"])
            with self.store.write() as conn:
                append_ledger(
                    conn,
                    sim_id,
                    "resume",
                    {"epoch": row["epoch"], "after_round": row["current_round"]},
                )
            self._spawn(sim_id, row["epoch"], self._round_seconds_for(dict(row)))

    def _spawn(self, simulation_id: str, epoch: int, round_seconds: float) -> None:
        sim_dir = self.store.sim_dir(simulation_id)
        sim_dir.mkdir(parents=True, exist_ok=True)
        # The whole environment, the clock settings included (see clock.py): a run process
        # must stamp rounds with the server's clock.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        cmd = [
            sys.executable,
            "-m",
            "simulator.run_process",
            "--data-dir",
            str(self.store.data_dir),
            "--simulation-id",
            simulation_id,
            "--epoch",
            str(epoch),
            "--round-seconds",
            str(round_seconds),
        ]
        with open(sim_dir / "run.log", "ab") as log_file:
            # Own session: the run outlives the server (and a Ctrl-C aimed at the server).
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                start_new_session=True,
            )
        # Reap the child when it exits so it does not linger as a zombie.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        log.info("%s: spawned run process %s (epoch %s)", simulation_id, proc.pid, epoch)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _sim_exists(conn: Any, simulation_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM simulations WHERE simulation_id = ?", (simulation_id,)
    ).fetchone()
    return row is not None
