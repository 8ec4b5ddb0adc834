"""A worker vouches for the flow processes of its own host that have not marked their lease yet.

Between the runner accepting a run (PENDING) and the flow's first lease mark (written once it
began its attempt, RUNNING) lie the process start, Prefect's imports and the flow's loading: a
few seconds on a quiet host, minutes when a host starts a hundred runs at once on two cores
(`benchmarks/many_hosts_load.py`: runs PENDING for 100 s, RUNNING 28 s before their first
mark). Judged by their unchanged lease, such runs were declared dead and taken over, and the
takeovers' new processes loaded the host further.

So each sweep writes, for every PENDING run, and every RUNNING run without a mark of its
current Running stint, whose flow process is alive here (found by Prefect's own
`PREFECT__FLOW_RUN_ID` in its environment, `executors.flow_processes_here`), a mark naming
this host, that pid and a beat of its own (its state field marked as vouched: it is never
the stint's own mark): every judge sees the lease move. Once the flow writes its own marks,
the worker stops. A host that dies vouches for nothing; a frozen
(SIGSTOPped) process is not vouched for; a RUNNING run with its own mark is never vouched
for, so a stalled attempt is still judged by its own renewals (fencing).
"""

from __future__ import annotations

import itertools
import logging
import os
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType

from autopilot.liveness import LeaseMark, short_state
from autopilot.names import LEASE_LABEL
from autopilot.worker.executors import flow_processes_here

logger = logging.getLogger(__name__)
# Beats of the marks this process writes: distinct from one sweep to the next.
_beats = itertools.count(1)
# A vouching mark's state field: never a stint's own (`LeaseMark.is_of` is false), so the
# vouching goes on until the flow writes its first mark, and the same-host shortcut
# (judge.died_here) ignores it.
VOUCHED = "vouched-"


def is_vouching(mark: LeaseMark) -> bool:
    """Whether a worker wrote the mark for a process still starting (not the flow's own)."""
    return mark.state.startswith(VOUCHED)


def starting(run: FlowRun) -> bool:
    """PENDING, or RUNNING with no mark of its current stint yet."""
    if run.state is None:
        return False
    if run.state.type == StateType.PENDING:
        return True
    if run.state.type != StateType.RUNNING:
        return False
    mark = LeaseMark.parse(run.labels.get(LEASE_LABEL))
    return mark is None or not mark.is_of(run.state.id)


async def vouch_for_starting(
    client: PrefectClient,
    runs: list[FlowRun],
    host_id: str,
    accepted: frozenset[UUID] = frozenset(),
) -> set[UUID]:
    """Write a mark for each starting run whose process lives here, or (PENDING) that this
    worker's own runner accepted (`accepted`, autopilot/worker/accepted.py): the pid is then
    the worker's. The ids vouched for."""
    candidates = [run for run in runs if starting(run)]
    if not candidates:
        return set()
    here = flow_processes_here()
    vouched: set[UUID] = set()
    for run in candidates:
        pid = here.get(run.id)
        if pid is None and run.id in accepted and run.state and run.state.is_pending():
            pid = os.getpid()
        if pid is None or run.state is None:
            continue
        state = VOUCHED + short_state(run.state.id)
        mark = LeaseMark(host_id, pid, run.run_count, state, next(_beats))
        try:
            await client.update_flow_run_labels(run.id, {LEASE_LABEL: mark.render()})
        except Exception as exc:  # the next sweep tries again; the judge forgets on failures
            logger.warning("could not vouch for %s: %s", run.id, exc)
            continue
        vouched.add(run.id)
    return vouched
