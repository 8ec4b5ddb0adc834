"""Fault switches, each observed through the HTTP API of a real simulator."""

from __future__ import annotations

import time

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
