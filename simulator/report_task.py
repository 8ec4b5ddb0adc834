"""Report generation tasks and the multimo report endpoints' semantics (quirks included).

"Newest" means most recently created, taken from the row order (rowid), never from
`created_at`: those strings follow the configurable clock (clock.py), and a server restarted
with another zone or offset would otherwise sort an older report first.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from simulator import faults, report
from simulator.background import resume_unfinished, run_in_background
from simulator.errors import ApiError
from simulator.store import Store, append_ledger, now_iso

log = logging.getLogger("simulator.report")

ACTIVE = ("pending", "processing")
_STAGES = (
    (10, "Collecting actions"),
    (40, "Computing statistics"),
    (70, "Rendering chart"),
    (90, "Writing report"),
)


def report_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "report_id": row["report_id"],
        "simulation_id": row["simulation_id"],
        "task_id": row["task_id"],
        "status": row["status"],
        "progress": row["progress"],
        "message": row["message"],
        "markdown_content": row["markdown_content"],
        "chart_path": row["chart_path"],
        "error": row["error"],
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
    }


def submit(
    store: Store, simulation_id: str, report_seconds: float, force_regenerate: bool = False
) -> dict[str, Any]:
    with store.write() as conn:
        if (
            conn.execute(
                "SELECT 1 FROM simulations WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
            is None
        ):
            raise ApiError(404, f"simulation {simulation_id} not found")
        run = conn.execute(
            "SELECT epoch, runner_status FROM runs WHERE simulation_id = ?", (simulation_id,)
        ).fetchone()
        if run is None or run["runner_status"] != "completed":
            raise ApiError(400, "simulation run has not completed")
        # Reports belong to one run (epoch): a report of an earlier, wiped run is stale.
        existing = conn.execute(
            "SELECT * FROM reports WHERE simulation_id = ? AND epoch = ?"
            " AND status IN ('completed', 'pending', 'processing')"
            " ORDER BY rowid DESC LIMIT 1",
            (simulation_id, run["epoch"]),
        ).fetchone()
        if existing is not None and not force_regenerate:
            # Deduplicated, as multimo does, but ledgered: a client that asks for a report it
            # already has is caught even though no second report is made.
            append_ledger(
                conn, simulation_id, "report_repeat", {"report_id": existing["report_id"]}
            )
            return {
                "simulation_id": simulation_id,
                "report_id": existing["report_id"],
                "task_id": existing["task_id"],
                "status": existing["status"],
                "already_generated": existing["status"] == "completed",
            }
        report_id = f"report_{uuid.uuid4().hex[:12]}"
        task_id = f"task_{uuid.uuid4().hex[:12]}"
        conn.execute(
            "INSERT INTO reports (report_id, simulation_id, epoch, task_id, status, progress,"
            " message, created_at) VALUES (?, ?, ?, ?, 'pending', 0, 'Queued', ?)",
            (report_id, simulation_id, run["epoch"], task_id, now_iso()),
        )
        append_ledger(conn, simulation_id, "report", {"report_id": report_id, "task_id": task_id})
    run_in_background(_work, store, simulation_id, report_id, report_seconds)
    return {
        "simulation_id": simulation_id,
        "report_id": report_id,
        "task_id": task_id,
        "status": "pending",
        "already_generated": False,
    }


def status(store: Store, simulation_id: str) -> dict[str, Any]:
    with store.read() as conn:
        row = conn.execute(
            "SELECT r.* FROM reports r JOIN runs u ON u.simulation_id = r.simulation_id"
            " AND u.epoch = r.epoch WHERE r.simulation_id = ?"
            " AND r.status IN ('completed', 'pending', 'processing')"
            # multimo answers with a completed report first: while a report is generated
            # again, polling by simulation id names the earlier one.
            " ORDER BY r.status != 'completed', r.rowid DESC LIMIT 1",
            (simulation_id,),
        ).fetchone()
    if row is None:
        # multimo: a failed task is forgotten, so this is all a poller gets after a failure.
        raise ApiError(404, "no task in progress")
    return {
        "simulation_id": simulation_id,
        "report_id": row["report_id"],
        "task_id": row["task_id"],
        "status": row["status"],
        "progress": row["progress"],
        "message": row["message"],
    }


def get(store: Store, report_id: str) -> dict[str, Any]:
    with store.read() as conn:
        row = conn.execute("SELECT * FROM reports WHERE report_id = ?", (report_id,)).fetchone()
    if row is None:
        raise ApiError(404, f"report {report_id} not found")
    return report_view(dict(row))


def list_reports(store: Store, simulation_id: str | None) -> list[dict[str, Any]]:
    with store.read() as conn:
        if simulation_id:
            rows = conn.execute(
                "SELECT * FROM reports WHERE simulation_id = ? ORDER BY rowid DESC",
                (simulation_id,),
            ).fetchall()
        else:
            rows = conn.execute("SELECT * FROM reports ORDER BY rowid DESC").fetchall()
    return [report_view(dict(r)) for r in rows]


def recover(store: Store, report_seconds: float) -> None:
    """An interrupted report is generated again under its own id (from the stored actions)."""
    resume_unfinished(
        store,
        "SELECT simulation_id, report_id FROM reports WHERE status IN ('pending', 'processing')",
        "report_id",
        "report",
        _work,
        report_seconds,
    )


def _set(store: Store, report_id: str, **fields: Any) -> None:
    assignments = ", ".join(f"{key} = ?" for key in fields)
    with store.write() as conn:
        conn.execute(
            f"UPDATE reports SET {assignments} WHERE report_id = ?", (*fields.values(), report_id)
        )


def _work(store: Store, simulation_id: str, report_id: str, report_seconds: float) -> None:
    try:
        for progress, message in _STAGES:
            _set(store, report_id, status="processing", progress=progress, message=message)
            time.sleep(report_seconds / len(_STAGES))
        with store.read() as conn:
            if faults.effective(conn, simulation_id).get("fail_report"):
                raise RuntimeError("injected report failure")
        markdown, chart_path = report.build(store, simulation_id, store.report_dir(report_id))
        report.write_atomically(store.report_dir(report_id) / "report.md", markdown.encode())
        _set(
            store,
            report_id,
            status="completed",
            progress=100,
            message="Report completed",
            markdown_content=markdown,
            chart_path=str(chart_path),
            completed_at=now_iso(),
        )
        log.info("%s: report %s completed", simulation_id, report_id)
    except Exception as exc:
        log.exception("%s: report %s failed", simulation_id, report_id)
        _set(store, report_id, status="failed", error=str(exc), message="Report failed")
