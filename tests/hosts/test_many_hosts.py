"""Many hosts on one Prefect server on PostgreSQL: a dead host's run completes on another,
a restarting worker never touches another host's living runs, a stalled process is fenced.

Each host is a worker with its own process tree, data dir and identity (tests/hosts/cluster.py).
The side effects are counted in the simulator's ledger: one prepare, one start and one report
per generation, whatever dies.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from autopilot.run import crashpoints
from autopilot.worker.executors import process_state
from autopilot.worker.vouch import is_vouching
from tests.conftest import SESSION_DIR
from tests.helpers import wait_until
from tests.hosts.cluster import (
    DEPLOYMENT,
    TIMINGS,
    Cluster,
    Host,
    cluster_on_postgres,
    hosts_of,
    lease_of,
    state_history,
)
from tests.prefect_stack import launch, running_task, wait_for_state

ONE_OF_EACH = {"prepare": 1, "start": 1, "stop": 0, "report": 1}


@pytest.fixture(scope="module")
def shared() -> Iterator[Cluster]:
    # Long enough preparations and reports that a host can be killed in the middle of one.
    simulator = {"round_seconds": 0.2, "prepare_seconds": 10, "report_seconds": 8}
    with cluster_on_postgres(SESSION_DIR / "hosts", dict(os.environ), simulator) as cluster:
        yield cluster


@pytest.fixture
def cluster(shared: Cluster) -> Iterator[Cluster]:
    with hosts_of(shared) as cluster:
        yield cluster


def started_on(host: Host, cluster: Cluster, rounds: int) -> tuple[str, object]:
    """A simulation whose auto-pilot runs on `host` (the only host up when it starts)."""
    sim = cluster.create_simulation(rounds=rounds)
    run_id = launch(sim, deployment=DEPLOYMENT)
    # The flow's own mark: a worker's vouching mark (its process still starting) may come
    # first, with the worker's pid and a beat of the worker's.
    wait_until(
        lambda: (mark := lease_of(run_id)) is not None and mark.host == host.name
        and not is_vouching(mark),
        timeout=60, interval=0.2, message=f"the run's lease held by {host.name}",
    )  # fmt: skip
    return sim, run_id


@pytest.mark.parametrize("step", ["preparing", "monitoring", "generating_report"])
def test_a_host_killed_in_each_step_leaves_its_run_to_complete_on_another(cluster, step):
    a = cluster.host(f"a-{step}").start()
    sim, run_id = started_on(a, cluster, rounds=40)
    b = cluster.host(f"b-{step}").start()
    wait_until(lambda: running_task(run_id) == step, timeout=90, interval=0.1, message=step)
    killed_at = time.time()
    a.kill()

    run = wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    assert cluster.ledger(sim) == ONE_OF_EACH
    mark = lease_of(run.id)
    assert mark is not None and mark.host == b.name
    crashed = [state for state in state_history(run.id) if state.type.value == "CRASHED"]
    assert len(crashed) == 1 and "lease lapsed" in (crashed[0].message or "")
    noticed = crashed[0].timestamp.timestamp() - killed_at
    print(f"host killed in {step}: noticed after {noticed:.1f}s")


def test_a_worker_restarting_on_one_host_leaves_another_host_s_runs_alone(cluster):
    a = cluster.host("a-restart").start()
    b = cluster.host("b-restart").start()
    b.worker.stop()  # B goes down before the run starts, so A takes it
    sim, run_id = started_on(a, cluster, rounds=120)
    executor = lease_of(run_id)
    b.start()  # its start-up recovery and sweeps see A's run RUNNING
    # Two windows of B's sweeps while A's run goes on.
    beat = executor.beat if executor else 0
    wait_until(
        lambda: (mark := lease_of(run_id)) is not None and mark.beat >= beat + 14,
        timeout=60, interval=0.5, message="14 more renewals by A",
    )  # fmt: skip
    run = wait_for_state(run_id, {"COMPLETED"}, timeout=120)
    assert [s.type.value for s in state_history(run.id) if s.type.value == "CRASHED"] == []
    final = lease_of(run.id)
    assert final is not None and executor is not None
    assert (final.host, final.pid) == (a.name, executor.pid)
    assert cluster.ledger(sim) == ONE_OF_EACH


def test_a_stalled_process_that_lost_its_run_does_not_act_when_it_wakes(cluster):
    a = cluster.host("a-stall").start()
    sim = cluster.create_simulation(rounds=10)
    # A's process will freeze itself right before it asks the backend to prepare.
    crashpoints.arm(a.data_dir, sim, "prepare-about-to-request", action="stall")
    run_id = launch(sim, deployment=DEPLOYMENT)
    frozen = wait_until(
        lambda: next((p for p in a.flow_processes() if process_state(p) == "T"), None),
        timeout=60, interval=0.2, message="A's flow process frozen",
    )  # fmt: skip
    a.signal_all(signal.SIGSTOP)  # the whole host stalls (a partition, a frozen VM)
    since = cluster.backend_log_size()
    b = cluster.host("b-stall").start()
    # B took the run over and is preparing (the backend has no guard against a second one).
    wait_until(lambda: cluster.ledger(sim)["prepare"] == 1, timeout=90, message="B prepares")

    a.signal_all(signal.SIGCONT)  # A wakes up, still believing it is about to prepare
    wait_until(lambda: process_state(frozen) is None, timeout=30, message="A's process gone")
    run = wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    assert lease_of(run.id).host == b.name
    assert cluster.ledger(sim) == ONE_OF_EACH
    assert cluster.backend_calls("POST /api/simulation/prepare", since) == 1  # B's alone
    assert "was taken over before POST /api/simulation/prepare" in a.log()


def test_a_prefect_outage_longer_than_the_lease_window_is_no_death(cluster):
    a = cluster.host("a-outage").start()
    sim, run_id = started_on(a, cluster, rounds=150)
    b = cluster.host("b-outage").start()
    executor = lease_of(run_id)
    failed = {host.name: host.failed_sweeps() for host in (a, b)}

    start_again = cluster.stop_prefect()
    down_at = time.monotonic()
    # Down for more than the lease window, and long enough that both hosts saw it (at least
    # two failed sweeps each): no run could renew its lease meanwhile.
    outage = 2 * float(TIMINGS["AUTOPILOT_LEASE_WINDOW"])
    wait_until(
        lambda: time.monotonic() - down_at >= outage
        and all(h.failed_sweeps() >= failed[h.name] + 2 for h in (a, b)),
        timeout=180, interval=0.5, message=f"an outage of {outage:.0f}s seen by each host",
    )  # fmt: skip
    start_again()

    run = wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    assert [s.type.value for s in state_history(run.id) if s.type.value == "CRASHED"] == []
    final = lease_of(run.id)
    assert final is not None and executor is not None
    assert (final.host, final.pid) == (a.name, executor.pid)
    assert cluster.ledger(sim) == ONE_OF_EACH
