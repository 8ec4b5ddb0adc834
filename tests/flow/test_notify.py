"""`autopilot notify`: one POST per outcome to a loopback receiver, none for a pause, through
the real Prefect server's automations (they live in the server: no worker of ours sends them,
and a worker restart changes nothing)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers import AUTOPILOT, free_port, wait_until
from tests.prefect_stack import launch, wait_for_state
from tests.stack_fixtures import Stack


class Receiver:
    """A webhook on a loopback port that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, simulation_id: str) -> list[dict[str, Any]]:
        return [body for body in self.bodies if body.get("simulation_id") == simulation_id]


def autopilot(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*AUTOPILOT, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def receiver(stack: Stack) -> Iterator[Receiver]:
    receiver = Receiver()
    added = json.loads(
        autopilot(
            "notify", "add", "--webhook", receiver.url, "--on", "completed,failed", "--json"
        ).stdout
    )
    try:
        yield receiver
    finally:
        autopilot("notify", "remove", added["id"])
        receiver.server.shutdown()


def test_one_post_per_outcome_none_for_a_pause(stack: Stack, receiver: Receiver):
    from prefect.flow_runs import resume_flow_run, suspend_flow_run

    listed = autopilot("notify", "list", "--json").stdout
    [hook] = json.loads(listed)
    assert hook["outcomes"] == ["completed", "failed"]
    assert "s3cret" not in listed  # the path may carry a secret: never shown

    paused = stack.create_simulation(rounds=40)
    paused_run = launch(paused)
    wait_until(lambda: stack.run_status(paused)["current_round"] >= 2, timeout=90)
    suspend_flow_run(flow_run_id=paused_run)
    wait_for_state(paused_run, {"PAUSED"}, timeout=30)
    # The worker dies and comes back: the automation lives in the Prefect server.
    stack.worker.kill(with_flow_processes=False)
    stack.worker.start()
    failing = stack.create_simulation(rounds=10, faults={"fail_at_round": 3})
    failing_run = launch(failing)
    wait_for_state(failing_run, {"FAILED"}, timeout=120)
    resume_flow_run(paused_run)
    wait_for_state(paused_run, {"COMPLETED"}, timeout=180)

    # Automations act a few seconds after the event; a third run's post marks "all arrived".
    last = stack.create_simulation(rounds=2)
    wait_for_state(launch(last), {"COMPLETED"}, timeout=90)
    wait_until(lambda: receiver.of(last), timeout=60, message="the last run's post")

    [completed] = receiver.of(paused)
    assert completed == {
        "simulation_id": paused,
        "generation": 0,
        "flow_run_id": str(paused_run),
        "status": "completed",
        "error_step": None,
        "error": None,
        "ui_url": completed["ui_url"],
    }
    assert completed["ui_url"].endswith(f"/runs/flow-run/{paused_run}")
    [failed] = receiver.of(failing)
    assert failed["status"] == "failed" and failed["flow_run_id"] == str(failing_run)
    assert failed["error_step"] == "monitoring"
    assert "injected failure at round 3" in failed["error"]
    assert stack.ledger(paused) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_bad_webhooks_and_outcomes_are_refused_clearly():
    for args, code in (
        (["--webhook", "ftp://example.org/x"], "INVALID_WEBHOOK_URL"),
        (["--webhook", "http://127.0.0.1:9/x", "--on", "completed,paused"], "INVALID_OUTCOME"),
    ):
        result = subprocess.run(
            [*AUTOPILOT, "notify", "add", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1 and code in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [*AUTOPILOT, "notify", "remove", "not-an-id"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "INVALID_ID" in missing.stderr
