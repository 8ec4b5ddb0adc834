"""Simulations created with an id of the caller's choosing: every route, the fault switches,
the run process and the report must treat it like a generated one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.simulator.conftest import SimClient


def _tag() -> str:
    # The session server is shared: ids chosen by tests must not meet each other.
    return uuid.uuid4().hex[:6]


def test_full_cycle_with_a_chosen_id(sim: SimClient) -> None:
    sim_id = f"col.lide1:{_tag()}"
    created = sim.data(
        sim.post(
            "/api/simulation/create",
            {"simulation_id": sim_id, "agents": 20, "total_simulation_hours": 4, "seed": 3},
        )
    )
    assert created["simulation_id"] == sim_id and created["status"] == "created"
    ref = {"simulation_id": sim_id}
    task_id = sim.prepare(sim_id)
    status = sim.data(sim.post("/api/simulation/prepare/status", {**ref, "task_id": task_id}))
    assert status["result"] == {"simulation_id": sim_id, "status": "ready"}
    view = sim.data(sim.get(f"/api/simulation/{sim_id}"))
    sim_dir = Path(sim.data_dir).resolve() / "sims" / sim_id
    assert view["status"] == "ready" and view["config_path"] == str(sim_dir / "config.json")
    sim.data(sim.post("/api/simulation/start", ref))
    final = sim.wait_run(sim_id)
    assert final["simulation_id"] == sim_id and final["current_round"] == 4
    assert (sim_dir / "run.lock").exists() and (sim_dir / "run.log").exists()
    report_id = sim.data(sim.post("/api/report/generate", ref))["report_id"]

    def report_done() -> bool:
        return bool(sim.data(sim.post("/api/report/generate/status", ref))["status"] == "completed")

    wait_until(report_done, timeout=10, message="report")
    report = sim.data(sim.get(f"/api/report/{report_id}"))
    assert report["simulation_id"] == sim_id
    assert f"# Simulation report: {sim_id}" in report["markdown_content"]
    assert f"Total actions: {final['total_actions_count']}" in report["markdown_content"]
    listed = sim.data(sim.get("/api/report/list", params=ref))
    assert [r["report_id"] for r in listed] == [report_id]
    assert sim.ledger_counts(sim_id) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_ids_differing_only_in_punctuation_stay_apart(sim: SimClient) -> None:
    tag = _tag()
    dotted, dashed = f"col.lide1{tag}", f"col-lide1{tag}"
    for sim_id in (dotted, dashed):
        sim.data(sim.post("/api/simulation/create", {"simulation_id": sim_id, "agents": 10}))
    sim.prepare(dotted)
    views = {s: sim.data(sim.get(f"/api/simulation/{s}")) for s in (dotted, dashed)}
    assert (views[dotted]["status"], views[dashed]["status"]) == ("ready", "created")
    assert (Path(sim.data_dir) / "sims" / dotted / "config.json").exists()
    assert not (Path(sim.data_dir) / "sims" / dashed / "config.json").exists()
    # Faults follow the id found in the path, never a look-alike.
    sim.data(sim.post("/api/sim/faults", {"simulation_id": dotted, "unavailable_requests": 2}))
    assert sim.get(f"/api/simulation/{dashed}/run-status").status_code == 200
    assert sim.get(f"/api/simulation/{dotted}/run-status").status_code == 503
    assert sim.get(f"/api/simulation/{dotted}").status_code == 503
    assert sim.get(f"/api/simulation/{dotted}").status_code == 200
    counts = {s: sim.ledger_counts(s)["prepare"] for s in (dotted, dashed)}
    assert counts == {dotted: 1, dashed: 0}


@pytest.mark.parametrize(
    "chosen",
    [
        "",
        "-leading-dash",
        ".hidden",
        "a/b",
        "a b",
        "tab\there",
        "caf\u00e9",
        "x" * 201,
        "*",
        "create",
        "list",
        42,
    ],
)
def test_bad_chosen_ids_are_400(sim: SimClient, chosen: Any) -> None:
    response = sim.post("/api/simulation/create", {"simulation_id": chosen, "agents": 10})
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["success"] is False and "simulation_id" in payload["error"]


def test_longest_id_and_duplicates(sim: SimClient) -> None:
    longest = f"{_tag()}_.:-" + "z" * 190
    assert len(longest) == 200
    assert sim.create(simulation_id=longest) == longest
    assert sim.data(sim.get(f"/api/simulation/{longest}"))["simulation_id"] == longest
    again = sim.post("/api/simulation/create", {"simulation_id": longest, "agents": 10})
    assert again.status_code == 409
    assert again.json() == {"success": False, "error": f"simulation {longest} already exists"}
    # Without a chosen id the generated form is unchanged.
    generated = sim.create()
    assert generated.startswith("sim_") and len(generated) == 16


def test_fixed_routes_are_not_taken_for_ids(server_factory: Any) -> None:
    """A global outage hits only requests for a simulation: /create, /prepare/status without
    an id and /list must not pass for one (each would spend the unit)."""
    client = server_factory().start()
    sim_id = client.create(agents=10)
    client.data(client.post("/api/sim/faults", {"simulation_id": "*", "unavailable_requests": 1}))
    client.create(agents=10)
    assert client.post("/api/simulation/prepare/status", {}).status_code == 400
    assert client.post("/api/simulation/start", {}).status_code == 400
    assert client.get("/api/simulation/list").status_code in (404, 405)
    view = client.data(client.get("/api/sim/faults", params={"simulation_id": "*"}))
    assert view["unavailable_requests"] == 1
    assert client.get(f"/api/simulation/{sim_id}").status_code == 503
    assert client.get(f"/api/simulation/{sim_id}").status_code == 200
