"""SQLite persistence shared by the server and the run processes.

One database file per data dir, in WAL mode so the server can read while a run process
writes a round. Every connection is short-lived (opened per operation) which keeps the
store safe to use from request threads, background tasks and other processes alike.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulator import clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS simulations (
    simulation_id TEXT PRIMARY KEY,
    project_id TEXT,
    status TEXT NOT NULL,
    enable_twitter INTEGER NOT NULL,
    enable_reddit INTEGER NOT NULL,
    agents INTEGER NOT NULL,
    total_simulation_hours REAL NOT NULL,
    minutes_per_round INTEGER NOT NULL,
    total_rounds INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    round_seconds REAL,
    prepared INTEGER NOT NULL DEFAULT 0,
    config_json TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS prepare_tasks (
    task_id TEXT PRIMARY KEY,
    simulation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL,
    message TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    result_error TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    simulation_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    runner_status TEXT NOT NULL,
    platform TEXT NOT NULL,
    current_round INTEGER NOT NULL,
    total_rounds INTEGER NOT NULL,
    twitter_actions INTEGER NOT NULL,
    reddit_actions INTEGER NOT NULL,
    error TEXT,
    pid INTEGER,
    started_at TEXT,
    updated_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE TABLE IF NOT EXISTS rounds (
    simulation_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    twitter_actions INTEGER NOT NULL,
    reddit_actions INTEGER NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (simulation_id, round)
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    simulation_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    platform TEXT NOT NULL,
    agent_id INTEGER NOT NULL,
    action_type TEXT NOT NULL,
    post_id TEXT,
    target_post_id TEXT,
    target_agent_id INTEGER,
    content TEXT
);
CREATE INDEX IF NOT EXISTS actions_by_sim ON actions (simulation_id, id);
CREATE INDEX IF NOT EXISTS actions_by_post ON actions (simulation_id, post_id)
    WHERE post_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    simulation_id TEXT NOT NULL,
    action TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS ledger_by_sim ON ledger (simulation_id, seq);
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY,
    simulation_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL,
    message TEXT,
    markdown_content TEXT,
    chart_path TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE TABLE IF NOT EXISTS faults (
    simulation_id TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
"""

# Columns added after the first release: a data dir made by an older simulator gains them
# on open (new columns go last in SCHEMA too, so both layouts agree).
ADDED_COLUMNS = {
    "simulations": {"error": "TEXT"},  # why the last preparation's result failed
    "prepare_tasks": {"result_error": "TEXT"},  # set: completed, but result.status failed
}

BUSY_TIMEOUT_MS = 30_000


def now_iso() -> str:
    """Every stored or served timestamp; the clock's offset and zone apply (see clock.py)."""
    return clock.now_iso()


def row_dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


class Store:
    """Owns the data dir layout and hands out connections to the one database."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "simulator.db"
        with self._connect() as conn:
            # WAL is a property of the file: setting it once is enough, but it is idempotent.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            outdated = bool(_missing_columns(conn))
        if outdated:
            # Re-checked under the write lock: a run process opening the store at the same
            # moment must not add the same column twice. (Up to date: no lock taken at all.)
            with self.write() as conn:
                for table, name, kind in _missing_columns(conn):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # -- layout ---------------------------------------------------------------------------
    def sim_dir(self, simulation_id: str) -> Path:
        # The id is one path component (create validates it); refuse anything that would
        # step outside sims/ rather than trust every caller.
        if not simulation_id or "/" in simulation_id or simulation_id in (".", ".."):
            raise ValueError(f"not a usable simulation id: {simulation_id!r}")
        return self.data_dir / "sims" / simulation_id

    def report_dir(self, report_id: str) -> Path:
        return self.data_dir / "reports" / report_id

    # -- connections ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves so a round is exactly one transaction.
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, so read-check-write
        sequences inside it cannot interleave with another writer."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # -- shared queries -------------------------------------------------------------------
    def get_simulation(self, simulation_id: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(
                "SELECT * FROM simulations WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
        return row_dict(row)

    def get_run(self, simulation_id: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(
                "SELECT * FROM runs WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
        return row_dict(row)

    def get_faults(self, simulation_id: str) -> dict[str, Any]:
        with self.read() as conn:
            return read_faults(conn, simulation_id)


def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    missing = []
    for table, columns in ADDED_COLUMNS.items():
        have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing += [(table, name, kind) for name, kind in columns.items() if name not in have]
    return missing


def read_faults(conn: sqlite3.Connection, simulation_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT config FROM faults WHERE simulation_id = ?", (simulation_id,)
    ).fetchone()
    return dict(json.loads(row["config"])) if row else {}


def write_faults(conn: sqlite3.Connection, simulation_id: str, config: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO faults (simulation_id, config) VALUES (?, ?) "
        "ON CONFLICT (simulation_id) DO UPDATE SET config = excluded.config",
        (simulation_id, json.dumps(config)),
    )


def append_ledger(
    conn: sqlite3.Connection, simulation_id: str, action: str, detail: dict[str, Any]
) -> None:
    """Called inside the same transaction as the state change it records, so the ledger
    never claims an action that did not happen (nor misses one that did)."""
    conn.execute(
        "INSERT INTO ledger (simulation_id, action, at, detail) VALUES (?, ?, ?, ?)",
        (simulation_id, action, now_iso(), json.dumps(detail)),
    )
