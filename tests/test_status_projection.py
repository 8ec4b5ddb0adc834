"""The status projection from Prefect records, tested without Prefect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autopilot.api_models import Mode, Status
from autopilot.models import SimulationConfig
from autopilot.service.projection import (
    ProgressRecord,
    RunSnapshot,
    StepRecord,
    clean_error,
    is_active,
    no_state,
    project,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def run(state_type: str, steps: list[tuple[str, str]], **fields) -> RunSnapshot:
    snapshot = RunSnapshot(
        flow_run_id="run-1",
        generation=fields.pop("generation", 0),
        state_type=state_type,
        state_name=fields.pop("state_name", state_type.title()),
        state_message=fields.pop("state_message", None),
        state_timestamp=fields.pop("state_timestamp", NOW),
        created=NOW - timedelta(minutes=5),
        start_time=NOW - timedelta(minutes=4),
        end_time=fields.pop("end_time", None),
        run_count=fields.pop("run_count", 1),
        steps=[StepRecord(name, state, state.title(), **fields) for name, state in steps],
    )
    return snapshot


def test_unknown_simulation_has_the_no_state_shape():
    assert set(no_state("sim_x").model_dump()) == {
        "simulation_id",
        "mode",
        "status",
        "available",
        "message",
    }
    assert no_state("sim_x").status == "inactive"


def test_monitoring_progress_comes_from_the_artifact():
    snapshot = run("RUNNING", [("preparing", "COMPLETED"), ("starting", "COMPLETED"),
                               ("monitoring", "RUNNING")])  # fmt: skip
    snapshot.progress = ProgressRecord(
        percent=41,
        step="monitoring",
        detail={"current_round": 5, "total_rounds": 12, "twitter_actions": 3, "reddit_actions": 4},
        summary="round 5/12",
        updated=NOW - timedelta(seconds=2),
    )
    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), snapshot, now=NOW)
    assert status.status is Status.ACTIVE
    assert status.current_step == "monitoring"
    assert status.last_completed_step == "starting"
    assert status.step_progress == 41
    assert status.progress_detail["total_rounds"] == 12
    assert status.heartbeat_age_seconds == 0.0  # the state change is newer than the artifact


def test_failed_run_reports_the_real_step_and_the_backend_text():
    snapshot = run(
        "FAILED",
        [("preparing", "COMPLETED"), ("starting", "COMPLETED"), ("monitoring", "FAILED")],
        state_message="Flow run encountered an exception: StepFailed: simulation failed: "
        "injected failure at round 3",
        end_time=NOW,
    )
    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), snapshot, now=NOW)
    assert status.status is Status.FAILED
    assert status.error_step == "monitoring"
    assert status.error == "simulation failed: injected failure at round 3"
    assert status.failed_at == NOW


def test_an_interrupted_step_is_the_current_step_not_an_error():
    snapshot = run("PAUSED", [("preparing", "COMPLETED"), ("starting", "COMPLETED")])
    snapshot.steps.append(StepRecord("monitoring", "FAILED", "Failed", interrupted=True))
    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), snapshot, now=NOW)
    assert status.status is Status.PAUSED
    assert status.current_step == "monitoring"
    assert status.error is None and status.error_step is None
    assert status.paused_at == NOW


def test_a_reset_hides_the_old_generation_and_keeps_the_mode():
    snapshot = run("FAILED", [("monitoring", "FAILED")], generation=0)
    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=1), snapshot, now=NOW)
    assert status.status is Status.INACTIVE
    assert status.mode is Mode.AUTO
    assert status.error is None and status.generation == 1


def test_a_crash_is_active_until_nobody_restarts_it():
    fresh = run("CRASHED", [], state_timestamp=NOW - timedelta(seconds=5))
    stale = run("CRASHED", [], state_timestamp=NOW - timedelta(minutes=10))
    assert is_active(fresh, NOW) and not is_active(stale, NOW)
    assert (
        project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), stale, now=NOW).status
        is Status.FAILED
    )


def test_completed_run_is_at_full_progress():
    snapshot = run("COMPLETED", [(s, "COMPLETED") for s in
                                 ["preparing", "starting", "monitoring", "generating_report",
                                  "completed"]], end_time=NOW)  # fmt: skip
    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), snapshot, now=NOW)
    assert (status.current_step, status.step_progress) == ("completed", 100)
    assert status.last_completed_step == "completed"
    assert status.completed_at == NOW


def test_clean_error_keeps_plain_text():
    assert clean_error("simulation stalled: no progress") == "simulation stalled: no progress"
    assert clean_error(None) is None


def final_progress() -> ProgressRecord:
    detail = {"current_round": 24, "total_rounds": 24, "twitter_actions": 90, "reddit_actions": 70}
    return ProgressRecord(100, "completed", detail, "completed: 24/24 rounds", NOW)


def test_a_completed_run_read_before_its_step_records_landed_is_completed_throughout():
    # The race seen on a loaded box: the flow run is Completed while the task-run records
    # (written through Prefect's event pipeline) still show the report step running and no
    # `completed` step at all.
    snapshot = run("COMPLETED", [("preparing", "COMPLETED"), ("starting", "COMPLETED"),
                                 ("monitoring", "COMPLETED"), ("generating_report", "RUNNING")],
                   end_time=NOW)  # fmt: skip
    snapshot.progress = final_progress()

    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), snapshot, now=NOW)

    assert (status.status, status.current_step, status.last_completed_step) == (
        Status.COMPLETED,
        "completed",
        "completed",
    )
    assert status.step_progress == 100
    assert status.progress_detail["current_round"] == 24
    assert status.completed_at == NOW


def test_a_failed_run_names_the_step_it_recorded_even_before_the_task_record_lands():
    # The report step failed; its task-run record, and the monitor's completion, have not
    # landed yet.
    snapshot = run("FAILED", [("preparing", "COMPLETED"), ("starting", "COMPLETED"),
                              ("monitoring", "RUNNING")],
                   state_message="StepFailed: report generation failed: boom")  # fmt: skip
    snapshot.progress = ProgressRecord(
        0, "failed", {"error_step": "generating_report", "error": "boom"}, "x", NOW
    )

    status = project("sim_1", SimulationConfig(mode=Mode.AUTO, generation=0), snapshot, now=NOW)

    assert status.status is Status.FAILED
    assert status.error_step == "generating_report"
    assert status.error == "report generation failed: boom"


def test_after_a_stop_status_says_stopped_not_reset():
    snapshot = run("CANCELLED", [("monitoring", "COMPLETED")], generation=0)
    stopped = SimulationConfig(mode=Mode.AUTO, generation=1, begun_by="stop")
    reset = SimulationConfig(mode=Mode.AUTO, generation=1, begun_by="reset")
    assert project("sim_1", stopped, snapshot, now=NOW).message == "auto-pilot was stopped"
    assert project("sim_1", reset, snapshot, now=NOW).message == "auto-pilot was reset"
