"""The simulator's clock settings, seen through its HTTP API: zone, skew, and what must keep
working when its timestamps cannot be compared with the caller's clock."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, wait_until
from tests.simulator.conftest import SimClient

NAIVE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")  # no "+hh:mm", no "Z"
SLACK = timedelta(minutes=2)  # generous: the check is about hours, not scheduling


def _completed_run_and_report(client: SimClient) -> tuple[str, dict[str, Any], dict[str, Any]]:
    sim_id = client.create_prepared(agents=10, total_simulation_hours=3)
    client.data(client.post("/api/simulation/start", {"simulation_id": sim_id}))
    run = client.wait_run(sim_id)
    report = _report(client, sim_id)
    return sim_id, run, report


def _report(client: SimClient, sim_id: str) -> dict[str, Any]:
    report_id = client.data(client.post("/api/report/generate", {"simulation_id": sim_id}))[
        "report_id"
    ]

    def completed() -> dict[str, Any] | None:
        report = client.data(client.get(f"/api/report/{report_id}"))
        return dict(report) if report["status"] == "completed" else None

    return wait_until(completed, timeout=10, message=f"report {report_id}")


def _timestamps(client: SimClient, sim_id: str, run: dict[str, Any], report: dict[str, Any]) -> Any:
    """Every timestamp served about one simulation, by where it comes from."""
    view = client.data(client.get(f"/api/simulation/{sim_id}"))
    ledger = client.data(client.get("/api/sim/ledger", params={"simulation_id": sim_id}))
    return {
        "run started_at (server)": run["started_at"],
        "run updated_at (run process)": run["updated_at"],
        "run completed_at (run process)": run["completed_at"],
        "report created_at (server)": report["created_at"],
        "report completed_at (report thread)": report["completed_at"],
        "simulation created_at": view["created_at"],
        "simulation updated_at": view["updated_at"],
        **{f"ledger {e['action']} at": e["at"] for e in ledger["entries"]},
    }


def test_default_timestamps_are_utc_with_offset_suffix(sim: SimClient) -> None:
    sim_id, run, report = _completed_run_and_report(sim)
    now = datetime.now(UTC)
    for name, stamp in _timestamps(sim, sim_id, run, report).items():
        assert stamp.endswith("+00:00"), (name, stamp)
        assert abs(datetime.fromisoformat(stamp) - now) < SLACK, (name, stamp)


def test_skewed_clock_in_another_zone_writes_naive_times_9h_ahead(server_factory: Any) -> None:
    handle = server_factory(clock_offset_seconds=3600, timestamp_zone="+08:00")
    client = handle.start()
    sim_id, run, report = _completed_run_and_report(client)
    # 8 h zone + 1 h skew, compared as naive wall-clock times.
    expected = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=9)
    stamps = _timestamps(client, sim_id, run, report)
    assert len(stamps) >= 10  # three ledger entries (prepare, start, report) included
    for name, stamp in stamps.items():
        assert NAIVE.fullmatch(stamp), (name, stamp)
        assert abs(datetime.fromisoformat(stamp) - expected) < SLACK, (name, stamp)


def test_report_order_survives_a_clock_change(server_factory: Any) -> None:
    """Restarted with a clock far behind, the newer report carries the smaller timestamp; the
    simulator must still call it the newest (listing, status, duplicate generation)."""
    handle = server_factory(clock_offset_seconds=0.0)
    client = handle.start()
    sim_id, _, first = _completed_run_and_report(client)
    handle.kill()
    handle.opts.update(clock_offset_seconds=-7200.0, timestamp_zone="-05:00")
    handle.start()
    ref = {"simulation_id": sim_id}
    client.data(client.post("/api/simulation/start", ref))
    run = client.wait_run(sim_id)
    # The new server's run process stamps with the new clock too.
    assert all(NAIVE.fullmatch(run[k]) for k in ("started_at", "updated_at", "completed_at"))
    second = _report(client, sim_id)
    assert second["created_at"] < first["created_at"]  # as strings and as written times
    listed = client.data(client.get("/api/report/list", params=ref))
    assert [r["report_id"] for r in listed] == [second["report_id"], first["report_id"]]
    assert (
        client.data(client.post("/api/report/generate/status", ref))["report_id"]
        == (second["report_id"])
    )
    again = client.data(client.post("/api/report/generate", ref))
    assert again["already_generated"] is True and again["report_id"] == second["report_id"]


@pytest.mark.parametrize(
    "flag",
    [
        "--timestamp-zone=Asia/Shanghai",
        "--timestamp-zone=+8",
        "--timestamp-zone=+24:00",
        "--clock-offset-seconds=inf",
        "--clock-offset-seconds=soon",
    ],
)
def test_bad_clock_flags_are_refused(flag: str, tmp_path: Path) -> None:
    """Refused by the CLI before serving (a bad zone must not surface in a run process)."""
    cmd = [sys.executable, "-m", "simulator", "--data-dir", str(tmp_path), "--port", "1", flag]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and flag.split("=")[0] in done.stderr, done.stderr
