"""The shim as a server: liveness, OpenAPI docs, and the bearer token when one is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from tests.api.shim import ENDPOINTS, NO_STATE_KEYS, PREFIX, expect_failure, expect_ok, unknown_id
from tests.conftest import SESSION_DIR
from tests.helpers import stop_process
from tests.stack_fixtures import start_shim

TOKEN = "secret"


def test_healthz_answers(shim_url: str):
    response = httpx.get(f"{shim_url}/healthz", timeout=30)

    data = expect_ok(response)
    assert data["status"] == "ok"
    assert set(data["status_cache"]) == {"healthy", "hits", "loads"}


def test_docs_and_openapi_list_the_seven_endpoints(shim_url: str):
    docs = httpx.get(f"{shim_url}/docs", timeout=30)
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]

    schema = httpx.get(f"{shim_url}/openapi.json", timeout=30)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for endpoint in ENDPOINTS:
        assert "post" in paths[f"{PREFIX}/{endpoint}"], endpoint
    assert {p for p in paths if p.startswith(PREFIX)} == {f"{PREFIX}/{e}" for e in ENDPOINTS}


@pytest.fixture(scope="module")
def token_shim(shim_url: str, simulator: tuple[str, Path]) -> Iterator[str]:
    """A second shim over the same stack, with AUTOPILOT_API_TOKEN set (one per module)."""
    env = {
        **os.environ,
        "AUTOPILOT_BACKEND_URL": simulator[0],
        "AUTOPILOT_API_TOKEN": TOKEN,
    }
    proc, url = start_shim(env, SESSION_DIR / f"shim-token-{uuid4().hex[:8]}.log")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "longer", "no-scheme", "basic", "empty"],
)
def test_a_token_protected_shim_refuses_without_the_right_token(token_shim: str, headers):
    with httpx.Client(base_url=token_shim, timeout=60, headers=headers) as client:
        for endpoint in ENDPOINTS:
            response = client.post(
                f"{PREFIX}/{endpoint}", json={"simulation_id": unknown_id(), "mode": "auto"}
            )
            expect_failure(response, 401, "UNAUTHORIZED")
        # Bad input does not get past the token check either.
        expect_failure(client.post(f"{PREFIX}/status", json={}), 401, "UNAUTHORIZED")


def test_a_token_protected_shim_answers_with_the_right_token(token_shim: str):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=token_shim, timeout=60, headers=auth) as client:
        sim = unknown_id()
        data = expect_ok(client.post(f"{PREFIX}/status", json={"simulation_id": sim}))
        assert set(data) == NO_STATE_KEYS and data["simulation_id"] == sim

        expect_failure(client.post(f"{PREFIX}/status", json={}), 400, "MISSING_SIMULATION_ID")
    # Liveness stays open: a supervisor probes it without the token.
    assert httpx.get(f"{token_shim}/healthz", timeout=30).status_code == 200
