"""MANUAL mode through the shim, the CLI and Prefect's own resume (the UI's Resume form):
one step per confirmation, waits that survive a crash, mode changes on the way, and every
other control as in auto mode. The simulator's ledger witnesses the side effects."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any
from uuid import UUID

from autopilot.worker.executors import living_executor
from tests.api.run_records import run_logs
from tests.api.shim import Api
from tests.api.test_from_step import check_completed_later
from tests.api.test_lifecycle import ONE_OF_EACH
from tests.helpers import AUTOPILOT, wait_until
from tests.stack_fixtures import Stack

NOTHING = {"prepare": 0, "start": 0, "stop": 0, "report": 0}


def start_manual(api: Api, simulation_id: str) -> dict[str, Any]:
    assert api.ok("config", simulation_id=simulation_id, mode="manual")["mode"] == "manual"
    data = api.ok("start", simulation_id=simulation_id)
    assert data["status"] == "active" and "manual mode" in data["message"], data
    return data


def wait_awaiting(api: Api, simulation_id: str, step: str, timeout: float = 120) -> dict[str, Any]:
    """The status once the run waits for a confirmation to run `step`."""
    status = api.wait_status(
        simulation_id,
        lambda d: d["status"] == "paused" and d.get("awaiting_confirmation") is True
        and d["current_step"] == step,
        timeout=timeout, message=f"waiting to run {step}",
    )  # fmt: skip
    assert step in status["step_message"] and "confirmation" in status["step_message"], status
    return status


def test_each_step_waits_for_its_confirmation_and_the_process_exits_meanwhile(
    api: Api, stack: Stack
):
    sim = stack.create_simulation(rounds=8)
    run_id = start_manual(api, sim)["flow_run_id"]

    waiting = wait_awaiting(api, sim, "starting")
    assert waiting["last_completed_step"] == "preparing" and waiting["flow_run_id"] == run_id
    # A suspension, not an in-process pause: nothing is left running while it waits.
    wait_until(lambda: living_executor(stack.data_dir, run_id) is None, timeout=30,
               message="the flow process exited")  # fmt: skip
    assert stack.ledger(sim) == {**NOTHING, "prepare": 1}
    api.fail("pause", 409, "ALREADY_PAUSED", simulation_id=sim)

    resumed = api.ok("resume", simulation_id=sim, note="agents look right")
    assert resumed["message"] == "auto-pilot resumed: starting confirmed", resumed
    wait_awaiting(api, sim, "monitoring")
    assert stack.ledger(sim) == {**NOTHING, "prepare": 1, "start": 1}

    # Prefect's own resume with the form's input, as the UI's Resume button sends it.
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(run_id), run_input={"note": "from the Prefect UI"})
    wait_awaiting(api, sim, "generating_report")
    assert stack.run_status(sim)["runner_status"] == "completed"
    assert stack.ledger(sim) == {**NOTHING, "prepare": 1, "start": 1}

    api.ok("resume", simulation_id=sim)
    check_completed_later(api, sim, run_id)
    assert stack.ledger(sim) == ONE_OF_EACH
    logs = run_logs(run_id)
    assert "manual mode: starting confirmed: agents look right" in logs
    assert "manual mode: monitoring confirmed: from the Prefect UI" in logs
    assert "manual mode: generating_report confirmed" in logs


def test_a_crash_in_a_step_neither_skips_nor_repeats_the_next_wait(api: Api, stack: Stack):
    # The backend run starts at the first confirmation and goes on while the run waits for
    # the second: it must outlast that wait, the resume and a new flow process on a loaded
    # machine (8 s did not, in a CI run), or monitoring finds it finished at once.
    sim = stack.create_simulation(rounds=40, round_seconds=1.0)
    run_id = start_manual(api, sim)["flow_run_id"]
    wait_awaiting(api, sim, "starting")
    api.ok("resume", simulation_id=sim)
    wait_awaiting(api, sim, "monitoring")
    api.ok("resume", simulation_id=sim)
    api.wait_monitoring(sim)

    pid = wait_until(lambda: living_executor(stack.data_dir, run_id), timeout=30)
    os.kill(pid, signal.SIGKILL)  # the worker restarts the run on its own id

    wait_awaiting(api, sim, "generating_report")
    assert stack.ledger(sim) == {**NOTHING, "prepare": 1, "start": 1}
    api.ok("resume", simulation_id=sim)
    status = check_completed_later(api, sim, run_id)
    assert status["retry_count"] >= 1
    assert stack.ledger(sim) == ONE_OF_EACH


def test_a_kill_between_two_steps_does_not_skip_the_wait(api: Api, stack: Stack):
    from autopilot.run import crashpoints

    sim = stack.create_simulation(rounds=8)
    crashpoints.arm(stack.data_dir, sim, "step-boundary")  # right after preparing executed
    run_id = start_manual(api, sim)["flow_run_id"]

    waiting = wait_awaiting(api, sim, "starting")
    assert waiting["flow_run_id"] == run_id and waiting["retry_count"] >= 1  # it was restarted
    assert stack.ledger(sim) == {**NOTHING, "prepare": 1}
    api.ok("resume", simulation_id=sim)
    wait_awaiting(api, sim, "monitoring")
    api.ok("config", simulation_id=sim, mode="auto")
    api.ok("resume", simulation_id=sim)
    check_completed_later(api, sim, run_id)
    assert stack.ledger(sim) == ONE_OF_EACH


def test_the_mode_can_change_while_waiting_and_during_an_auto_run(api: Api, stack: Stack):
    # manual → auto while waiting: the rest runs unattended after the next resume.
    first = stack.create_simulation(rounds=6)
    run_id = start_manual(api, first)["flow_run_id"]
    wait_awaiting(api, first, "starting")
    api.ok("config", simulation_id=first, mode="auto")
    api.ok("resume", simulation_id=first)
    check_completed_later(api, first, run_id)
    assert stack.ledger(first) == ONE_OF_EACH

    # auto → manual during a run: it waits after the current step; the CLI confirms.
    second = stack.create_simulation(rounds=40, round_seconds=0.5)  # outlasts the switch
    api.configure_auto(second)
    run_id = api.ok("start", simulation_id=second)["flow_run_id"]
    api.wait_monitoring(second)
    api.ok("config", simulation_id=second, mode="manual")
    wait_awaiting(api, second, "generating_report")
    assert stack.ledger(second) == {**NOTHING, "prepare": 1, "start": 1}
    env = {**os.environ, "AUTOPILOT_BACKEND_URL": stack.simulator_url}
    result = subprocess.run(
        [*AUTOPILOT, "resume", second, "--note", "report now", "--json"], env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generating_report confirmed" in result.stdout
    check_completed_later(api, second, run_id)
    assert stack.ledger(second) == ONE_OF_EACH


def test_stop_reset_and_force_start_work_while_waiting(api: Api, stack: Stack):
    sim = stack.create_simulation(rounds=400, round_seconds=0.2)
    start_manual(api, sim)
    wait_awaiting(api, sim, "starting")
    api.ok("resume", simulation_id=sim)
    wait_awaiting(api, sim, "monitoring")  # the simulation runs on the backend meanwhile

    stopped = api.ok("stop", simulation_id=sim)
    assert stopped["status"] == "inactive"
    wait_until(lambda: stack.run_status(sim)["runner_status"] == "stopped", timeout=30)
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 1, "report": 0}
    assert api.status(sim)["status"] == "inactive"

    api.ok("reset", simulation_id=sim)
    assert api.status(sim)["mode"] == "manual"  # reset keeps the mode
    forced = api.ok("start", simulation_id=sim, force=True)
    wait_awaiting(api, sim, "starting")
    assert api.status(sim)["generation"] == forced["generation"]
    api.ok("stop", simulation_id=sim)
    assert stack.ledger(sim) == {"prepare": 1, "start": 1, "stop": 1, "report": 0}
