"""A worker vouches for the flow processes of its host that are still starting (PENDING, or
RUNNING before their first lease mark): under a start storm they were declared dead and taken
over (many_hosts_load on f58ede4: 28 takeovers of living runs in 8 minutes). Once the process
is gone, the run is judged as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType
from prefect.states import Pending, Running

from autopilot.liveness import LeaseMark, short_state
from autopilot.names import LEASE_LABEL
from autopilot.worker.executors import flow_processes_here
from autopilot.worker.vouch import VOUCHED, is_vouching, starting
from tests.helpers import wait_until
from tests.prefect_stack import accepted_and_never_started, read_flow_run, wait_for_state
from tests.stack_fixtures import named_stack

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


@contextmanager
def starting_process(flow_run_id: UUID) -> Iterator[subprocess.Popen[bytes]]:
    """A process of this host that Prefect would have started for the run (its id in the
    environment, as a runner sets it) and that has not got far yet."""
    env = {**os.environ, "PREFECT__FLOW_RUN_ID": str(flow_run_id)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_processes_here_are_found_by_their_run_id_unless_frozen():
    run_id = uuid4()
    with starting_process(run_id) as proc:
        wait_until(lambda: flow_processes_here().get(run_id) == proc.pid, timeout=10)
        proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: run_id not in flow_processes_here(), timeout=10)
        proc.send_signal(signal.SIGCONT)
        wait_until(lambda: run_id in flow_processes_here(), timeout=10)
    assert run_id not in flow_processes_here()


def test_which_runs_are_starting():
    def run(state: State, mark: str | None = None):  # type: ignore[no-untyped-def]
        from prefect.client.schemas.objects import FlowRun

        labels = {LEASE_LABEL: mark} if mark else {}
        return FlowRun(flow_id=uuid4(), state=state, labels=labels)

    running = Running()
    own = LeaseMark("h", 1, 1, short_state(running.id), 3).render()
    vouched = LeaseMark("h", 1, 1, VOUCHED + short_state(running.id), 3).render()
    older = LeaseMark("h", 1, 1, short_state(uuid4()), 3).render()
    assert starting(run(Pending()))
    assert starting(run(running)) and starting(run(running, vouched))
    assert starting(run(running, older))  # a mark of an earlier stint
    assert not starting(run(running, own))  # the flow renews its own lease: judged by it


def test_a_starting_run_is_vouched_for_until_its_process_is_gone(prefect_server, simulator):
    with named_stack(
        "vouching", *simulator, AUTOPILOT_LEASE_WINDOW="8", AUTOPILOT_LEASE_RENEW_EVERY="1"
    ) as stack:
        sim = stack.create_simulation(rounds=3)
        # Accepted by a runner on this host, its process still importing: no mark yet.
        run_id = accepted_and_never_started(sim, "auto-pilot/vouching")

        def mark() -> LeaseMark | None:
            return LeaseMark.parse(read_flow_run(run_id).labels.get(LEASE_LABEL))

        with starting_process(run_id) as proc:
            first = wait_until(mark, timeout=30, message="a vouching mark")
            assert first.pid == proc.pid and is_vouching(first)
            # Well past what a PENDING run is allowed without a sign of life (3 windows: 24 s,
            # on the server's clock too), the worker sweeping every 3 s.
            wait_until(lambda: (m := mark()) and m.beat >= first.beat + 12, timeout=120,
                       interval=1, message="twelve more vouching beats")  # fmt: skip
            assert crashed_states(run_id) == []
            assert read_flow_run(run_id).state.type == StateType.PENDING
        # The process is gone: nobody vouches, the run is taken over and completes.
        wait_for_state(run_id, {"COMPLETED"}, timeout=180)
        assert [s.message for s in crashed_states(run_id)] == [
            "its lease lapsed: no sign of life for 8s"
        ]
        assert stack.ledger(sim) == ONE_OF_EACH


def crashed_states(flow_run_id: UUID) -> list[State]:
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return [state for state in states if state.type == StateType.CRASHED]


def test_runs_this_workers_runner_accepted_are_vouched_for_with_no_process_yet(
    prefect_server, session_worker
):
    """What the worker's process sees when its runner accepts a run but has not spawned its
    process yet (minutes under a start storm), through Prefect's own StateProposer."""
    import anyio
    from prefect.client.orchestration import get_client as get_async_client
    from prefect.runner._state_proposer import StateProposer
    from prefect.states import Cancelled, Scheduled

    from autopilot.worker.accepted import accepted_here, note_runner_acceptances
    from autopilot.worker.vouch import vouch_for_starting

    assert note_runner_acceptances()

    async def accept_then_vouch() -> tuple[UUID, set[UUID], LeaseMark | None]:
        async with get_async_client() as client:
            deployment = await client.read_deployment_by_name("auto-pilot/local")
            # Far in the future: no runner of the session picks it up meanwhile.
            later = Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1))
            run = await client.create_flow_run_from_deployment(
                deployment.id, parameters={"simulation_id": "sim_never"}, state=later
            )
            try:
                assert await StateProposer(client=client).propose_pending(run)
                assert run.id in accepted_here()
                pending = await client.read_flow_run(run.id)
                vouched = await vouch_for_starting(client, [pending], "this-host", accepted_here())
                marked = await client.read_flow_run(run.id)
                return run.id, vouched, LeaseMark.parse(marked.labels.get(LEASE_LABEL))
            finally:
                await client.set_flow_run_state(run.id, Cancelled(), force=True)

    run_id, vouched, mark = anyio.run(accept_then_vouch)
    assert vouched == {run_id}
    assert mark is not None and mark.host == "this-host" and mark.pid == os.getpid()
    assert is_vouching(mark)
