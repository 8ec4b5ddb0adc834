"""Every `MultimoClient` method against the real bundled simulator, over HTTP on loopback.

One simulator subprocess serves the whole module; each test makes its own simulations, so
the tests do not depend on each other's order. No mocks: outcomes are what the server says.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from autopilot.backend_models import PrepareStatus, Report, RunStatus
from autopilot.client import MultimoClient
from autopilot.errors import BackendRejected, BackendUnavailable, NotFound
from tests.helpers import free_port, kill_leftover_runs, start_simulator, stop_process, wait_until

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROUND_SECONDS = 0.05


@dataclass
class Backend:
    base_url: str
    data_dir: Path
    control: httpx.Client

    def set_faults(self, simulation_id: str, **switches: Any) -> None:
        """Simulator-only fault switches (`/api/sim/faults` is never itself faulted)."""
        response = self.control.post(
            "/api/sim/faults", json={"simulation_id": simulation_id, **switches}
        )
        assert response.status_code == 200, response.text

    def ledger_counts(self, simulation_id: str) -> dict[str, int]:
        response = self.control.get("/api/sim/ledger", params={"simulation_id": simulation_id})
        assert response.status_code == 200, response.text
        return dict(response.json()["data"]["counts"])


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp("client-simulator")
    port = free_port()
    proc = start_simulator(
        data_dir, port, round_seconds=ROUND_SECONDS, prepare_seconds=0.2, report_seconds=0.2
    )
    base_url = f"http://127.0.0.1:{port}"
    control = httpx.Client(base_url=base_url, timeout=10.0)
    try:
        yield Backend(base_url, data_dir, control)
    finally:
        control.close()
        stop_process(proc)
        kill_leftover_runs(data_dir)


@pytest.fixture
def client(backend: Backend) -> Iterator[MultimoClient]:
    with MultimoClient(backend.base_url, timeout=10.0, connect_timeout=2.0) as multimo:
        yield multimo


def _prepared(client: MultimoClient, **fields: Any) -> str:
    fields.setdefault("agents", 20)
    fields.setdefault("total_simulation_hours", 6)
    sim_id = client.create_simulation(**fields)
    task_id = client.prepare(sim_id).task_id
    wait_until(
        lambda: client.prepare_status(sim_id, task_id).succeeded, timeout=10, message="prepared"
    )
    return sim_id


def _run_to_end(client: MultimoClient, sim_id: str, timeout: float = 15) -> RunStatus:
    def finished() -> RunStatus | None:
        status = client.run_status(sim_id)
        assert status.runner_status not in ("failed", "stopped"), status
        return status if status.runner_status == "completed" else None

    return wait_until(finished, timeout=timeout, message=f"{sim_id} run completed")


# -- simulations ---------------------------------------------------------------------------


def test_create_and_get_simulation(client: MultimoClient) -> None:
    sim_id = client.create_simulation(agents=10, total_simulation_hours=3, minutes_per_round=30)

    info = client.get_simulation(sim_id)

    assert sim_id.startswith("sim_")
    assert info.simulation_id == sim_id
    assert info.status == "created"


def test_get_unknown_simulation_is_not_found(client: MultimoClient) -> None:
    with pytest.raises(NotFound) as info:
        client.get_simulation("sim_doesnotexist0")
    assert "not found" in str(info.value)
    assert not isinstance(info.value, BackendUnavailable)


def test_create_with_invalid_fields_is_rejected(client: MultimoClient) -> None:
    with pytest.raises(BackendRejected) as info:
        client.create_simulation(agents=0)
    assert info.value.backend_status == 400
    assert "agents" in str(info.value)


# -- preparation ---------------------------------------------------------------------------


def test_prepare_then_status_with_both_ids_until_ready(
    client: MultimoClient, backend: Backend
) -> None:
    sim_id = client.create_simulation(agents=20, total_simulation_hours=4)
    before = client.prepare_status(sim_id)
    assert (before.status, before.succeeded) == ("not_started", False)

    accepted = client.prepare(sim_id)
    assert accepted.task_id and not accepted.already_prepared
    seen: list[PrepareStatus] = []

    def ready() -> PrepareStatus | None:
        status = client.prepare_status(sim_id, accepted.task_id)
        seen.append(status)
        assert status.status != "failed", status
        return status if status.succeeded else None

    final = wait_until(ready, timeout=10, message="preparation completed")

    assert final.status == "completed" and final.progress == 100
    assert final.task_id == accepted.task_id and final.already_prepared
    assert all(s.status in ("pending", "processing", "completed") for s in seen)
    assert not any(s.succeeded for s in seen[:-1])
    by_sim = client.prepare_status(sim_id)
    assert (by_sim.status, by_sim.progress, by_sim.succeeded) == ("ready", 100, True)
    assert client.get_simulation(sim_id).status == "ready"
    # A prepared simulation is not prepared again (no second task, no second ledger entry).
    again = client.prepare(sim_id)
    assert again.already_prepared and again.task_id is None
    assert backend.ledger_counts(sim_id)["prepare"] == 1


def test_a_failed_preparation_has_not_succeeded(client: MultimoClient) -> None:
    sim_id = client.create_simulation(
        agents=10, total_simulation_hours=3, faults={"fail_prepare": True}
    )
    task_id = client.prepare(sim_id).task_id

    def failed_status() -> PrepareStatus | None:
        status = client.prepare_status(sim_id, task_id)
        return status if status.status == "failed" else None

    failed = wait_until(failed_status, timeout=10, message="preparation failed")

    assert not failed.succeeded
    assert failed.failure == failed.error == "injected preparation failure"
    # The multimo quirk the client works around: by simulation id alone the failure hides.
    hidden = client.prepare_status(sim_id)
    assert (hidden.status, hidden.succeeded) == ("not_started", False)


def test_prepare_unknown_simulation_is_not_found(client: MultimoClient) -> None:
    with pytest.raises(NotFound):
        client.prepare("sim_doesnotexist0")
    with pytest.raises(NotFound):
        client.prepare_status("sim_doesnotexist0")


# -- running -------------------------------------------------------------------------------


def test_run_status_before_start_is_idle(client: MultimoClient) -> None:
    sim_id = _prepared(client)

    status = client.run_status(sim_id)

    assert status.runner_status == "idle"
    assert (status.current_round, status.total_rounds, status.total_actions_count) == (0, 0, 0)
    assert status.updated_at is None and status.error is None


def test_start_runs_to_completion_with_all_run_status_fields(client: MultimoClient) -> None:
    sim_id = _prepared(client, agents=30, total_simulation_hours=12)

    accepted = client.start(sim_id, max_rounds=5)
    final = _run_to_end(client, sim_id)

    assert accepted.simulation_id == sim_id
    assert accepted.runner_status == "running" and accepted.total_rounds == 5
    assert final.simulation_id == sim_id
    assert final.current_round == final.total_rounds == 5
    assert final.progress_percent == 100.0
    assert final.twitter_actions_count > 0 and final.reddit_actions_count > 0
    assert final.total_actions_count == final.twitter_actions_count + final.reddit_actions_count
    assert final.error is None and final.updated_at
    # The documented quirk: the simulation's own status stays "running" after completion.
    assert client.get_simulation(sim_id).status == "running"


def test_start_unprepared_is_rejected(client: MultimoClient) -> None:
    sim_id = client.create_simulation(agents=10, total_simulation_hours=3)
    with pytest.raises(BackendRejected) as info:
        client.start(sim_id)
    assert info.value.backend_status == 400
    assert "not prepared" in str(info.value)


def test_second_start_while_running_is_rejected_then_stop(
    client: MultimoClient, backend: Backend
) -> None:
    # A per-simulation slow round keeps this run alive for the whole test.
    sim_id = _prepared(client, agents=10, total_simulation_hours=50, round_seconds=1.0)
    client.start(sim_id)
    wait_until(
        lambda: client.run_status(sim_id).runner_status == "running", timeout=5, message="running"
    )

    with pytest.raises(BackendRejected) as info:
        client.start(sim_id)
    assert info.value.backend_status == 400
    assert "already running" in str(info.value)

    client.stop(sim_id)

    assert client.run_status(sim_id).runner_status == "stopped"
    assert client.get_simulation(sim_id).status == "stopped"
    assert backend.ledger_counts(sim_id) == {"prepare": 1, "start": 1, "stop": 1, "report": 0}
    # Stopping again is refused: the run is no longer running.
    with pytest.raises(BackendRejected) as again:
        client.stop(sim_id)
    assert again.value.backend_status == 400
    assert "not running" in str(again.value)


def test_stop_when_never_started_is_rejected(client: MultimoClient) -> None:
    sim_id = client.create_simulation(agents=10, total_simulation_hours=3)
    with pytest.raises(BackendRejected) as info:
        client.stop(sim_id)
    assert info.value.backend_status == 400


# -- reports -------------------------------------------------------------------------------


def test_report_generation_until_completed(client: MultimoClient, backend: Backend) -> None:
    sim_id = _prepared(client, agents=30, total_simulation_hours=6)
    assert client.list_reports(sim_id) == []
    assert client.find_completed_report(sim_id) is None
    assert client.report_generation_status(sim_id) is None  # no task in progress: a 404
    with pytest.raises(BackendRejected) as early:
        client.generate_report(sim_id)  # the run has not completed (never started)
    assert "not completed" in str(early.value)
    client.start(sim_id)
    _run_to_end(client, sim_id)

    accepted = client.generate_report(sim_id)
    assert accepted.report_id and accepted.task_id and not accepted.already_generated

    def completed() -> Any:
        status = client.report_generation_status(sim_id)
        assert status is not None, "report task vanished (it failed)"
        return status if status.status == "completed" else None

    final = wait_until(completed, timeout=10, message="report completed")

    assert final.report_id == accepted.report_id and final.progress == 100
    report = client.get_report(accepted.report_id)
    assert isinstance(report, Report)
    assert report.status == "completed" and report.simulation_id == sim_id
    assert report.chart_path and report.markdown_content
    assert "](chart.png)" in report.markdown_content  # relative: next to report.md
    chart = Path(report.chart_path)
    assert chart.is_file() and chart.read_bytes().startswith(PNG_SIGNATURE)
    assert chart.resolve().is_relative_to(backend.data_dir.resolve())

    listed = client.list_reports(sim_id)
    assert [r.report_id for r in listed] == [accepted.report_id]
    found = client.find_completed_report(sim_id)
    assert found is not None and found.report_id == accepted.report_id
    # Asking again returns the existing report instead of generating a second one.
    again = client.generate_report(sim_id)
    assert again.already_generated and again.report_id == accepted.report_id
    assert backend.ledger_counts(sim_id) == {
        "prepare": 1, "start": 1, "stop": 0, "report": 1, "report_repeat": 1,
    }  # fmt: skip

    # Forced, a second report of the same run is made; meanwhile the status by simulation
    # names the earlier, completed one (multimo's order), and only the new report's own
    # record tells how it goes.
    forced = client.generate_report(sim_id, force_regenerate=True)
    assert not forced.already_generated and forced.report_id != accepted.report_id
    status = client.report_generation_status(sim_id)
    assert status is not None and status.report_id == accepted.report_id
    wait_until(
        lambda: client.get_report(forced.report_id).status == "completed", timeout=10,
        message="second report completed",
    )  # fmt: skip
    assert {r.report_id for r in client.list_reports(sim_id)} == {
        accepted.report_id, forced.report_id,
    }  # fmt: skip
    assert backend.ledger_counts(sim_id)["report"] == 2


def test_get_unknown_report_is_not_found(client: MultimoClient) -> None:
    with pytest.raises(NotFound):
        client.get_report("report_doesnotexist")


# -- faults --------------------------------------------------------------------------------


def test_503_fault_is_backend_unavailable_then_recovers(
    client: MultimoClient, backend: Backend
) -> None:
    sim_id = client.create_simulation(agents=10, total_simulation_hours=3)
    backend.set_faults(sim_id, unavailable_requests=2)

    errors = []
    for _ in range(2):
        with pytest.raises(BackendUnavailable) as info:
            client.get_simulation(sim_id)
        errors.append(info.value)

    assert all(isinstance(e, BackendUnavailable) and "503" in str(e) for e in errors)
    assert "simulator unavailable" in str(errors[0])
    assert client.get_simulation(sim_id).status == "created"


def test_answer_slower_than_timeout_is_backend_unavailable(backend: Backend) -> None:
    with MultimoClient(backend.base_url, timeout=0.3, connect_timeout=2.0) as fast:
        sim_id = fast.create_simulation(agents=10, total_simulation_hours=3)
        backend.set_faults(sim_id, delay_seconds=1.5)
        try:
            with pytest.raises(BackendUnavailable) as info:
                fast.run_status(sim_id)
        finally:
            backend.set_faults(sim_id, delay_seconds=None)

        assert "timed out" in str(info.value)
        assert f"/api/simulation/{sim_id}/run-status" in str(info.value)
        # The same client works again once the backend answers in time.
        assert fast.run_status(sim_id).runner_status == "idle"
