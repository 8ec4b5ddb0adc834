"""Runs driven only through the shim: start, pause, resume, stop, fail → reset → start,
concurrent starts, and status while the worker is dead.

The simulator's own endpoints (ledger, run-status, fault switches) are the independent
witness of what really happened on the backend.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from autopilot import names
from tests.api.run_records import artifacts, embedded_chart_size, task_runs, wait_step_yielded
from tests.api.shim import (
    ADDED_KEYS,
    PAUSE_KEYS,
    PREFIX,
    RESET_KEYS,
    RESUME_KEYS,
    START_KEYS,
    STOP_KEYS,
    Api,
    check_status_shape,
    timed,
)
from tests.helpers import wait_until
from tests.prefect_stack import wait_for_state
from tests.stack_fixtures import Stack

COMPLETION_TIMEOUT = 120
ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def start_auto(api: Api, simulation_id: str) -> dict[str, Any]:
    """config auto, then start; returns start's data after checking its shape."""
    api.configure_auto(simulation_id)
    data = api.ok("start", simulation_id=simulation_id)
    assert set(data) >= START_KEYS, data
    assert data["simulation_id"] == simulation_id
    assert data["status"] == "active"
    assert data["force_restarted"] is False
    assert isinstance(data["step_progress"], int) and 0 <= data["step_progress"] <= 100
    assert isinstance(data["current_step"], str) and isinstance(data["step_message"], str)
    assert isinstance(data["message"], str) and data["message"]
    assert data.get("flow_run_id")
    return data


def check_estimate(detail: dict[str, Any], round_seconds: float) -> None:
    """The pace is the simulator's within a factor of 3 (polls round the rounds' starts), and
    the time left and the completion time agree with it."""
    pace = 3600 / round_seconds
    assert pace / 3 <= detail["rounds_per_hour"] <= pace * 3, detail
    left = (detail["total_rounds"] - detail["current_round"]) * 3600 / detail["rounds_per_hour"]
    assert detail["eta_seconds"] == pytest.approx(left, abs=1.0), detail
    completion = datetime.fromisoformat(detail["estimated_completion_at"])
    expected = datetime.now(UTC) + timedelta(seconds=detail["eta_seconds"])
    assert abs((completion - expected).total_seconds()) < 60, detail


def check_completed(status: dict[str, Any], flow_run_id: str | None = None) -> None:
    check_status_shape(status)
    assert status["status"] == "completed", status
    assert status["current_step"] == "completed"
    assert status["last_completed_step"] == "completed"
    assert status["step_progress"] == 100
    assert status["completed_at"] is not None
    assert status["failed_at"] is None and status["error"] is None
    assert status["error_step"] is None
    if flow_run_id is not None:
        assert status["flow_run_id"] == flow_run_id


def test_config_start_pause_resume_runs_to_completion_once(api: Api, stack: Stack):
    # 20 s of rounds: the pause lands while monitoring (checked at the end), not after.
    sim = stack.create_simulation(rounds=40, round_seconds=0.5)
    started = start_auto(api, sim)
    run_id = started["flow_run_id"]

    monitoring = api.wait_status(
        sim, lambda d: "eta_seconds" in d.get("progress_detail", {}), timeout=90,
        message="monitoring with an estimate",
    )  # fmt: skip
    detail = monitoring["progress_detail"]
    assert set(detail) == {
        "current_round", "total_rounds", "twitter_actions", "reddit_actions",
        "rounds_per_hour", "eta_seconds", "estimated_completion_at",
    }  # fmt: skip
    assert detail["total_rounds"] == 40
    check_estimate(detail, round_seconds=0.5)
    assert monitoring["step_progress"] == detail["current_round"] * 100 // detail["total_rounds"]
    assert monitoring["last_completed_step"] == "starting"
    assert monitoring["started_at"] is not None
    api.fail("resume", 409, "NOT_PAUSED", simulation_id=sim)

    paused = api.ok("pause", simulation_id=sim)
    assert PAUSE_KEYS <= set(paused) <= PAUSE_KEYS | ADDED_KEYS
    assert paused["simulation_id"] == sim
    assert paused["status"] == "paused"
    assert paused["current_step"] == "monitoring"

    status = api.wait_for(sim, "paused", timeout=60)
    assert status["paused_at"] is not None
    assert status["flow_run_id"] == run_id
    api.fail("pause", 409, None, simulation_id=sim)
    wait_step_yielded(run_id, "monitoring")
    # A start while paused returns the existing run, it does not start a second one.
    again = api.ok("start", simulation_id=sim)
    assert again["flow_run_id"] == run_id and again["status"] == "paused"

    resumed = api.ok("resume", simulation_id=sim)
    assert RESUME_KEYS <= set(resumed) <= RESUME_KEYS | ADDED_KEYS
    assert resumed["simulation_id"] == sim
    assert resumed["status"] == "active"
    # The pause is not counted as slow rounds: the pace after it is the simulator's again.
    after_pause = api.wait_status(
        sim,
        lambda d: d["status"] == "completed"
        or (d["current_step"] == "monitoring" and "eta_seconds" in d["progress_detail"]
            and d["progress_detail"]["current_round"] > detail["current_round"] + 2),
        timeout=90, message="monitoring again, with an estimate",
    )  # fmt: skip
    if after_pause["status"] != "completed":
        check_estimate(after_pause["progress_detail"], round_seconds=0.5)

    done = api.wait_for(sim, "completed", timeout=COMPLETION_TIMEOUT)
    check_completed(done, run_id)
    assert stack.ledger(sim) == ONE_OF_EACH
    assert stack.run_status(sim)["runner_status"] == "completed"
    api.fail("pause", 409, "NOT_ACTIVE", simulation_id=sim)
    api.fail("resume", 409, "NOT_PAUSED", simulation_id=sim)
    check_what_prefect_shows(sim, run_id, total_rounds=40)


def check_what_prefect_shows(sim: str, run_id: str, total_rounds: int) -> None:
    """What a person sees of a run paused once, then completed, in the Prefect UI."""
    states = [
        (names.step_of_task_run(t.name), t.state.type.value, t.state.name)
        for t in task_runs(run_id)
    ]
    # The monitoring attempt that yielded to the pause is "Paused", not a red Failed.
    assert ("monitoring", "CANCELLED", "Paused") in states, states
    assert not [s for s in states if s[1] in {"FAILED", "CRASHED"}], states
    # After the resume, the steps done before it are found in their checkpoints (Cached).
    assert [s[0] for s in states if s[2] == "Completed"] == [
        "preparing", "starting", "monitoring", "generating_report", "completed",
    ], states  # fmt: skip
    found = artifacts(run_id)
    # One progress artifact for the run, left at its final word, not at a step's last one.
    (progress,) = found["progress"]
    assert progress.data == 100.0 and progress.description.startswith("completed:"), progress
    (report,) = [a for a in found["markdown"] if a.key == names.report_artifact_key(sim)]
    assert embedded_chart_size(report.data) == (900, 650)
    assert "](chart.png)" not in report.data  # nothing left that points at another disk
    (table,) = found["table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["round"] for row in rows] == list(range(1, total_rounds + 1))
    assert all(row["total_actions"] == row["twitter_actions"] + row["reddit_actions"]
               for row in rows)  # fmt: skip


def stop_and_check(api: Api, stack: Stack, sim: str, run_id: str) -> None:
    """Stop (twice: idempotent), then the run is cancelled and the simulation stopped once."""
    for _ in range(2):
        stopped = api.ok("stop", simulation_id=sim)
        assert STOP_KEYS <= set(stopped) <= STOP_KEYS | {"current_step"} | ADDED_KEYS
        assert stopped["simulation_id"] == sim
        assert stopped["status"] == "inactive"

    wait_until(
        lambda: stack.run_status(sim)["runner_status"] == "stopped",
        timeout=60,
        interval=0.25,
        message="runner_status stopped",
    )
    # Witness: the flow run ended Cancelled, never Completed.
    wait_for_state(UUID(run_id), {"CANCELLED"}, timeout=60)
    status = api.status(sim)
    check_status_shape(status)
    assert status["status"] == "inactive", status
    assert status["completed_at"] is None and status["current_step"] != "completed"
    assert status["mode"] == "auto"
    ledger = stack.ledger(sim)
    assert ledger["stop"] == 1, ledger
    assert ledger["report"] == 0, ledger
    api.ok("stop", simulation_id=sim)  # still fine once everything has ended
    assert stack.ledger(sim)["stop"] == 1


def test_stop_while_active_cancels_the_run_and_stops_the_simulation(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=600)
    run_id = start_auto(api, sim)["flow_run_id"]
    api.wait_monitoring(sim)

    stop_and_check(api, stack, sim, run_id)

    # A start after a stop begins a new run (a new generation), not the stopped one.
    restarted = api.ok("start", simulation_id=sim)
    assert restarted["flow_run_id"] != run_id
    assert restarted["status"] == "active" and restarted["generation"] >= 1
    api.ok("stop", simulation_id=sim)
    wait_for_state(UUID(restarted["flow_run_id"]), {"CANCELLED"}, timeout=60)
    wait_until(
        lambda: stack.run_status(sim)["runner_status"] in {"stopped", "idle"},
        timeout=30,
        interval=0.25,
        message="the simulation not left running",
    )


def test_stop_while_paused_cancels_the_run_and_stops_the_simulation(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=600)
    run_id = start_auto(api, sim)["flow_run_id"]
    api.wait_monitoring(sim)
    api.ok("pause", simulation_id=sim)
    api.wait_for(sim, "paused", timeout=60)

    stop_and_check(api, stack, sim, run_id)


def test_fail_then_reset_then_start_completes(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=10, faults={"fail_at_round": 2})
    first_run = start_auto(api, sim)["flow_run_id"]

    failed = api.wait_for(sim, "failed", timeout=COMPLETION_TIMEOUT)
    assert "injected failure at round 2" in failed["error"], failed
    assert failed["error_step"] == "monitoring"
    assert failed["current_step"] == "failed"
    assert failed["failed_at"] is not None and failed["completed_at"] is None
    assert failed["last_completed_step"] == "starting"
    assert failed["flow_run_id"] == first_run
    assert stack.run_status(sim)["runner_status"] == "failed"

    stack.set_faults(sim, fail_at_round=None)
    reset = api.ok("reset", simulation_id=sim)
    assert RESET_KEYS <= set(reset) <= RESET_KEYS | ADDED_KEYS
    assert reset["simulation_id"] == sim
    after_reset = api.status(sim)
    check_status_shape(after_reset)
    assert after_reset["mode"] == "auto"
    assert after_reset["status"] == "inactive"
    assert after_reset["error"] is None and after_reset["error_step"] is None

    second_run = api.ok("start", simulation_id=sim)["flow_run_id"]
    assert second_run != first_run
    done = api.wait_for(sim, "completed", timeout=COMPLETION_TIMEOUT)
    check_completed(done, second_run)
    assert stack.run_status(sim)["runner_status"] == "completed"
    ledger = stack.ledger(sim)
    assert ledger["start"] == 2 and ledger["report"] == 1 and ledger["stop"] == 0, ledger


def race(shim_url: str, endpoint: str, body: dict[str, Any], callers: int) -> list[Any]:
    """`callers` clients POST the same body at once (a barrier lines them up); every
    answer as (status code, JSON body)."""
    barrier = threading.Barrier(callers)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=shim_url, timeout=httpx.Timeout(90, connect=10)) as client:
            barrier.wait(timeout=30)
            response = client.post(f"{PREFIX}/{endpoint}", json=body)
        with lock:
            # A plain-text 500 fails here, in the racing thread, and so never answers: the
            # count check below catches it.
            answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), f"a {endpoint} never answered"
    assert len(answers) == callers, f"{endpoint}: only {len(answers)} JSON answers: {answers}"
    return answers


def test_twenty_concurrent_starts_make_one_run(api: Api, stack: Stack, shim_url: str):
    sim = stack.create_simulation(rounds=6)
    api.configure_auto(sim)
    callers = 20
    answers = race(shim_url, "start", {"simulation_id": sim}, callers)

    assert [code for code, _ in answers] == [200] * callers, answers
    data = [body["data"] for _, body in answers]
    # On a loaded box a racer may answer after the one run already finished: then it
    # reports that run's state, never a second run.
    odd = [d for d in data if d["status"] not in {"active", "completed"}]
    assert not odd, odd
    assert {d.get("generation") for d in data} == {0}
    assert all(set(d) >= START_KEYS and d["simulation_id"] == sim for d in data), data
    run_ids = {d["flow_run_id"] for d in data}
    assert len(run_ids) == 1, run_ids

    done = api.wait_for(sim, "completed", timeout=COMPLETION_TIMEOUT)
    check_completed(done, run_ids.pop())
    assert stack.ledger(sim) == ONE_OF_EACH


def one_success_and_conflicts(answers: list[Any], codes: set[str]) -> dict[str, Any]:
    """Exactly one 200; every other answer a 409 envelope with one of `codes`."""
    successes = [body for code, body in answers if code == 200]
    assert len(successes) == 1, answers
    others = [(code, body) for code, body in answers if code != 200]
    for code, body in others:
        assert code == 409, answers
        assert body["success"] is False and body["error"], body
        assert body["error_code"] in codes, body
    return dict(successes[0]["data"])


def test_ten_racing_pauses_then_ten_racing_resumes_answer_with_the_envelope(
    api: Api, stack: Stack, shim_url: str
):
    sim = stack.create_simulation(rounds=40, round_seconds=0.3)
    run_id = start_auto(api, sim)["flow_run_id"]
    api.wait_monitoring(sim)

    paused = one_success_and_conflicts(
        race(shim_url, "pause", {"simulation_id": sim}, 10), {"ALREADY_PAUSED"}
    )
    assert paused["status"] == "paused" and paused["flow_run_id"] == run_id
    api.wait_for(sim, "paused", timeout=60)

    resumed = one_success_and_conflicts(
        race(shim_url, "resume", {"simulation_id": sim}, 10), {"NOT_PAUSED"}
    )
    assert resumed["status"] == "active"

    done = api.wait_for(sim, "completed", timeout=COMPLETION_TIMEOUT)
    check_completed(done, run_id)
    assert stack.ledger(sim) == ONE_OF_EACH


def test_status_answers_while_the_worker_is_dead(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=40, round_seconds=0.25)
    run_id = start_auto(api, sim)["flow_run_id"]
    api.wait_monitoring(sim)

    stack.worker.kill(with_flow_processes=True)
    try:
        answer, took = timed(lambda: api.status(sim))
        assert took < 5, f"status took {took:.1f}s with the worker dead"
        check_status_shape(answer)
        latencies: list[float] = []
        seen: dict[str, Any] = {}

        def heartbeat_settled() -> dict[str, Any] | None:
            # The shim shows progress within ~1 s (its progress poll): let the last progress
            # written before the kill land, then the heartbeat must stand still.
            data, took = timed(lambda: api.status(sim))
            latencies.append(took)
            if data["heartbeat_at"] != seen.get("at"):
                seen.update(at=data["heartbeat_at"], since=time.monotonic())
                return None
            return data if time.monotonic() - seen["since"] >= 2.5 else None

        first = wait_until(heartbeat_settled, timeout=30, interval=0.25, message="settled")
        assert first["status"] == "active"
        assert first["flow_run_id"] == run_id
        assert isinstance(first["heartbeat_age_seconds"], float | int)

        def aged() -> dict[str, Any] | None:
            data, took = timed(lambda: api.status(sim))
            latencies.append(took)
            grown = data["heartbeat_age_seconds"] >= first["heartbeat_age_seconds"] + 2
            return data if grown else None

        later = wait_until(aged, timeout=30, interval=0.5, message="heartbeat age growing")
        assert max(latencies) < 5, f"status took up to {max(latencies):.1f}s, worker dead"
        assert later["status"] == "active"
        assert later["heartbeat_at"] == first["heartbeat_at"]
    finally:
        if not stack.worker.alive():
            stack.worker.start()

    done = api.wait_for(sim, "completed", timeout=150)
    check_completed(done, run_id)
    assert stack.ledger(sim) == ONE_OF_EACH


def test_pause_right_after_start_is_accepted_while_status_says_active(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=600)
    start_auto(api, sim)
    try:
        assert api.status(sim)["status"] == "active"
        paused = api.ok("pause", simulation_id=sim)
        assert paused["status"] == "paused"
    finally:
        api.ok("stop", simulation_id=sim)
        wait_until(
            lambda: stack.run_status(sim)["runner_status"] in {"idle", "stopped"},
            timeout=60,
            interval=0.25,
            message="simulation not left running",
        )


def test_a_run_paused_before_it_started_resumes_and_completes_once(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=6)
    start_auto(api, sim)
    paused = api.ok("pause", simulation_id=sim)
    assert paused["status"] == "paused"
    assert api.status(sim)["status"] == "paused"

    api.ok("resume", simulation_id=sim)

    check_completed(api.wait_for(sim, "completed", timeout=120))
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 0, "report": 1}
