"""Bad input and conflicts: always the multimo envelope with 400/404, never a 500 page."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.simulator.conftest import SimClient


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False and isinstance(payload["error"], str), payload
    assert "Traceback" not in response.text
    return str(payload["error"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/simulation/prepare",
        "/api/simulation/prepare/status",
        "/api/simulation/start",
        "/api/simulation/stop",
        "/api/report/generate",
        "/api/report/generate/status",
        "/api/sim/faults",
        "/api/sim/kill-run",
    ],
)
def test_missing_simulation_id_is_400(sim: SimClient, path: str) -> None:
    assert "simulation_id" in _error(sim.post(path, {}), 400)
    _error(sim.post(path, None), 400)  # no body at all
    _error(
        sim.http.post(path, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    _error(sim.post(path, [1, 2]), 400)
    _error(sim.post(path, {"simulation_id": 42}), 400)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/simulation/sim_000000000000", None),
        ("GET", "/api/simulation/sim_000000000000/run-status", None),
        ("POST", "/api/simulation/prepare", {"simulation_id": "sim_000000000000"}),
        ("POST", "/api/simulation/prepare/status", {"simulation_id": "sim_000000000000"}),
        ("POST", "/api/simulation/start", {"simulation_id": "sim_000000000000"}),
        ("POST", "/api/simulation/stop", {"simulation_id": "sim_000000000000"}),
        ("POST", "/api/report/generate", {"simulation_id": "sim_000000000000"}),
        ("POST", "/api/report/generate/status", {"simulation_id": "sim_000000000000"}),
        ("GET", "/api/report/report_000000000000", None),
        ("GET", "/api/sim/ledger?simulation_id=sim_000000000000", None),
        ("GET", "/api/nowhere", None),
    ],
)
def test_unknown_ids_are_404(sim: SimClient, method: str, path: str, body: Any) -> None:
    _error(sim.http.request(method, path, json=body), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"agents": "many"},
        {"agents": 0},
        {"enable_twitter": "perhaps"},
        {"minutes_per_round": 0},
        {"total_simulation_hours": 0.1},
        {"enable_twitter": False, "enable_reddit": False},
        {"faults": {"no_such_fault": 1}},
        {"faults": {"fail_at_round": "soon"}},
    ],
)
def test_bad_create_is_400(sim: SimClient, body: dict[str, Any]) -> None:
    _error(sim.post("/api/simulation/create", body), 400)


def test_bad_start_options_are_400(sim: SimClient) -> None:
    sim_id = sim.create(agents=10)
    for extra in ({"platform": "myspace"}, {"max_rounds": 0}, {"force": "maybe"}):
        _error(sim.post("/api/simulation/start", {"simulation_id": sim_id, **extra}), 400)


def test_report_status_with_task_id_is_500_quirk(sim: SimClient) -> None:
    sim_id = sim.create(agents=10)
    body = {"simulation_id": sim_id, "task_id": "task_whatever"}
    _error(sim.post("/api/report/generate/status", body), 500)


def test_start_stop_semantics(sim: SimClient) -> None:
    sim_id = sim.create(agents=20, total_simulation_hours=200, round_seconds=0.1)
    ref = {"simulation_id": sim_id}
    assert "prepared" in _error(sim.post("/api/simulation/start", ref), 400)
    assert "not running" in _error(sim.post("/api/simulation/stop", ref), 400)
    sim.prepare(sim_id)
    _error(sim.post("/api/simulation/stop", ref), 400)  # prepared but idle
    sim.data(sim.post("/api/simulation/start", ref))
    assert "already running" in _error(sim.post("/api/simulation/start", ref), 400)
    _error(sim.post("/api/report/generate", ref), 400)  # run not completed
    first = sim.wait_run(sim_id, ("running",))
    forced = sim.data(sim.post("/api/simulation/start", {**ref, "force": True}))
    assert forced["current_round"] == 0 and forced["runner_status"] == "running"
    assert first["started_at"] != forced["started_at"]
    stopped = sim.data(sim.post("/api/simulation/stop", ref))
    assert stopped["runner_status"] == "stopped"
    at_stop = stopped["current_round"]
    _error(sim.post("/api/simulation/stop", ref), 400)  # already stopped
    # The run process is gone: five round lengths later the counter has not moved.
    time.sleep(0.5)
    after = sim.run_status(sim_id)
    assert after["runner_status"] == "stopped" and after["current_round"] == at_stop
    assert sim.data(sim.get(f"/api/simulation/{sim_id}"))["status"] == "stopped"
    assert sim.ledger_counts(sim_id) == {"prepare": 1, "start": 2, "stop": 1, "report": 0}
