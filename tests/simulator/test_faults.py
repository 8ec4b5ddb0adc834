"""Fault switches, each observed through the HTTP API of a real simulator."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.simulator.conftest import SimClient


def _start(sim: SimClient, sim_id: str) -> None:
    sim.data(sim.post("/api/simulation/start", {"simulation_id": sim_id}))


def test_fail_at_round(sim: SimClient) -> None:
    sim_id = sim.create_prepared(agents=20, total_simulation_hours=10, faults={"fail_at_round": 3})
    _start(sim, sim_id)
    final = sim.wait_run(sim_id, ("failed", "completed"))
    assert final["runner_status"] == "failed"
    assert final["error"] == "injected failure at round 3"
    assert final["current_round"] == 2
    # A failed run can be started again once the switch is off.
    sim.data(sim.post("/api/sim/faults", {"simulation_id": sim_id, "fail_at_round": None}))
    _start(sim, sim_id)
    assert sim.wait_run(sim_id)["current_round"] == 10


def test_unavailable_for_k_requests(sim: SimClient) -> None:
    sim_id = sim.create(agents=10)
    sim.data(sim.post("/api/sim/faults", {"simulation_id": sim_id, "unavailable_requests": 3}))
    answers = [sim.get(f"/api/simulation/{sim_id}") for _ in range(2)]
    answers.append(sim.post("/api/simulation/prepare/status", {"simulation_id": sim_id}))
    answers.append(sim.get(f"/api/simulation/{sim_id}"))
    assert [a.status_code for a in answers] == [503, 503, 503, 200]
    assert answers[0].json()["success"] is False and answers[0].json()["error"]
    # Other simulations and the control endpoints are unaffected.
    other = sim.create(agents=10)
    assert sim.get(f"/api/simulation/{other}").status_code == 200


def test_unavailable_for_seconds_and_delay(sim: SimClient) -> None:
    sim_id = sim.create(agents=10, faults={"unavailable_seconds": 2.0})
    assert sim.get(f"/api/simulation/{sim_id}/run-status").status_code == 503
    wait_until(
        lambda: sim.get(f"/api/simulation/{sim_id}").status_code == 200,
        timeout=5,
        message="end of unavailability",
    )
    sim.data(sim.post("/api/sim/faults", {"simulation_id": sim_id, "delay_seconds": 0.4}))
    began = time.monotonic()
    sim.data(sim.get(f"/api/simulation/{sim_id}"))
    assert time.monotonic() - began >= 0.4
    view = sim.data(sim.get("/api/sim/faults", params={"simulation_id": sim_id}))
    assert view["delay_seconds"] == 0.4
    sim.data(sim.post("/api/sim/faults", {"simulation_id": sim_id, "clear": True}))
    assert (
        sim.data(sim.get("/api/sim/faults", params={"simulation_id": sim_id}))["delay_seconds"] == 0
    )


def test_kill_run_at_round_leaves_frozen_running(sim: SimClient) -> None:
    sim_id = sim.create_prepared(
        agents=20, total_simulation_hours=10, faults={"kill_run_at_round": 2}
    )
    _start(sim, sim_id)
    wait_until(lambda: sim.run_status(sim_id)["current_round"] == 2, timeout=10, message="round 2")
    frozen = sim.run_status(sim_id)
    # Twenty round lengths later nothing has moved: dead process, not respawned by this server.
    time.sleep(20 * 0.05)
    later = sim.run_status(sim_id)
    assert later["runner_status"] == "running"
    assert later["current_round"] == 2 and later["updated_at"] == frozen["updated_at"]
    # With the process gone, kill-run has nothing to kill; stop still works.
    assert sim.post("/api/sim/kill-run", {"simulation_id": sim_id}).status_code == 400
    assert (
        sim.data(sim.post("/api/simulation/stop", {"simulation_id": sim_id}))["runner_status"]
        == "stopped"
    )


def test_kill_run_endpoint(sim: SimClient) -> None:
    sim_id = sim.create_prepared(agents=20, total_simulation_hours=40, round_seconds=0.1)
    _start(sim, sim_id)
    wait_until(lambda: sim.run_status(sim_id)["current_round"] >= 1, timeout=10, message="round 1")
    killed = sim.data(sim.post("/api/sim/kill-run", {"simulation_id": sim_id}))
    assert killed["killed_pid"] > 0
    frozen = sim.run_status(sim_id)["current_round"]
    time.sleep(0.5)
    after = sim.run_status(sim_id)
    assert after["runner_status"] == "running" and after["current_round"] == frozen
    assert sim.ledger_counts(sim_id)["kill"] == 1


def test_fail_prepare_looks_not_started_by_simulation_id(sim: SimClient) -> None:
    sim_id = sim.create(agents=10, faults={"fail_prepare": True})
    task_id = sim.data(sim.post("/api/simulation/prepare", {"simulation_id": sim_id}))["task_id"]
    both = {"simulation_id": sim_id, "task_id": task_id}

    def failed() -> bool:
        return bool(
            sim.data(sim.post("/api/simulation/prepare/status", both))["status"] == "failed"
        )

    wait_until(failed, timeout=10, message="failed preparation")
    status = sim.data(sim.post("/api/simulation/prepare/status", both))
    assert status["error"] == "injected preparation failure"
    alone = sim.data(sim.post("/api/simulation/prepare/status", {"simulation_id": sim_id}))
    assert alone["status"] == "not_started"


def test_fail_report_then_status_404_and_report_failed(sim: SimClient) -> None:
    sim_id = sim.create_prepared(agents=10, total_simulation_hours=3, faults={"fail_report": True})
    _start(sim, sim_id)
    sim.wait_run(sim_id)
    ref = {"simulation_id": sim_id}
    report_id = sim.data(sim.post("/api/report/generate", ref))["report_id"]

    def gone() -> bool:
        return sim.post("/api/report/generate/status", ref).status_code == 404

    wait_until(gone, timeout=10, message="failed report task")
    response = sim.post("/api/report/generate/status", ref)
    assert response.json() == {"success": False, "error": "no task in progress"}
    report = sim.data(sim.get(f"/api/report/{report_id}"))
    assert report["status"] == "failed" and report["error"] == "injected report failure"
    # After switching the fault off a new generation is accepted (a failed one does not count).
    sim.data(sim.post("/api/sim/faults", {"simulation_id": sim_id, "fail_report": False}))
    again = sim.data(sim.post("/api/report/generate", ref))
    assert again["report_id"] != report_id and again["already_generated"] is False
    assert sim.ledger_counts(sim_id)["report"] == 2


def test_prepare_result_failed_completes_with_a_failed_result(sim: SimClient) -> None:
    """The real multimo's way to fail a preparation: the task completes, its result fails."""
    reason = "LLM quota exhausted"
    sim_id = sim.create(
        agents=10, total_simulation_hours=3, faults={"prepare_result_failed": reason}
    )
    ref = {"simulation_id": sim_id}
    assert sim.data(sim.get("/api/sim/faults", params=ref))["prepare_result_failed"] == reason
    task_id = sim.data(sim.post("/api/simulation/prepare", ref))["task_id"]
    both = {**ref, "task_id": task_id}
    seen: list[dict[str, Any]] = []

    def completed() -> dict[str, Any] | None:
        seen.append(sim.data(sim.post("/api/simulation/prepare/status", both)))
        return seen[-1] if seen[-1]["status"] == "completed" else None

    done = wait_until(completed, timeout=10, message="completed preparation")
    assert all("result" not in view for view in seen[:-1])  # pending/processing: no result
    assert done == {
        "task_id": task_id,
        "simulation_id": sim_id,
        "status": "completed",
        "progress": 100,
        "message": "Preparation completed",
        "already_prepared": False,
        "result": {"simulation_id": sim_id, "status": "failed", "error": reason},
    }
    view = sim.data(sim.get(f"/api/simulation/{sim_id}"))
    assert (view["status"], view["prepared"], view["error"]) == ("failed", False, reason)
    assert view["config_path"] is None
    refused = sim.post("/api/simulation/start", ref)
    assert refused.status_code == 400 and "not prepared" in refused.json()["error"]
    # Spent by that one preparation: the next one prepares normally.
    assert sim.data(sim.get("/api/sim/faults", params=ref))["prepare_result_failed"] is None
    again = sim.prepare(sim_id)
    status = sim.data(sim.post("/api/simulation/prepare/status", {**ref, "task_id": again}))
    assert status["result"] == {"simulation_id": sim_id, "status": "ready"}
    view = sim.data(sim.get(f"/api/simulation/{sim_id}"))
    assert (view["status"], view["prepared"], view["error"]) == ("ready", True, None)
    assert sim.ledger_counts(sim_id)["prepare"] == 2
    _start(sim, sim_id)
    assert sim.wait_run(sim_id)["current_round"] == 3


def test_unavailable_routes_fail_exactly_the_first_calls_of_one_step(sim: SimClient) -> None:
    sim_id = sim.create_prepared(agents=10, total_simulation_hours=3)
    other = sim.create_prepared(agents=10, total_simulation_hours=3)
    ref = {"simulation_id": sim_id}
    status_route = f"GET /api/simulation/{sim_id}/run-status"
    routes = {"POST /api/simulation/start": 1, status_route: 2}
    view = sim.data(sim.post("/api/sim/faults", {**ref, "unavailable_routes": routes}))
    assert view["unavailable_routes"] == routes
    # Other routes of the simulation, and the same route of another simulation, still answer.
    assert sim.get(f"/api/simulation/{sim_id}").status_code == 200
    _start(sim, other)
    first = sim.post("/api/simulation/start", ref)
    assert first.status_code == 503
    assert first.json() == {"success": False, "error": "simulator unavailable"}
    _start(sim, sim_id)
    polls = [sim.get(f"/api/simulation/{sim_id}/run-status").status_code for _ in range(3)]
    assert polls == [503, 503, 200]
    left = sim.data(sim.get("/api/sim/faults", params=ref))["unavailable_routes"]
    assert left == {"POST /api/simulation/start": 0, status_route: 0}
    # A new map replaces the old one.
    generate = {"POST /api/report/generate": 1}
    view = sim.data(sim.post("/api/sim/faults", {**ref, "unavailable_routes": generate}))
    assert view["unavailable_routes"] == generate
    sim.wait_run(sim_id)
    assert sim.post("/api/report/generate", ref).status_code == 503
    sim.data(sim.post("/api/report/generate", ref))
    cleared = sim.data(sim.post("/api/sim/faults", {**ref, "unavailable_routes": None}))
    assert cleared["unavailable_routes"] == {}
    # The refused calls never reached their routes.
    counts = sim.ledger_counts(sim_id)
    assert (counts["start"], counts["report"]) == (1, 1)


def test_unavailable_routes_spend_their_own_units_concurrently(sim: SimClient) -> None:
    sim_id = sim.create(agents=10)
    path = f"/api/simulation/{sim_id}"
    switches = {"simulation_id": sim_id, "unavailable_requests": 1}
    sim.data(sim.post("/api/sim/faults", {**switches, "unavailable_routes": {f"GET {path}": 5}}))
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda _: sim.get(path).status_code, range(20)))
    # Five route units, then the one generic unit: a request spends one unit, never two.
    assert codes.count(503) == 6 and codes.count(200) == 14
    view = sim.data(sim.get("/api/sim/faults", params={"simulation_id": sim_id}))
    assert view["unavailable_routes"] == {f"GET {path}": 0}
    assert view["unavailable_requests"] == 0


@pytest.mark.parametrize(
    "switches",
    [
        {"unavailable_routes": {"start": 1}},
        {"unavailable_routes": {"post /api/simulation/start": 1}},
        {"unavailable_routes": {"POST /api/simulation/start": -1}},
        {"unavailable_routes": ["POST /api/simulation/start"]},
        {"prepare_result_failed": ""},
        {"prepare_result_failed": True},
    ],
)
def test_bad_new_switches_are_400(sim: SimClient, switches: dict[str, Any]) -> None:
    sim_id = sim.create(agents=10)
    response = sim.post("/api/sim/faults", {"simulation_id": sim_id, **switches})
    assert response.status_code == 400 and response.json()["success"] is False
