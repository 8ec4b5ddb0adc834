"""The shim under generated input: schemathesis draws requests for all seven POST endpoints from
the shim's own OpenAPI document (valid and invalid bodies); none may answer 5xx, and every answer
carries the envelope. Plus the illegal transitions' stable 409 codes (tests/api covers them more
widely; here once, next to the fuzzing).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import SESSION_DIR
from tests.stack_fixtures import Stack

# Hypothesis's caches go to the session directory, not to .hypothesis/ in the repository.
set_hypothesis_home_dir(SESSION_DIR / "hypothesis")

PREFIX = "/api/simulation/auto-pilot"
ENDPOINTS = ("config", "start", "pause", "resume", "stop", "status", "reset")
# Ids of the shape the service accepts (autopilot/service/operations.py, check_simulation_id).
WELL_FORMED_ID = r"(sim_)?[A-Za-z0-9][A-Za-z0-9_.:-]{0,40}"


@pytest.fixture(scope="module")
def shim_schema(shim_url: str) -> Any:
    """The shim's own OpenAPI document, as the running shim serves it."""
    return schemathesis.openapi.from_url(f"{shim_url}/openapi.json", timeout=30)


@pytest.fixture
def shim(shim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shim_url, timeout=httpx.Timeout(60, connect=10)) as client:
        yield client


def assert_envelope(response: Any, sent: str) -> None:
    """`{success: true, data: {...}}` or `{success: false, error, error_code}`, nothing else."""
    body = response.json()
    seen = f"{response.status_code} {body!r} for {sent}"
    assert isinstance(body, dict), seen
    if response.status_code < 400:
        assert body.get("success") is True and isinstance(body.get("data"), dict), seen
    else:
        assert body.get("success") is False, seen
        assert isinstance(body.get("error"), str) and body["error"], seen
        assert isinstance(body.get("error_code"), str) and body["error_code"], seen


def with_simulation_id(case: Any, simulation_id: str) -> Any:
    if isinstance(case.body, dict):
        case.body = {**case.body, "simulation_id": simulation_id}
    return case


def test_the_schema_describes_the_seven_post_endpoints(shim_schema: Any):
    posts = {
        result.ok().path
        for result in shim_schema.get_all_operations()
        if result.ok().method.upper() == "POST"
    }
    assert posts == {f"{PREFIX}/{name}" for name in ENDPOINTS}


# `schemathesis.pytest.from_fixture(...).parametrize()` fails under pytest 9 ("'Function'
# object has no attribute '_nodeid'"), so the operation's strategies are used with Hypothesis.
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_generated_requests_get_no_server_error_and_always_the_envelope(
    shim_schema: Any, endpoint: str
):
    operation = shim_schema[f"{PREFIX}/{endpoint}"]["POST"]
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    cases = st.one_of(
        positive,
        # Most generated ids are rejected up front; well-formed ones reach Prefect and the backend.
        st.builds(with_simulation_id, positive, st.from_regex(WELL_FORMED_ID, fullmatch=True)),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call_and_validate(checks=[not_a_server_error], timeout=60)
        assert_envelope(response, case.as_curl_command())

    check()


def test_a_simulation_id_with_a_control_character_is_rejected_without_a_server_error(
    shim: httpx.Client,
):
    # It once reached a backend URL unescaped: httpx.InvalidURL, answered 500 INTERNAL.
    for endpoint in ENDPOINTS:
        for simulation_id in ("a\tb", "a\nb", "a\x00b", "a\x7fb"):
            response = shim.post(
                f"{PREFIX}/{endpoint}", json={"simulation_id": simulation_id, "mode": "auto"}
            )
            sent = f"{endpoint} with simulation_id {simulation_id!r}"
            assert 400 <= response.status_code < 500, f"{response.status_code} for {sent}"
            assert_envelope(response, sent)


@pytest.mark.parametrize("body", [b"\xff", b"\x00" * 9], ids=["0xff", "nine-NULs"])
def test_a_body_that_is_not_json_text_gets_the_envelope(shim: httpx.Client, body: bytes):
    response = shim.post(
        f"{PREFIX}/status", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert_envelope(response, f"status with body {body!r}")


def test_pause_and_resume_of_a_never_started_simulation_are_409_with_stable_codes(
    shim: httpx.Client, stack: Stack
):
    sim = stack.create_simulation(rounds=4)
    config = shim.post(f"{PREFIX}/config", json={"simulation_id": sim, "mode": "auto"})
    assert config.status_code == 200, config.text

    for endpoint, code in (("pause", "NOT_ACTIVE"), ("resume", "NOT_PAUSED")):
        response = shim.post(f"{PREFIX}/{endpoint}", json={"simulation_id": sim})
        assert response.status_code == 409, response.text
        body = response.json()
        assert set(body) == {"success", "error", "error_code"}, body
        assert body["success"] is False and body["error_code"] == code, body
        assert isinstance(body["error"], str) and body["error"], body
    assert stack.ledger(sim) == {"prepare": 0, "start": 0, "stop": 0, "report": 0}


def test_every_schemathesis_check_passes_against_the_document(shim_url: str, tmp_path: Path):
    # The CLI with `--checks all`: no 5xx, no status or body the document does not declare,
    # schema-valid data accepted, invalid data refused, 405s with `Allow`. Seeded: the same
    # cases on every run (a new seed is a new adversarial pass, run by hand).
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{shim_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "30",
        "--seed",
        "20261202",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "generated," in report and " passed" in report, report[-2000:]
