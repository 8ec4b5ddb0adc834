"""Memory per active auto-pilot, and Prefect database growth per (compressed) 72-hour run.

Starts its own Prefect server (SQLite), bundled simulator and serving worker (runner poll 2 s,
flow heartbeat 30 s, control check 1 s: the product defaults) on free 127.0.0.1 ports.

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
    monitor poll 30 s, a round that never ends): the flow-run heartbeat event every 30 s
    (8640 in 72 h) is the one writer that grows with wall time rather than with steps. Projects
    a real 72-hour run = 144r growth + 8640 heartbeats, with the heartbeat size measured in the
    window and estimated from its rows.

    .venv/bin/python benchmarks/memory_and_growth.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORK = Path(tempfile.mkdtemp(prefix="autopilot-bench-mem-"))
from benchmarks.bench_support import (  # noqa: E402
    code_version,
    kill_leftovers,
    proc_status_kb,
    pss_kb,
    stop_group,
    wait_for_deployment,
)
from tests.helpers import (  # noqa: E402
    free_port,
    run_status_poll_times,
    start_simulator,
    stop_process,
    wait_until,
)

PREFECT_PORT = free_port()
SIM_PORT = free_port()
os.environ.update(
    {
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_HOME": str(WORK / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(WORK / "results"),
        "AUTOPILOT_DATA_DIR": str(WORK / "data"),
        "AUTOPILOT_BACKEND_URL": f"http://127.0.0.1:{SIM_PORT}",
    }
)
for _name in list(os.environ):
    if _name.startswith("AUTOPILOT_") and _name not in {
        "AUTOPILOT_DATA_DIR",
        "AUTOPILOT_BACKEND_URL",
    }:
        del os.environ[_name]

from autopilot.client import MultimoClient  # noqa: E402
from autopilot.executors import living_executor  # noqa: E402
from tests.prefect_stack import (  # noqa: E402
    Worker,
    launch,
    running_task,
    start_prefect_server,
    state_type,
)

DB = WORK / "prefect" / "prefect.db"
SIM_LOG = WORK / "sim" / f"server-{SIM_PORT}.log"
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
        "counts": counts,
        "events": events,
        "tables": per_table,
    }


def event_raw_bytes(conn: sqlite3.Connection, where: str = "1") -> int:
    """Bytes of the column values of matching events rows and their event_resources rows."""
    total = 0
    for row in conn.execute(f"SELECT * FROM events WHERE {where}"):
        total += sum(len(str(v)) for v in row if v is not None)
    for row in conn.execute(
        f"SELECT * FROM event_resources WHERE event_id IN (SELECT id FROM events WHERE {where})"
    ):
        total += sum(len(str(v)) for v in row if v is not None)
    return total


def heartbeat_size_estimate() -> tuple[float, float, int]:
    """(raw bytes per heartbeat event, on-disk bytes per raw byte for events, heartbeats)."""
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=30)
    try:
        where = "event = 'prefect.flow-run.heartbeat'"
        beats = conn.execute(f"SELECT count(*) FROM events WHERE {where}").fetchone()[0]
        raw_beats = event_raw_bytes(conn, where)
        raw_all = event_raw_bytes(conn)
        on_disk = conn.execute(
            "SELECT sum(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name"
            " WHERE m.tbl_name IN ('events', 'event_resources')"
        ).fetchone()[0]
    finally:
        conn.close()
    return raw_beats / max(beats, 1), on_disk / max(raw_all, 1), beats


def heartbeat_window(backend: MultimoClient, seconds: float) -> dict[str, Any]:
    """One auto-pilot monitoring a simulation whose round never advances in the window, with
    the product's monitor poll (30 s): nothing but heartbeats should be written."""
    sim = backend.create_simulation(
        agents=20, total_simulation_hours=10, minutes_per_round=60, round_seconds=3600
    )
    run_id = launch(sim)
    wait_until(lambda: monitoring(run_id), timeout=300, interval=1, message="monitoring")
    settle()
    before = db_snapshot()
    time.sleep(seconds)
    after = db_snapshot()
    backend.stop(sim)
    wait_until(
        lambda: living_executor(WORK / "data", run_id) is None,
        timeout=120,
        interval=0.5,
        message="flow process exit",
    )
    beats = sum(n for e, n in after["events"].items() if "heartbeat" in e) - sum(
        n for e, n in before["events"].items() if "heartbeat" in e
    )
    return {"before": before, "after": after, "beats": beats, "seconds": seconds}


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


def measure_growth(backend: MultimoClient, args_heartbeat_seconds: float) -> list[str]:
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
    beats = heartbeat_window(backend, args_heartbeat_seconds)
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
    out.extend(projection(final, a144, b144, beats))
    return out


def projection(
    final: dict[str, Any], after: dict[str, Any], before: dict[str, Any], beats: dict[str, Any]
) -> list[str]:
    """A real 72-hour run: the 144r growth, plus one heartbeat event per 30 s."""
    out = []
    grow = beats["after"]["used"] - beats["before"]["used"]
    other = {
        k: beats["after"]["counts"][k] - beats["before"]["counts"][k]
        for k in TABLES
        if k not in {"events", "event_resources"}
    }
    measured = grow / max(beats["beats"], 1)
    out.append(
        f"\nmonitoring only, {beats['seconds']:.0f}s (monitor poll 30 s, no round change):"
        f" {beats['beats']} heartbeat events, {grow / 1024:.0f} KB more in use"
        f" ({measured:.0f} B per heartbeat); other rows written: {other}"
    )
    raw, factor, n = heartbeat_size_estimate()
    estimated = raw * factor
    out.append(
        f"heartbeat event: {raw:.0f} B of column data (events + event_resources rows, mean of"
        f" {n}) x {factor:.2f} on-disk bytes per data byte for events (indexes, pages) ="
        f" {estimated:.0f} B"
    )
    heartbeats = 72 * 3600 // 30
    seen = sum(n for e, n in after["events"].items() if "heartbeat" in e) - sum(
        n for e, n in before["events"].items() if "heartbeat" in e
    )
    run_growth = after["used"] - before["used"]
    for label, per_beat in [("measured", measured), ("estimated", estimated)]:
        projected = run_growth + (heartbeats - seen) * per_beat
        out.append(
            f"projected real 72-hour run ({label} heartbeat size): {run_growth / MB:.2f} MB"
            f" (144r) + {heartbeats - seen} more heartbeats x {per_beat:.0f} B ="
            f" {projected / MB:.1f} MB (goal <= 5 MB)"
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
        "--heartbeat-window", type=float, default=150, help="seconds of monitoring only"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    prefect = simulator = None
    worker = Worker({**os.environ}, WORK / "worker.log", poll_seconds=2)
    backend: MultimoClient | None = None
    output: list[str] = []
    succeeded = False
    try:
        prefect = start_prefect_server(WORK / "prefect", PREFECT_PORT, WORK / "prefect.log")
        simulator = start_simulator(
            WORK / "sim", SIM_PORT, round_seconds=0.05, prepare_seconds=0.5, report_seconds=0.5
        )
        worker.start()
        wait_for_deployment(worker, WORK / "worker.log")
        backend = MultimoClient(os.environ["AUTOPILOT_BACKEND_URL"])
        print(f"code {code_version()}", flush=True)
        if not args.skip_memory:
            output += measure_memory(worker, backend)
            print("\n".join(output), flush=True)
        growth = measure_growth(backend, args.heartbeat_window)
        print("\n".join(growth), flush=True)
        output += [""] + growth
        succeeded = True
    finally:
        if backend is not None:
            backend.close()
        worker.stop()
        if simulator is not None:
            stop_process(simulator)
        stop_group(prefect)
        leftovers = kill_leftovers(str(WORK))
        if leftovers:
            print(f"killed {len(leftovers)} leftover process(es) of this run: {leftovers}")
        if succeeded:
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            print(f"logs kept in {WORK}")
    print("\n== summary ==\n" + "\n".join(output))


if __name__ == "__main__":
    main()
