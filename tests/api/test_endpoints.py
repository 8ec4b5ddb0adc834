"""The seven endpoints' answers and error codes (CONTRACT.md part A), all over HTTP.

These tests need no flow run to finish: they check shapes, validation and the error envelope.
The lifecycle (start, pause, resume, stop, fail, reset) is in test_lifecycle.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.shim import (
    ADDED_KEYS,
    CONFIG_KEYS,
    ENDPOINTS,
    NO_STATE_KEYS,
    PREFIX,
    RESET_KEYS,
    STOP_KEYS,
    Api,
    check_status_shape,
    expect_failure,
    unknown_id,
)
from tests.stack_fixtures import Stack

JSON = {"content-type": "application/json"}


def short(value: Any) -> str:
    """A readable test id for a parameter."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...len={len(str(value))}"


# -- success shapes without a run ---------------------------------------------------------


def test_config_answers_exactly_the_contract_keys(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=6)

    data = api.ok("config", simulation_id=sim, mode="auto")

    assert set(data) == CONFIG_KEYS
    assert data["simulation_id"] == sim
    assert data["mode"] == "auto"
    assert data["available"] is True
    assert isinstance(data["message"], str) and data["message"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("AUTO", "auto"), ("Auto", "auto"), (" auto ", "auto"), ("MANUAL", "manual")],
)
def test_config_mode_is_case_insensitive(api: Api, stack: Stack, given: str, expected: str):
    sim = stack.create_simulation(rounds=6)

    data = api.ok("config", simulation_id=sim, mode=given)

    assert data["mode"] == expected
    assert api.status(sim)["mode"] == expected


def test_status_after_config_has_every_key_and_a_clean_slate(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=6)
    api.configure_auto(sim)

    data = api.status(sim)

    check_status_shape(data)
    assert data["simulation_id"] == sim
    assert data["mode"] == "auto"
    assert data["status"] == "inactive"
    assert data["current_step"] == "idle"
    assert data["step_progress"] == 0
    assert data["last_completed_step"] is None
    assert data["error"] is None and data["error_step"] is None
    assert data["started_at"] is None and data["completed_at"] is None


def test_status_of_an_unknown_id_is_the_no_state_shape(api: Api):
    sim = unknown_id()

    data = api.status(sim)

    assert set(data) == NO_STATE_KEYS
    assert data["simulation_id"] == sim
    assert data["mode"] == "manual"
    assert data["status"] == "inactive"
    assert data["available"] is True
    assert isinstance(data["message"], str) and data["message"]


def test_stop_and_reset_without_a_run_succeed_and_keep_the_mode(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=6)
    api.configure_auto(sim)

    for _ in range(2):  # idempotent
        stopped = api.ok("stop", simulation_id=sim)
        assert STOP_KEYS <= set(stopped) <= STOP_KEYS | {"current_step"} | ADDED_KEYS
        assert stopped["simulation_id"] == sim
        assert stopped["status"] == "inactive"

    reset = api.ok("reset", simulation_id=sim)
    assert RESET_KEYS <= set(reset) <= RESET_KEYS | ADDED_KEYS
    assert reset["simulation_id"] == sim
    assert isinstance(reset["message"], str) and reset["message"]

    status = api.status(sim)
    check_status_shape(status)
    assert status["mode"] == "auto"
    assert status["status"] == "inactive"
    assert stack.ledger(sim) == {"prepare": 0, "start": 0, "stop": 0, "report": 0}


# -- missing simulation_id, malformed bodies, wrong types ----------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [{}, {"simulation_id": ""}, {"simulation_id": None}, {"mode": "auto", "force": False}],
    ids=["empty", "empty-string", "null", "other-fields-only"],
)
def test_missing_simulation_id_is_400_on_every_endpoint(
    api: Api, endpoint: str, body: dict[str, Any]
):
    expect_failure(api.post(endpoint, body), 400, "MISSING_SIMULATION_ID")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_invalid_json_is_400_on_every_endpoint(api: Api, endpoint: str):
    response = api.post(endpoint, content=b'{"simulation_id": "sim_x",', headers=JSON)

    expect_failure(response, 400, "INVALID_JSON")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "request_kwargs",
    [
        {},
        {"content": b"", "headers": JSON},
        {"content": b"null", "headers": JSON},
        {"content": b"[]", "headers": JSON},
        {"content": b'"sim_x"', "headers": JSON},
        {"content": b'{"simulation_id": NaN}', "headers": JSON},
        {"content": b'{"simulation_id": "sim_x"}', "headers": {"content-type": "text/plain"}},
        {"data": {"simulation_id": "sim_x"}},
    ],
    ids=["no-body", "empty-body", "json-null", "json-array", "json-string", "nan", "text", "form"],
)
def test_malformed_bodies_are_400_never_500(
    api: Api, endpoint: str, request_kwargs: dict[str, Any]
):
    expect_failure(api.post(endpoint, **request_kwargs), 400, None)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "simulation_id", [5, 1.5, True, ["sim_x"], {"id": "sim_x"}, "s" * 201], ids=short
)
def test_a_simulation_id_of_the_wrong_type_or_size_is_400(
    api: Api, endpoint: str, simulation_id: Any
):
    expect_failure(api.post(endpoint, {"simulation_id": simulation_id}), 400, None)


@pytest.mark.parametrize("force", ["maybe", 2, [], {}], ids=repr)
def test_start_with_a_force_that_is_not_a_boolean_is_400(api: Api, force: Any):
    response = api.post("start", {"simulation_id": unknown_id(), "force": force})

    expect_failure(response, 400, None)


@pytest.mark.parametrize("mode", [5, True, ["auto"], {"mode": "auto"}], ids=repr)
def test_config_with_a_mode_that_is_not_a_string_is_400(api: Api, mode: Any):
    response = api.post("config", {"simulation_id": unknown_id(), "mode": mode})

    expect_failure(response, 400, None)


# -- the error codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"mode": "turbo"}, {"mode": "automatic"}, {"mode": ""}, {"mode": "   "}, {"mode": None}, {}],
    ids=["turbo", "automatic", "empty", "blank", "null", "missing"],
)
def test_config_with_a_bad_or_missing_mode_is_400_invalid_mode(
    api: Api, stack: Stack, body: dict[str, Any]
):
    sim = stack.create_simulation(rounds=6)

    expect_failure(api.post("config", {"simulation_id": sim, **body}), 400, "INVALID_MODE")

    assert api.status(sim)["mode"] == "manual"


def test_config_of_an_unknown_simulation_is_404(api: Api):
    sim = unknown_id()

    body = api.fail("config", 404, "SIMULATION_NOT_FOUND", simulation_id=sim, mode="auto")

    assert sim in body["error"]
    assert set(api.status(sim)) == NO_STATE_KEYS  # nothing was recorded for it


def test_pause_when_not_active_is_409_not_active(api: Api, stack: Stack):
    configured = stack.create_simulation(rounds=6)
    api.configure_auto(configured)

    for sim in (configured, stack.create_simulation(rounds=6), unknown_id()):
        api.fail("pause", 409, "NOT_ACTIVE", simulation_id=sim)


def test_resume_when_not_paused_is_409_not_paused(api: Api, stack: Stack):
    configured = stack.create_simulation(rounds=6)
    api.configure_auto(configured)

    for sim in (configured, stack.create_simulation(rounds=6), unknown_id()):
        api.fail("resume", 409, "NOT_PAUSED", simulation_id=sim)


# -- a backend answering nonsense: 502 with the endpoint, never a 500 ---------------------------


@pytest.mark.parametrize("answer", ["list", "string", "truncated", "html", "wrong_types"])
def test_a_backend_answering_nonsense_is_a_502_in_one_sentence(api: Api, stack: Stack, answer: str):
    sim = stack.create_simulation(rounds=4)
    stack.set_faults(
        sim, malformed_routes={f"GET /api/simulation/{sim}": 1}, malformed_answer=answer
    )
    body = api.fail("config", 502, "BACKEND_PROTOCOL", simulation_id=sim, mode="auto")
    assert body["error"].startswith(f"GET /api/simulation/{sim}: the backend answered"), body
    assert "\n" not in body["error"] and len(body["error"]) < 400, body
    # The fault is spent: the next call reads the simulation as usual.
    assert api.ok("config", simulation_id=sim, mode="auto")["mode"] == "auto"


# -- odd ids: never a 500 ------------------------------------------------------------------

ODD_IDS = ["a/b", "../..", "x?y=1", "s#1", " ", "\u00fc-\u2603", "%2F", "-leading-dash"]


@pytest.mark.parametrize("simulation_id", ODD_IDS, ids=short)
def test_ids_that_could_escape_into_urls_are_400_on_every_endpoint(api: Api, simulation_id: str):
    for endpoint in ENDPOINTS:
        response = api.post(endpoint, {"simulation_id": simulation_id, "mode": "auto"})
        expect_failure(response, 400, "INVALID_SIMULATION_ID")


def test_the_longest_valid_id_is_answered_without_a_server_error(api: Api):
    # Unknown to the backend: every endpoint that acts on a simulation refuses before writing.
    simulation_id = "s" * 200
    expected = {
        "config": (404, "SIMULATION_NOT_FOUND"),
        "start": (404, "SIMULATION_NOT_FOUND"),
        "pause": (409, "NOT_ACTIVE"),
        "resume": (409, "NOT_PAUSED"),
        "stop": (404, "SIMULATION_NOT_FOUND"),
        "reset": (404, "SIMULATION_NOT_FOUND"),
    }
    for endpoint in ENDPOINTS:
        response = api.post(endpoint, {"simulation_id": simulation_id, "mode": "auto"})
        if endpoint in expected:
            expect_failure(response, *expected[endpoint])
        else:
            assert response.status_code == 200, f"{endpoint}: {response.text}"
            assert response.json()["data"]["simulation_id"] == simulation_id


def test_an_id_one_character_too_long_is_told_so(api: Api):
    for endpoint in ENDPOINTS:
        response = api.post(endpoint, {"simulation_id": "s" * 201, "mode": "auto"})
        body = expect_failure(response, 400, "INVALID_SIMULATION_ID")
        assert "too long" in body["error"] and "200" in body["error"], body


def test_a_known_simulation_with_the_longest_valid_id_is_served(api: Api, stack: Stack):
    # Derived names of a 200-character id are cut and hashed (autopilot.names): still served.
    simulation_id = stack.create_simulation(simulation_id=unknown_id().ljust(200, "z"))
    assert len(simulation_id) == 200
    for endpoint in ("config", "status", "stop", "reset", "status"):
        data = api.ok(endpoint, simulation_id=simulation_id, mode="manual")
        assert data["simulation_id"] == simulation_id, endpoint


@pytest.mark.parametrize("endpoint", ["config", "stop", "reset"])
@pytest.mark.parametrize("simulation_id", ["a\nb", "a\tb", "\x00", "\x7f"], ids=repr)
def test_control_characters_in_the_id_are_bad_input_not_a_server_error(
    shim_url: str, endpoint: str, simulation_id: str
):
    # Own client: after a 500 the shim drops the connection, which must not hit other tests.
    with httpx.Client(base_url=shim_url, timeout=60) as client:
        response = client.post(
            f"{PREFIX}/{endpoint}", json={"simulation_id": simulation_id, "mode": "auto"}
        )
    assert response.status_code < 500, f"{response.status_code}: {response.text}"


@pytest.mark.parametrize("suffix", ["?x", "#x", "/run-status", "%2Frun-status"])
def test_an_id_that_could_reach_another_url_is_invalid_input(api: Api, stack: Stack, suffix: str):
    sim = stack.create_simulation(rounds=6)

    api.fail("config", 400, "INVALID_SIMULATION_ID", simulation_id=sim + suffix, mode="auto")
