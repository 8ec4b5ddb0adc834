"""`AUTOPILOT_LOG_FORMAT=json`: every line the worker, its flow processes and the shim write is
one JSON object; a run's lines carry its simulation, generation, step and flow run; secrets
never appear."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx

from autopilot.logs import JsonLines
from tests.conftest import SESSION_DIR
from tests.helpers import stop_process
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import named_stack, start_shim

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every non-empty line of `log` as JSON (fails on the first line that is not)."""
    parsed = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{log.name}:{number} is not JSON: {line!r}") from None
    return parsed


def test_worker_flow_runs_and_shim_log_one_json_object_a_line(prefect_server, simulator):
    with named_stack("json-logs", *simulator, AUTOPILOT_LOG_FORMAT="json") as stack:
        sim = stack.create_simulation(rounds=4)
        run_id = launch(sim, deployment="auto-pilot/json-logs")
        wait_for_state(run_id, {"COMPLETED"}, timeout=120)
        assert stack.ledger(sim) == ONE_OF_EACH
    worker_lines = json_lines(SESSION_DIR / "json-logs-worker.log")
    of_run = [line for line in worker_lines if line.get("flow_run_id") == str(run_id)]
    assert of_run, worker_lines[-20:]
    steps = {line.get("step") for line in of_run}
    assert {"preparing", "monitoring", "generating_report"} <= steps, steps
    in_steps = [line for line in of_run if line.get("step")]
    assert all(line["simulation_id"] == sim and line["generation"] == 0 for line in in_steps)
    assert {"time", "level", "logger", "message"} <= set(worker_lines[0])

    env = {**os.environ, "AUTOPILOT_LOG_FORMAT": "json", "AUTOPILOT_BACKEND_URL": simulator[0]}
    log = SESSION_DIR / "json-shim.log"
    shim, url = start_shim(env, log)
    try:
        answer = httpx.post(f"{url}/api/simulation/auto-pilot/status", json={"simulation_id": sim})
        assert answer.status_code == 200
    finally:
        stop_process(shim)
    shim_lines = json_lines(log)
    assert any("/api/simulation/auto-pilot/status" in line["message"] for line in shim_lines)


def test_secrets_are_replaced_in_messages_and_tracebacks(monkeypatch):
    monkeypatch.setenv("AUTOPILOT_BACKEND_PASSWORD", "hunter2-password")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "autopilot:s3cret-token")
    formatter = JsonLines()
    try:
        raise RuntimeError("login with hunter2-password failed")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "autopilot.client", logging.ERROR, __file__, 1,
            "auth %s and %s", ("autopilot:s3cret-token", "s3cret-token"), sys.exc_info(),
        )  # fmt: skip
    line = formatter.format(record)
    entry = json.loads(line)
    assert "hunter2" not in line and "s3cret" not in line
    assert entry["message"] == "auth *** and ***"
    assert "login with *** failed" in entry["exception"]
    assert entry["level"] == "ERROR" and entry["logger"] == "autopilot.client"
