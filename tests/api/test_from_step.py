"""A restart from a chosen step (`start force from_step=...`), through the shim and the CLI.

The simulator's ledger is the witness: a restart repeats the side effects of `from_step` and
later steps, and none of the steps before it.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from tests.api.shim import Api
from tests.api.test_lifecycle import COMPLETION_TIMEOUT, ONE_OF_EACH, check_completed, start_auto
from tests.flow.test_outcomes import step_states
from tests.helpers import AUTOPILOT
from tests.stack_fixtures import Stack

RESTARTED_STEPS = ["preparing", "starting", "monitoring", "generating_report", "completed"]


def restart(api: Api, simulation_id: str, from_step: str) -> dict[str, Any]:
    data = api.ok("start", simulation_id=simulation_id, force=True, from_step=from_step)
    assert data["force_restarted"] is True and data["status"] == "active", data
    return data


def cli_start(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTOPILOT_BACKEND_URL": stack.simulator_url}
    return subprocess.run(
        [*AUTOPILOT, "start", *args, "--json"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_a_report_is_made_again_and_nothing_else_then_the_run_again_from_its_start(
    api: Api, stack: Stack
):
    sim = stack.create_simulation(rounds=6)
    first = start_auto(api, sim)
    first_report = check_completed_later(api, sim, first["flow_run_id"])["progress_detail"]
    assert stack.ledger(sim) == ONE_OF_EACH

    again = restart(api, sim, "generating_report")
    assert again["generation"] == first["generation"] + 1
    assert f"taken as done from generation {first['generation']}" in again["message"]
    second_report = check_completed_later(api, sim, again["flow_run_id"])["progress_detail"]
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 2}
    # The outcome names the new report, not the earlier one multimo's status still names.
    with stack.backend() as backend:
        newest = backend.list_reports(sim)[0].report_id
    assert second_report["report_id"] == newest != first_report["report_id"]
    # The run shows all five steps; the three taken as done ran (no cache hit of another
    # generation) without touching the backend.
    states = step_states(again["flow_run_id"])
    assert sorted(states) == sorted(RESTARTED_STEPS)
    assert all(names == ["Completed"] for names in states.values()), states

    # The CLI's --from-step implies --force; from `starting` the simulation runs again.
    result = cli_start(stack, sim, "--from-step", "starting")
    assert result.returncode == 0, result.stdout + result.stderr
    by_cli = json.loads(result.stdout)
    assert by_cli["generation"] == again["generation"] + 1, by_cli
    check_completed_later(api, sim, by_cli["flow_run_id"])
    assert stack.ledger(sim) == {"prepare": 1, "start": 2, "stop": 0, "report": 3}
    assert stack.run_status(sim)["current_round"] == 6


def test_a_running_simulation_is_watched_from_a_fresh_attempt_without_being_stopped(
    api: Api, stack: Stack
):
    sim = stack.create_simulation(rounds=40, round_seconds=0.2)
    first = start_auto(api, sim)
    before = api.wait_monitoring(sim)["progress_detail"]["current_round"]

    again = restart(api, sim, "monitoring")
    status = check_completed_later(api, sim, again["flow_run_id"])
    assert status["generation"] == first["generation"] + 1
    assert stack.ledger(sim) == ONE_OF_EACH  # not stopped, not started a second time
    backend = stack.run_status(sim)
    assert backend["runner_status"] == "completed" and backend["current_round"] == 40
    assert before < 40
    assert api.ok("status", simulation_id=sim)["flow_run_id"] == again["flow_run_id"]


def check_completed_later(api: Api, sim: str, flow_run_id: str) -> dict[str, Any]:
    """The status once this run completed (a start by another process reaches the shim's
    status through Prefect's events, a moment later)."""
    status = api.wait_status(
        sim, lambda d: d["status"] == "completed" and d["flow_run_id"] == flow_run_id,
        timeout=COMPLETION_TIMEOUT, message=f"run {flow_run_id} completed",
        allowed_end={"completed"},
    )  # fmt: skip
    check_completed(status, flow_run_id)
    return status


def test_bad_steps_are_refused_with_the_reason(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=6)
    api.configure_auto(sim)
    refused = api.fail("start", 400, "INVALID_STEP", simulation_id=sim, force=True,
                       from_step="reporting")  # fmt: skip
    assert "generating_report" in refused["error"]
    api.fail("start", 400, "FROM_STEP_NEEDS_FORCE", simulation_id=sim, from_step="monitoring")
    missing = api.fail("start", 409, "STEP_NOT_REACHED", simulation_id=sim, force=True,
                       from_step="monitoring")  # fmt: skip
    assert "step preparing never finished" in missing["error"]
    assert stack.ledger(sim) == {"prepare": 0, "start": 0, "stop": 0, "report": 0}

    result = cli_start(stack, sim, "--from-step", "bogus")
    assert result.returncode != 0
    assert "INVALID_STEP" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
