"""Helpers for the REST-shim tests: the envelope, the contract's key sets, bounded waits.

Everything goes through HTTP against a running shim; nothing here knows about Prefect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import uuid4

import httpx

from tests.helpers import wait_until

PREFIX = "/api/simulation/auto-pilot"
ENDPOINTS = ("config", "start", "pause", "resume", "stop", "status", "reset")

# CONTRACT.md part A: the `data` of each success answer.
CONFIG_KEYS = {"simulation_id", "mode", "message", "available"}
START_KEYS = {
    "simulation_id",
    "status",
    "current_step",
    "step_progress",
    "step_message",
    "message",
    "force_restarted",
}
PAUSE_KEYS = {"simulation_id", "status", "current_step", "message"}
RESUME_KEYS = {"simulation_id", "status", "current_step", "message"}
STOP_KEYS = {"simulation_id", "status", "message"}
RESET_KEYS = {"simulation_id", "message"}
NO_STATE_KEYS = {"simulation_id", "mode", "status", "available", "message"}
STATUS_KEYS = {
    "simulation_id",
    "mode",
    "status",
    "current_step",
    "step_progress",
    "step_message",
    "progress_detail",
    "created_at",
    "started_at",
    "paused_at",
    "completed_at",
    "failed_at",
    "error",
    "error_step",
    "last_completed_step",
    "retry_count",
    "available",
}
TIMESTAMP_KEYS = ("created_at", "started_at", "paused_at", "completed_at", "failed_at")
# Keys the shim adds on top of the contract (allowed: "new keys may be added").
ADDED_KEYS = {"flow_run_id", "generation", "heartbeat_at", "heartbeat_age_seconds"}

MODES = {"manual", "auto"}
STATUSES = {"inactive", "active", "paused", "completed", "failed"}
STEPS = {"idle", "preparing", "starting", "monitoring", "generating_report", "completed", "failed"}
ENDED = {"completed", "failed"}


def unknown_id() -> str:
    """A simulation id nobody created."""
    return f"sim_unknown_{uuid4().hex[:12]}"


def is_iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_status_shape(data: dict[str, Any]) -> None:
    """Every key the original had, with values from the contract's enums."""
    missing = STATUS_KEYS - data.keys()
    assert not missing, f"status lacks {missing}: {data}"
    assert data["mode"] in MODES, data
    assert data["status"] in STATUSES, data
    assert data["current_step"] in STEPS, data
    assert data["last_completed_step"] is None or data["last_completed_step"] in STEPS, data
    assert data["error_step"] is None or data["error_step"] in STEPS, data
    progress = data["step_progress"]
    assert isinstance(progress, int) and not isinstance(progress, bool), data
    assert 0 <= progress <= 100, data
    assert isinstance(data["progress_detail"], dict), data
    assert isinstance(data["retry_count"], int) and data["retry_count"] >= 0, data
    assert data["available"] is True, data
    for key in TIMESTAMP_KEYS:
        assert data[key] is None or is_iso(data[key]), f"{key} is not ISO 8601: {data[key]!r}"


class Api:
    """The seven endpoints over one `httpx.Client`, with envelope checks."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def post(self, endpoint: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.client.post(f"{PREFIX}/{endpoint}", **kwargs)

    def ok(self, endpoint: str, **body: Any) -> dict[str, Any]:
        """Call and return `data`, asserting a 200 success envelope."""
        return expect_ok(self.post(endpoint, body))

    def fail(self, endpoint: str, status: int, code: str, **body: Any) -> dict[str, Any]:
        """Call and return the body, asserting the failure envelope with this status and code."""
        return expect_failure(self.post(endpoint, body), status, code)

    def status(self, simulation_id: str) -> dict[str, Any]:
        return self.ok("status", simulation_id=simulation_id)

    def configure_auto(self, simulation_id: str) -> None:
        assert self.ok("config", simulation_id=simulation_id, mode="auto")["mode"] == "auto"

    def wait_status(
        self,
        simulation_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        message: str,
        allowed_end: set[str] | None = None,
    ) -> dict[str, Any]:
        """Poll status until `predicate` holds; fail at once if the run ended otherwise
        (an end in `allowed_end` is not a failure)."""
        allowed = allowed_end or set()

        def settled() -> dict[str, Any] | None:
            data = self.status(simulation_id)
            if predicate(data) or (data["status"] in ENDED - allowed):
                return data
            return None

        data = wait_until(settled, timeout=timeout, interval=0.25, message=message)
        assert predicate(data), f"ended while waiting for {message}: {data}"
        check_status_shape(data)
        return data

    def wait_for(self, simulation_id: str, status: str, timeout: float) -> dict[str, Any]:
        """Wait until the status is `status`."""
        return self.wait_status(
            simulation_id,
            lambda d: d["status"] == status,
            timeout=timeout,
            message=f"status {status}",
            allowed_end={status},
        )

    def wait_monitoring(self, simulation_id: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the run is active in MONITORING with its round progress published."""
        return self.wait_status(
            simulation_id,
            lambda d: (
                d["status"] == "active"
                and d["current_step"] == "monitoring"
                and d.get("progress_detail", {}).get("current_round", 0) >= 1
            ),
            timeout=timeout,
            message="active and monitoring",
        )


def expect_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body = response.json()
    assert body["success"] is True, body
    assert set(body) == {"success", "data"}, body
    assert isinstance(body["data"], dict), body
    return dict(body["data"])


def expect_failure(response: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    """The failure envelope: `{success: false, error: <text>, error_code}`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert body["success"] is False, body
    assert set(body) == {"success", "error", "error_code"}, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    assert isinstance(body["error_code"], str) and body["error_code"].isupper(), body
    if code is not None:
        assert body["error_code"] == code, body
    return dict(body)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """The result of `call` and how long it took (seconds)."""
    began = time.monotonic()
    result = call()
    return result, time.monotonic() - began
