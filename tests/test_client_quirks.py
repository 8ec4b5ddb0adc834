"""The backend client's handling of real-multimo quirks, with bodies shaped as CONTRACT.md says.

httpx's MockTransport stands in for the real multimo (which we do not own and cannot run here);
everything else about the client is tested against the bundled simulator.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from autopilot.client import MultimoClient
from autopilot.errors import BackendAuthError, BackendRejected, BackendUnavailable, NotFound

SECRET = "hunter2-very-secret"


def make_client(handler, **kwargs) -> tuple[MultimoClient, list[float]]:
    sleeps: list[float] = []
    client = MultimoClient(
        "http://multimo.test",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        **kwargs,
    )
    return client, sleeps


def ok(data) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data})


def test_logs_in_then_relogs_once_on_401():
    logins: list[dict] = []
    tokens_seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/login":
            logins.append(json.loads(request.content))
            return ok({"token": f"tok-{len(logins)}"})
        tokens_seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") == "Bearer tok-1":
            # The backend restarted: the first token died.
            return httpx.Response(401, json={"success": False, "message": "Token expired"})
        return ok({"status": "running"})

    client, _ = make_client(handler, email="a@b.c", password=SECRET)
    info = client.get_simulation("sim_1")

    assert info.status == "running"
    assert len(logins) == 2
    assert tokens_seen == ["Bearer tok-1", "Bearer tok-2"]


def test_second_401_is_an_auth_error_without_credentials_in_text(caplog):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/login":
            return ok({"token": "tok"})
        return httpx.Response(401, json={"success": False, "message": "Invalid token"})

    caplog.set_level(logging.DEBUG)
    client, _ = make_client(handler, email="a@b.c", password=SECRET)
    with pytest.raises(BackendAuthError) as info:
        client.run_status("sim_1")
    assert "Invalid token" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_failed_login_never_shows_the_password(caplog):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"success": False, "message": "Bad credentials"})

    caplog.set_level(logging.DEBUG)
    client, _ = make_client(handler, email="a@b.c", password=SECRET)
    with pytest.raises(BackendAuthError) as info:
        client.get_simulation("sim_1")
    assert "Bad credentials" in str(info.value)
    assert SECRET not in repr(info.value) and SECRET not in caplog.text


def test_429_backs_off_honouring_retry_after_with_flask_array_body():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json=[{"error": "rate limit exceeded: 200 per 1 hour"}, 429],
            )
        return ok({"runner_status": "running", "current_round": 3, "total_rounds": 12})

    client, sleeps = make_client(handler)
    status = client.run_status("sim_1")
    assert status.current_round == 3
    assert sleeps == [7.0, 7.0]


def test_429_past_budget_is_unavailable_with_the_array_text():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json=[{"error": "rate limit exceeded"}, 429])

    client, sleeps = make_client(handler, rate_limit_budget=10)
    with pytest.raises(BackendUnavailable) as info:
        client.run_status("sim_1")
    assert "rate limit exceeded" in str(info.value)
    assert sum(sleeps) <= 10
    # The step retry rule (tasks/_step.py) retries exactly this class.
    assert isinstance(info.value, BackendUnavailable)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unavailable(status):
    client, _ = make_client(
        lambda r: httpx.Response(status, json={"success": False, "error": "boom"})
    )
    with pytest.raises(BackendUnavailable) as info:
        client.run_status("sim_1")
    assert "boom" in str(info.value)


def test_timeout_and_refused_are_unavailable():
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler in (timeout, refused):
        client, _ = make_client(handler)
        with pytest.raises(BackendUnavailable):
            client.run_status("sim_1")


def test_refused_for_real_on_a_closed_port():
    from tests.helpers import free_port

    client = MultimoClient(f"http://127.0.0.1:{free_port()}", connect_timeout=1)
    with pytest.raises(BackendUnavailable) as info:
        client.run_status("sim_1")
    assert "unreachable" in str(info.value)


def test_error_text_from_error_message_and_array_bodies():
    bodies = {
        "/a": httpx.Response(400, json={"success": False, "error": "Simulation not prepared"}),
        "/b": httpx.Response(403, json={"success": False, "message": "Not your simulation"}),
        "/c": httpx.Response(405, json=[{"message": "Method Not Allowed"}, 405]),
        "/d": httpx.Response(404, json={"success": False, "error": "Simulation not found"}),
    }
    client, _ = make_client(lambda r: bodies[r.url.path])
    with pytest.raises(BackendRejected, match="Simulation not prepared"):
        client._call("GET", "/a")
    with pytest.raises(BackendAuthError, match="Not your simulation"):
        client._call("GET", "/b")
    with pytest.raises(BackendRejected, match="Method Not Allowed") as info:
        client._call("GET", "/c")
    assert info.value.backend_status == 405
    with pytest.raises(NotFound, match="Simulation not found"):
        client._call("GET", "/d")


def test_report_status_is_polled_by_simulation_id_only():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "task_id" in body:
            return httpx.Response(500, json={"success": False, "error": "internal"})
        return ok({"status": "processing", "progress": 40, "message": "writing"})

    client, _ = make_client(handler)
    status = client.report_generation_status("sim_1")
    assert status is not None and status.progress == 40
    assert bodies == [{"simulation_id": "sim_1"}]


def test_report_status_404_means_no_task_in_progress():
    client, _ = make_client(
        lambda r: httpx.Response(404, json={"success": False, "error": "no task in progress"})
    )
    assert client.report_generation_status("sim_1") is None
