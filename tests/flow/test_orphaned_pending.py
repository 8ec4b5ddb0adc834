"""A run left PENDING by a runner that died while starting it (no process, no lease) is
taken over and completes: judged by its age on the Prefect server's clock."""

from __future__ import annotations

from prefect.client.orchestration import get_client

from tests.prefect_stack import accepted_and_never_started, read_flow_run, wait_for_state
from tests.stack_fixtures import named_stack

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


def test_a_run_left_pending_by_a_dead_runner_is_taken_over_and_completes(prefect_server, simulator):
    # A 10 s window: a PENDING run gets 30 s to start its process before it counts as
    # orphaned (the worker sweeps every 3 s; a window must span a few sweeps on a loaded box).
    with named_stack(
        "orphaned-pending",
        *simulator,
        AUTOPILOT_LEASE_WINDOW="10",
        AUTOPILOT_LEASE_RENEW_EVERY="1",
    ) as stack:
        sim = stack.create_simulation(rounds=4)
        # What a runner that died right after accepting the run leaves: no process will ever
        # propose Running.
        run_id = accepted_and_never_started(sim, "auto-pilot/orphaned-pending")
        done = wait_for_state(run_id, {"COMPLETED"}, timeout=120)
        history = [s for s in read_states(done.id) if s.type.value == "CRASHED"]
        assert [s.message for s in history] == ["its lease lapsed: no sign of life for 10s"]
        assert stack.ledger(sim) == ONE_OF_EACH
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("auto-pilot/orphaned-pending")
        assert read_flow_run(done.id).deployment_id == deployment.id


def read_states(flow_run_id):  # type: ignore[no-untyped-def]
    with get_client(sync_client=True) as client:
        return client.read_flow_run_states(flow_run_id)
