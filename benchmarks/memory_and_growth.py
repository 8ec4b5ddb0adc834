"""Memory per active auto-pilot, and Prefect database growth per (compressed) 72-hour run.

Starts its own Prefect server (SQLite), bundled simulator and serving worker on free 127.0.0.1
ports, with the product defaults: runner poll 1 s, flow-run heartbeats off (the worker's
`--heartbeat-seconds 0`; --heartbeat-seconds N here passes N, at least 30, to the worker, to
measure what they cost), monitor poll 30 s and control check 1 s.

(a) memory: VmRSS (and PSS, which splits shared pages among the processes using them) of the
    worker and of each flow process (pid from <AUTOPILOT_DATA_DIR>/executors/<run>.json), and
    the sum over the worker's whole session, with 0, 1 and 5 auto-pilots monitoring long
    simulations. The first five then stop (simulation stopped on the backend).
(b) database growth: the SQLite file (+ -wal) of the Prefect server, its used pages, and row
    counts (task runs, states, artifacts, logs, events), before and after runs of the flow
    through the deployment, monitor poll 0.05 s (launch option `poll_interval`):
      idle      nothing runs for as long as the 144-round run took (background writes)
      12r       12 rounds at 0.05 s      (~12 polls, 12 rounds)
      12r-slow  12 rounds at 0.6 s       (~144 polls, 12 rounds: polls without rounds)
      144r      144 rounds at 0.05 s     (a 72-hour simulation at 30 min per round,
                                          compressed; ~144 polls)
    Growth O(steps) shows as 12r ≈ 12r-slow ≈ 144r; O(polls) as 12r-slow ≈ 144r > 12r;
    O(rounds) as 144r > 12r ≈ 12r-slow. Then a monitoring-only window (--heartbeat-window s,
    monitor poll 30 s, a round that never ends) measures what a run writes per second while it
    only monitors, which is what grows with wall time rather than with steps: bytes in use,
    rows per table and events by type (flow-run heartbeats only if enabled, one per N s).
    Projects a real 72-hour run = 144r growth + (72 h - the 144r run's wall time) x that
    window's growth rate, once with the measured growth of pages in use and once estimated
    from the rows the window wrote (their column bytes x each table's on-disk bytes per
    column byte), which is finer than whole pages in a short window.

    .venv/bin/python benchmarks/memory_and_growth.py [--heartbeat-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_support import (  # noqa: E402
    bench_environment,
    code_version,
    proc_status_kb,
    pss_kb,
    running_stack,
)
from tests.helpers import run_status_poll_times, wait_until  # noqa: E402

ENV = bench_environment("autopilot-bench-mem-")
WORK = ENV.work

from autopilot.client import MultimoClient  # noqa: E402
from autopilot.worker.executors import living_executor  # noqa: E402
from tests.prefect_stack import Worker, launch, running_task, state_type  # noqa: E402

DB = ENV.prefect_db
SIM_LOG = ENV.sim_log
TABLES = [
    "flow_run",
    "flow_run_state",
    "task_run",
    "task_run_state",
    "artifact",
    "artifact_collection",
    "log",
    "events",
    "event_resources",
]
MB = 1024 * 1024
REAL_RUN_SECONDS = 72 * 3600


# -- (a) memory ---------------------------------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """Every process of a session (the worker runs in its own: it and its flow processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def memory_snapshot(worker: Worker, run_ids: list[Any]) -> dict[str, Any]:
    assert worker.proc is not None
    flow_pids = [living_executor(WORK / "data", r) for r in run_ids]
    assert all(flow_pids), f"a flow process is missing: {flow_pids}"
    session = session_pids(worker.proc.pid)
    return {
        "worker": (proc_status_kb(worker.proc.pid), pss_kb(worker.proc.pid)),
        "flows": [(proc_status_kb(p), pss_kb(p)) for p in flow_pids if p],
        "session": (
            sum(proc_status_kb(p) or 0 for p in session),
            sum(pss_kb(p) or 0 for p in session),
            len(session),
        ),
    }


def monitoring(run_id: Any) -> bool:
    return running_task(run_id) == "monitoring" and living_executor(WORK / "data", run_id)


def measure_memory(worker: Worker, backend: MultimoClient) -> list[str]:
    out = ["(a) memory, MB (RSS / PSS)"]
    out.append(f"{'active':>7}{'worker':>16}{'flow process each':>26}{'worker session':>22}")

    def row(active: int, snap: dict[str, Any]) -> str:
        w_rss, w_pss = snap["worker"]
        flows = snap["flows"]
        each = (
            f"{statistics.fmean(r for r, _ in flows) / 1024:.0f} / "
            f"{statistics.fmean(p for _, p in flows) / 1024:.0f}"
            f" ({min(r for r, _ in flows) / 1024:.0f}..{max(r for r, _ in flows) / 1024:.0f})"
            if flows
            else "-"
        )
        s_rss, s_pss, n = snap["session"]
        return (
            f"{active:>7}{f'{w_rss / 1024:.0f} / {w_pss / 1024:.0f}':>16}{each:>26}"
            f"{f'{s_rss / 1024:.0f} / {s_pss / 1024:.0f} ({n} procs)':>22}"
        )

    time.sleep(5)
    snaps = {0: memory_snapshot(worker, [])}
    out.append(row(0, snaps[0]))
    sims: list[str] = []
    runs: list[Any] = []
    for target in (1, 5):
        while len(runs) < target:
            sim = backend.create_simulation(
                agents=20, total_simulation_hours=5000, minutes_per_round=60, round_seconds=0.5
            )
            sims.append(sim)
            runs.append(launch(sim, poll_interval=1.0))
        for run_id in runs:
            wait_until(lambda r=run_id: monitoring(r), timeout=600, interval=1, message="monitor")
        time.sleep(10)  # settle: a few control checks and polls in every flow process
        snaps[target] = memory_snapshot(worker, runs)
        out.append(row(target, snaps[target]))
    for sim in sims:
        backend.stop(sim)
    for run_id in runs:  # the monitor sees "stopped" within a poll: the runs end Failed
        wait_until(
            lambda r=run_id: living_executor(WORK / "data", r) is None,
            timeout=120,
            interval=0.5,
            message="flow process exit",
        )
        wait_until(lambda r=run_id: state_type(r) in {"FAILED", "COMPLETED"}, timeout=60)
    for n in (1, 5):
        rss = (snaps[n]["session"][0] - snaps[0]["session"][0]) / n / 1024
        pss = (snaps[n]["session"][1] - snaps[0]["session"][1]) / n / 1024
        out.append(
            f"worker session growth per active auto-pilot ({n} active): RSS {rss:.0f} MB,"
            f" PSS {pss:.0f} MB"
        )
    return out


# -- (b) database growth ----------------------------------------------------------------


def db_snapshot() -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=30)
    try:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        events = dict(conn.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall())
        # The newest row of each table: rows added later have a larger rowid.
        rowids = {
            t: conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0]
            for t in TABLES
        }
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        # Bytes per table including its indexes (dbstat: pages in use).
        per_table: dict[str, int] = {}
        for _index, tbl, size in conn.execute(
            "SELECT d.name, coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d"
            " LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY d.name"
        ):
            per_table[tbl] = per_table.get(tbl, 0) + size
    finally:
        conn.close()
    wal = Path(f"{DB}-wal")
    return {
        "file": DB.stat().st_size,
        "wal": wal.stat().st_size if wal.exists() else 0,
        "used": (pages - free) * page_size,
        "page_size": page_size,
        "counts": counts,
        "rowids": rowids,
        "events": events,
        "tables": per_table,
    }


def raw_bytes(conn: sqlite3.Connection, query: str, params: tuple[Any, ...] = ()) -> int:
    """Bytes of the column values of the rows a query returns (their text form)."""
    return sum(
        sum(len(str(v)) for v in row if v is not None) for row in conn.execute(query, params)
    )


def on_disk_bytes(conn: sqlite3.Connection, table: str) -> int:
    """Bytes of the pages a table and its indexes use (dbstat)."""
    return int(
        conn.execute(
            "SELECT coalesce(sum(d.pgsize), 0) FROM dbstat d JOIN sqlite_master m"
            " ON m.name = d.name WHERE m.tbl_name = ?",
            (table,),
        ).fetchone()[0]
    )


def written_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the rows added between two db_snapshots take. Per table: rows, bytes of
    column data, and estimated bytes on disk (column data x the table's on-disk bytes, with
    its indexes, per byte of column data). Per event type: events, and the mean column data
    of one event with its event_resources rows."""
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=30)
    try:
        tables: dict[str, tuple[int, int, float]] = {}
        for t in TABLES:
            span = (before["rowids"][t], after["rowids"][t])
            new_rows = f"FROM {t} WHERE rowid > ? AND rowid <= ?"
            rows = conn.execute(f"SELECT count(*) {new_rows}", span).fetchone()[0]
            new = raw_bytes(conn, f"SELECT * {new_rows}", span)
            factor = on_disk_bytes(conn, t) / max(raw_bytes(conn, f"SELECT * FROM {t}"), 1)
            tables[t] = (rows, new, new * factor)
        span = (before["rowids"]["events"], after["rowids"]["events"])
        by_type: dict[str, tuple[int, float]] = {}
        for event, n in conn.execute(
            "SELECT event, count(*) FROM events WHERE rowid > ? AND rowid <= ? GROUP BY event",
            span,
        ).fetchall():
            where = "rowid > ? AND rowid <= ? AND event = ?"
            raw = raw_bytes(conn, f"SELECT * FROM events WHERE {where}", (*span, event))
            raw += raw_bytes(
                conn,
                "SELECT * FROM event_resources WHERE event_id IN"
                f" (SELECT id FROM events WHERE {where})",
                (*span, event),
            )
            by_type[event] = (n, raw / n)
    finally:
        conn.close()
    return {"tables": tables, "events": by_type}


def monitoring_window(backend: MultimoClient, seconds: float) -> dict[str, Any]:
    """One auto-pilot monitoring a simulation whose round never advances in the window, with
    the product's monitor poll (30 s): what is written is what a run writes per second of wall
    time (and the server's own background writes)."""
    sim = backend.create_simulation(
        agents=20, total_simulation_hours=10, minutes_per_round=60, round_seconds=3600
    )
    run_id = launch(sim)
    wait_until(lambda: monitoring(run_id), timeout=300, interval=1, message="monitoring")
    settle()
    before = db_snapshot()
    t0 = time.monotonic()
    time.sleep(seconds)
    after = db_snapshot()
    elapsed = time.monotonic() - t0
    written = written_between(before, after)
    backend.stop(sim)
    wait_until(
        lambda: living_executor(WORK / "data", run_id) is None,
        timeout=120,
        interval=0.5,
        message="flow process exit",
    )
    return {"before": before, "after": after, "seconds": elapsed, "written": written}


def run_to_completion(backend: MultimoClient, rounds: int, round_seconds: float) -> dict[str, Any]:
    sim = backend.create_simulation(
        agents=20, total_simulation_hours=rounds, minutes_per_round=60, round_seconds=round_seconds
    )
    t0 = time.monotonic()
    run_id = launch(sim, poll_interval=0.05)
    wait_until(lambda: state_type(run_id) == "COMPLETED", timeout=600, interval=0.25)
    wall = time.monotonic() - t0
    return {"wall": wall, "polls": len(run_status_poll_times(SIM_LOG, sim)), "rounds": rounds}


def settle(seconds: float = 8) -> None:
    """Let the server persist what is still in flight (events, task-run states, logs)."""
    time.sleep(seconds)


def measure_growth(
    backend: MultimoClient, window_seconds: float, heartbeat_seconds: int
) -> list[str]:
    # Warm-up run: first-run rows (flow, deployment versions, block documents, ...).
    run_to_completion(backend, 3, 0.05)
    settle()
    cases: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    plan = [("12r", 12, 0.05), ("12r-slow", 12, 0.6), ("144r", 144, 0.05)]
    for label, rounds, round_seconds in plan:
        before = db_snapshot()
        info = run_to_completion(backend, rounds, round_seconds)
        settle()
        cases.append((label, info, before, db_snapshot()))
    window = monitoring_window(backend, window_seconds)
    settle()  # the window run's last states and events land before the idle case starts
    idle_seconds = cases[-1][1]["wall"] + 8
    before = db_snapshot()
    time.sleep(idle_seconds)
    cases.insert(
        0, ("idle", {"wall": idle_seconds, "polls": 0, "rounds": 0}, before, db_snapshot())
    )

    out = ["(b) Prefect database growth per run (after - before, settled 8 s)"]
    head = f"{'case':<10}{'wall s':>7}{'polls':>6}{'rounds':>7}{'file+wal KB':>12}{'used KB':>9}"
    out.append(head + "".join(f"{short(t):>8}" for t in TABLES))
    for label, info, b, a in cases:
        grow_file = (a["file"] + a["wal"] - b["file"] - b["wal"]) / 1024
        grow_used = (a["used"] - b["used"]) / 1024
        out.append(
            f"{label:<10}{info['wall']:7.1f}{info['polls']:6d}{info['rounds']:7d}"
            f"{grow_file:12.0f}{grow_used:9.0f}"
            + "".join(f"{a['counts'][t] - b['counts'][t]:8d}" for t in TABLES)
        )
    out.append("  (" + ", ".join(f"{short(t)} = {t}" for t in TABLES) + ")")

    _, _, b144, a144 = cases[-1]
    out.append("\nevents written by the 144r run, by type:")
    for event, n in sorted(
        ((e, a144["events"].get(e, 0) - b144["events"].get(e, 0)) for e in a144["events"]),
        key=lambda x: -x[1],
    ):
        if n:
            out.append(f"  {n:5d}  {event}")
    out.append("bytes in use per table (with its indexes), growth in the 144r run, KB:")
    for table, size in sorted(
        ((t, a144["tables"][t] - b144["tables"].get(t, 0)) for t in a144["tables"]),
        key=lambda x: -x[1],
    )[:8]:
        out.append(f"  {size / 1024:8.0f}  {table}")

    final = cases[-1][3]
    out.append(
        f"\nfinal DB: file {final['file'] / MB:.2f} MB + wal {final['wal'] / MB:.2f} MB,"
        f" {final['used'] / MB:.2f} MB in use"
    )
    out.extend(projection(cases, window, heartbeat_seconds))
    return out


def projection(
    cases: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]],
    window: dict[str, Any],
    heartbeat_seconds: int,
) -> list[str]:
    """A real 72-hour run: the 144r growth, plus the rest of the 72 hours at the growth rate
    of the monitoring-only window."""
    seconds = window["seconds"]
    w_before, w_after, written = window["before"], window["after"], window["written"]
    grown = w_after["used"] - w_before["used"]
    rows = {t: w_after["counts"][t] - w_before["counts"][t] for t in TABLES}
    heartbeat = f"every {heartbeat_seconds} s" if heartbeat_seconds else "off"
    out = [
        f"\nmonitoring only, {seconds:.0f}s (monitor poll 30 s, no round change, flow-run"
        f" heartbeat {heartbeat}): {grown / 1024:.0f} KB more in use ({grown / seconds:.1f} B/s;"
        f" whole pages of {w_after['page_size']} B); rows written:"
        f" {', '.join(f'{short(t)} {n}' for t, n in rows.items())}"
    ]
    out.append("events written in the window, by type (mean column data per event, with its")
    out.append("event_resources rows):")
    for event, (n, mean) in sorted(written["events"].items(), key=lambda x: -x[1][0]):
        out.append(f"  {n:5d}  {event}  ({mean:.0f} B; {n / seconds * 3600:.0f} per hour)")
    if not written["events"]:
        out.append("  none")
    estimated = sum(disk for _, _, disk in written["tables"].values())
    parts = [
        f"{short(t)} {n} rows {raw} B -> {disk:.0f} B"
        for t, (n, raw, disk) in written["tables"].items()
        if n
    ]
    out.append(
        f"estimated from the rows written: {', '.join(parts) or 'no new rows'};"
        f" total {estimated:.0f} B ({estimated / seconds:.1f} B/s)"
    )
    idle_label, idle_info, idle_before, idle_after = cases[0]
    assert idle_label == "idle"
    idle_grown = idle_after["used"] - idle_before["used"]
    out.append(
        f"for comparison, idle (nothing running, {idle_info['wall']:.0f}s):"
        f" {idle_grown / idle_info['wall']:.1f} B/s in use"
    )

    _, info144, before144, after144 = cases[-1]
    run_growth = after144["used"] - before144["used"]
    rest = REAL_RUN_SECONDS - info144["wall"]
    for label, grown_bytes in [("measured pages", grown), ("estimated from rows", estimated)]:
        rate = grown_bytes / seconds
        projected = run_growth + rest * rate
        out.append(
            f"projected real 72-hour run ({label}): {run_growth / MB:.2f} MB (144r,"
            f" {info144['wall']:.0f}s) + {rest:.0f} s x {rate:.1f} B/s ="
            f" {projected / MB:.2f} MB (goal <= 5 MB)"
        )
    grew = [t for t in TABLES if rows[t]]
    out.append(
        "projected rows of a real 72-hour run: "
        + (
            ", ".join(
                f"{short(t)} {after144['counts'][t] - before144['counts'][t]}"
                f" + {rows[t] / seconds * rest:.0f}"
                for t in grew
            )
            if grew
            else "no more than the 144r run's (no rows in the window)"
        )
    )
    return out


def short(table: str) -> str:
    return {
        "flow_run": "fr",
        "flow_run_state": "frs",
        "task_run": "tr",
        "task_run_state": "trs",
        "artifact": "art",
        "artifact_collection": "artc",
        "log": "log",
        "events": "ev",
        "event_resources": "evres",
    }[table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--heartbeat-window",
        type=float,
        default=150,
        help="seconds of monitoring only: the growth rate that projects the rest of 72 hours",
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=0,
        help="passed to the worker (deployments.serve --heartbeat-seconds): flow-run heartbeat"
        " events every N s (at least 30); 0 = off, the product default",
    )
    args = parser.parse_args()
    if 0 < args.heartbeat_seconds < 30 or args.heartbeat_seconds < 0:
        parser.error("--heartbeat-seconds is 0 (off) or at least 30")
    output: list[str] = []
    with running_stack(
        ENV,
        round_seconds=0.05,
        prepare_seconds=0.5,
        report_seconds=0.5,
        worker_poll_seconds=1.0,  # the product default
        worker_args=["--heartbeat-seconds", str(args.heartbeat_seconds)],
    ) as stack:
        backend = MultimoClient(ENV.sim_url)
        stack.cleanup.callback(backend.close)
        print(f"code {code_version()}", flush=True)
        if not args.skip_memory:
            output += measure_memory(stack.worker, backend)
            print("\n".join(output), flush=True)
        growth = measure_growth(backend, args.heartbeat_window, args.heartbeat_seconds)
        print("\n".join(growth), flush=True)
        output += [""] + growth
    print("\n== summary ==\n" + "\n".join(output))


if __name__ == "__main__":
    main()
