"""Preparation tasks: build agent profiles and the follower graph in a background thread.

Like multimo there is no duplicate guard: each accepted call starts its own task (and is
ledgered), which is exactly what lets a test catch a client that prepares twice.

A task ends `failed` (it broke) or `completed` with a `result` saying what became of the
simulation: `ready`, or -- as multimo reports a preparation that did not work out --
`failed` with an `error`, leaving the simulation unprepared and itself `failed`. A client
that trusts the task status alone is caught by the `prepare_result_failed` switch.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

from simulator import faults
from simulator.background import resume_unfinished, run_in_background
from simulator.errors import ApiError
from simulator.profiles import build_config
from simulator.store import Store, append_ledger, now_iso

log = logging.getLogger("simulator.prepare")

_STEPS = (
    "Reading simulation settings",
    "Generating agent profiles",
    "Building follower graph",
    "Writing simulation config",
)


def task_view(task: dict[str, Any]) -> dict[str, Any]:
    view = {
        "task_id": task["task_id"],
        "simulation_id": task["simulation_id"],
        "status": task["status"],
        "progress": task["progress"],
        "message": task["message"],
    }
    if task["error"]:
        view["error"] = task["error"]
    if task["status"] == "completed":
        result: dict[str, Any] = {"simulation_id": task["simulation_id"], "status": "ready"}
        if task["result_error"]:
            result.update(status="failed", error=task["result_error"])
        view["result"] = result
    return view


def submit(store: Store, simulation_id: str, prepare_seconds: float) -> dict[str, Any]:
    with store.write() as conn:
        sim = conn.execute(
            "SELECT prepared FROM simulations WHERE simulation_id = ?", (simulation_id,)
        ).fetchone()
        if sim is None:
            raise ApiError(404, f"simulation {simulation_id} not found")
        if sim["prepared"]:
            return {"simulation_id": simulation_id, "status": "ready", "already_prepared": True}
        task_id = f"task_{uuid.uuid4().hex[:12]}"
        now = now_iso()
        conn.execute(
            "INSERT INTO prepare_tasks (task_id, simulation_id, status, progress, message,"
            " created_at, updated_at) VALUES (?, ?, 'pending', 0, 'Queued', ?, ?)",
            (task_id, simulation_id, now, now),
        )
        # A new attempt: the reason an earlier result failed no longer describes it.
        conn.execute(
            "UPDATE simulations SET status = 'preparing', error = NULL, updated_at = ?"
            " WHERE simulation_id = ?",
            (now, simulation_id),
        )
        append_ledger(conn, simulation_id, "prepare", {"task_id": task_id})
    run_in_background(_work, store, simulation_id, task_id, prepare_seconds)
    return {
        "task_id": task_id,
        "simulation_id": simulation_id,
        "status": "processing",
        "already_prepared": False,
    }


def status(store: Store, simulation_id: str, task_id: str | None) -> dict[str, Any]:
    with store.read() as conn:
        sim = conn.execute(
            "SELECT prepared FROM simulations WHERE simulation_id = ?", (simulation_id,)
        ).fetchone()
        task = None
        if task_id:
            task = conn.execute(
                "SELECT * FROM prepare_tasks WHERE task_id = ? AND simulation_id = ?",
                (task_id, simulation_id),
            ).fetchone()
    if sim is None:
        raise ApiError(404, f"simulation {simulation_id} not found")
    if task_id:
        if task is None:
            raise ApiError(404, f"task {task_id} not found")
        return {**task_view(dict(task)), "already_prepared": bool(sim["prepared"])}
    # multimo quirk kept on purpose: without a task_id only "prepared or not" is known, so a
    # failed (or running) preparation looks not_started.
    if sim["prepared"]:
        return {
            "simulation_id": simulation_id,
            "status": "ready",
            "progress": 100,
            "message": "Simulation is prepared",
            "already_prepared": True,
        }
    return {
        "simulation_id": simulation_id,
        "status": "not_started",
        "progress": 0,
        "message": "Preparation not started",
        "already_prepared": False,
    }


def recover(store: Store, prepare_seconds: float) -> None:
    """Threads do not survive a server restart: an interrupted preparation starts over under
    its own task id (building is deterministic from the seed), as a restarted run continues."""
    resume_unfinished(
        store,
        "SELECT simulation_id, task_id FROM prepare_tasks"
        " WHERE status IN ('pending', 'processing')",
        "task_id",
        "preparation",
        _work,
        prepare_seconds,
    )


def _update(store: Store, task_id: str, **fields: Any) -> None:
    fields["updated_at"] = now_iso()
    assignments = ", ".join(f"{key} = ?" for key in fields)
    with store.write() as conn:
        conn.execute(
            f"UPDATE prepare_tasks SET {assignments} WHERE task_id = ?",
            (*fields.values(), task_id),
        )


def _work(store: Store, simulation_id: str, task_id: str, prepare_seconds: float) -> None:
    try:
        _prepare(store, simulation_id, task_id, prepare_seconds)
    except Exception as exc:
        log.exception("%s: preparation %s failed", simulation_id, task_id)
        _update(store, task_id, status="failed", error=str(exc), message="Preparation failed")
        with store.write() as conn:
            conn.execute(
                "UPDATE simulations SET status = 'created', updated_at = ?"
                " WHERE simulation_id = ? AND prepared = 0",
                (now_iso(), simulation_id),
            )


def _prepare(store: Store, simulation_id: str, task_id: str, prepare_seconds: float) -> None:
    pause = prepare_seconds / len(_STEPS)
    sim = store.get_simulation(simulation_id)
    assert sim is not None
    config: dict[str, Any] = {}
    for index, message in enumerate(_STEPS):
        _update(
            store,
            task_id,
            status="processing",
            progress=index * 100 // len(_STEPS),
            message=message,
        )
        time.sleep(pause)
        if index == 1:
            with store.read() as conn:
                switches = faults.effective(conn, simulation_id)
            if switches.get("fail_prepare"):
                raise RuntimeError("injected preparation failure")
            platforms = [p for p in ("twitter", "reddit") if sim[f"enable_{p}"]]
            config = build_config(simulation_id, sim["seed"], sim["agents"], platforms)
    config_json = json.dumps(config)
    # Written even if the result turns out failed below: the config is deterministic from the
    # seed, unused while the simulation is unprepared, and a duplicate task may need it.
    path = store.sim_dir(simulation_id) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path)  # atomic: a reader never sees half a config
    now = now_iso()
    with store.write() as conn:
        # Spent in the transaction that ends the task: a preparation cut short by a restart
        # starts over and still meets the switch.
        reason = faults.take_once(conn, simulation_id, "prepare_result_failed")
        if reason is None:
            conn.execute(
                # A second (duplicate) task finishing late must not turn a running sim to ready.
                "UPDATE simulations SET status = CASE WHEN prepared = 1 THEN status ELSE 'ready'"
                " END, prepared = 1, config_json = ?, error = NULL, updated_at = ?"
                " WHERE simulation_id = ?",
                (config_json, now, simulation_id),
            )
        else:
            conn.execute(
                # Nor may a late failed result undo a duplicate task's successful preparation.
                "UPDATE simulations SET status = 'failed', error = ?, updated_at = ?"
                " WHERE simulation_id = ? AND prepared = 0",
                (str(reason), now, simulation_id),
            )
        conn.execute(
            "UPDATE prepare_tasks SET status = 'completed', progress = 100,"
            " message = 'Preparation completed', result_error = ?, updated_at = ?"
            " WHERE task_id = ?",
            (None if reason is None else str(reason), now, task_id),
        )
    if reason is None:
        log.info("%s: prepared (%s agents)", simulation_id, sim["agents"])
    else:
        log.info("%s: preparation completed with a failed result: %s", simulation_id, reason)
