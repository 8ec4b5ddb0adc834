"""The `malformed_routes` / `malformed_answer` switches: a corrupting proxy in front of the
simulator, observed through the HTTP API of a real simulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.simulator.conftest import SimClient

WRONG_TYPES = {
    "runner_status": 7,
    "current_round": "many",
    "total_rounds": [],
    "status": {},
    "task_id": 5,
    "progress": "x",
}


def _json_is(expected: Any) -> Callable[[httpx.Response], bool]:
    def check(response: httpx.Response) -> bool:
        content_type = response.headers["content-type"]
        return content_type == "application/json" and response.json() == expected

    return check


def _truncated(response: httpx.Response) -> bool:
    assert response.headers["content-type"] == "application/json"
    assert response.text.startswith('{"success": true')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    return True


def _html(response: httpx.Response) -> bool:
    content_type = response.headers["content-type"]
    return (
        content_type == "text/html" and response.text == "<html><body>502 Bad Gateway</body></html>"
    )


SHAPES: dict[str, Callable[[httpx.Response], bool]] = {
    "list": _json_is({"success": True, "data": [1, 2, 3]}),
    "string": _json_is({"success": True, "data": "nonsense"}),
    "truncated": _truncated,
    "html": _html,
    "wrong_types": _json_is({"success": True, "data": WRONG_TYPES}),
}


def _faults(sim: SimClient, sim_id: str, **switches: Any) -> dict[str, Any]:
    return dict(sim.data(sim.post("/api/sim/faults", {"simulation_id": sim_id, **switches})))


def _view(sim: SimClient, sim_id: str) -> dict[str, Any]:
    return dict(sim.data(sim.get("/api/sim/faults", params={"simulation_id": sim_id})))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_shape_is_served_for_exactly_k_requests(sim: SimClient, shape: str) -> None:
    sim_id = sim.create(agents=10)
    path = f"/api/simulation/{sim_id}/run-status"
    route = f"GET {path}"
    view = _faults(sim, sim_id, malformed_routes={route: 2}, malformed_answer=shape)
    assert (view["malformed_routes"], view["malformed_answer"]) == ({route: 2}, shape)
    # Another route of the same simulation is untouched.
    assert sim.data(sim.get(f"/api/simulation/{sim_id}"))["simulation_id"] == sim_id
    first = sim.get(path)
    assert first.status_code == 200 and SHAPES[shape](first)
    assert _view(sim, sim_id)["malformed_routes"] == {route: 1}
    second = sim.get(path)
    assert second.status_code == 200 and SHAPES[shape](second)
    assert _view(sim, sim_id)["malformed_routes"] == {route: 0}
    assert sim.run_status(sim_id)["runner_status"] == "idle"


def test_default_answer_is_list_and_the_map_sent_replaces_the_previous(sim: SimClient) -> None:
    sim_id = f"malformed-{uuid.uuid4().hex[:8]}"
    path = f"/api/simulation/{sim_id}"
    faults = {"malformed_routes": {f"GET {path}/run-status": 3}}
    sim.data(sim.post("/api/simulation/create", {"simulation_id": sim_id, "faults": faults}))
    assert _view(sim, sim_id)["malformed_routes"] == faults["malformed_routes"]
    view = _faults(sim, sim_id, malformed_routes={f"GET {path}": 1})
    assert view["malformed_routes"] == {f"GET {path}": 1} and view["malformed_answer"] is None
    assert sim.run_status(sim_id)["runner_status"] == "idle"  # the old map's route is gone
    assert SHAPES["list"](sim.get(path))
    assert sim.data(sim.get(path))["simulation_id"] == sim_id
    cleared = _faults(sim, sim_id, malformed_routes=None)
    assert cleared["malformed_routes"] == {}


def test_malformed_start_has_no_side_effect(sim: SimClient) -> None:
    sim_id = sim.create_prepared(agents=10, total_simulation_hours=3)
    ref = {"simulation_id": sim_id}
    _faults(
        sim, sim_id, malformed_routes={"POST /api/simulation/start": 1}, malformed_answer="html"
    )
    assert SHAPES["html"](sim.post("/api/simulation/start", ref))
    assert sim.ledger_counts(sim_id)["start"] == 0
    assert sim.run_status(sim_id)["runner_status"] == "idle"
    assert sim.data(sim.post("/api/simulation/start", ref))["runner_status"] == "running"
    assert sim.wait_run(sim_id)["current_round"] == 3
    assert sim.ledger_counts(sim_id)["start"] == 1


def test_global_switch_and_the_simulations_own_answer(sim: SimClient) -> None:
    own = sim.create(agents=10, faults={"malformed_answer": "string"})
    other = sim.create(agents=10)
    route = "POST /api/simulation/prepare/status"
    try:
        view = _faults(sim, "*", malformed_routes={route: 2}, malformed_answer="wrong_types")
        assert view["malformed_routes"] == {route: 2}
        # Each request spends one global unit; the answer is the simulation's own if it has one.
        status = "/api/simulation/prepare/status"
        assert SHAPES["string"](sim.post(status, {"simulation_id": own}))
        assert _view(sim, "*")["malformed_routes"] == {route: 1}
        assert SHAPES["wrong_types"](sim.post(status, {"simulation_id": other}))
        assert _view(sim, "*")["malformed_routes"] == {route: 0}
        assert sim.data(sim.post(status, {"simulation_id": own}))["status"] == "not_started"
    finally:
        _faults(sim, "*", malformed_routes=None, malformed_answer=None)
    assert _view(sim, own)["malformed_routes"] == {}


def test_unavailable_units_take_precedence(sim: SimClient) -> None:
    sim_id = sim.create(agents=10)
    path = f"/api/simulation/{sim_id}"
    route = f"GET {path}"
    _faults(sim, sim_id, malformed_routes={route: 1}, unavailable_seconds=60)
    assert sim.get(path).status_code == 503
    assert _view(sim, sim_id)["malformed_routes"] == {route: 1}  # nothing spent
    _faults(
        sim,
        sim_id,
        unavailable_seconds=None,
        unavailable_routes={route: 1},
        unavailable_requests=1,
        malformed_answer="truncated",
    )
    codes = [sim.get(path).status_code for _ in range(2)]
    assert codes == [503, 503]
    assert _view(sim, sim_id)["malformed_routes"] == {route: 1}
    assert SHAPES["truncated"](sim.get(path))
    assert sim.data(sim.get(path))["simulation_id"] == sim_id


def test_concurrent_requests_spend_one_unit_each(sim: SimClient) -> None:
    sim_id = sim.create(agents=10)
    path = f"/api/simulation/{sim_id}"
    _faults(sim, sim_id, malformed_routes={f"GET {path}": 5})
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: sim.get(path).json()["data"], range(20)))
    assert answers.count([1, 2, 3]) == 5
    assert sum(isinstance(a, dict) and a["simulation_id"] == sim_id for a in answers) == 15
    assert _view(sim, sim_id)["malformed_routes"] == {f"GET {path}": 0}


@pytest.mark.parametrize(
    "switches",
    [
        {"malformed_answer": "xml"},
        {"malformed_answer": ""},
        {"malformed_answer": 3},
        {"malformed_routes": {"start": 1}},
        {"malformed_routes": {"get /api/simulation/start": 1}},
        {"malformed_routes": {"POST /api/simulation/start": -1}},
        {"malformed_routes": ["POST /api/simulation/start"]},
    ],
)
def test_bad_malformed_switches_are_400(sim: SimClient, switches: dict[str, Any]) -> None:
    sim_id = sim.create(agents=10)
    response = sim.post("/api/sim/faults", {"simulation_id": sim_id, **switches})
    assert response.status_code == 400 and response.json()["success"] is False
    assert sim.post("/api/simulation/create", {"faults": switches}).status_code == 400
