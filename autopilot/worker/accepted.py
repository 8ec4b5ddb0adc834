"""Which runs this worker's own runner has accepted (Pending, Submitting) and may not have
started a process for yet.

Under a start storm a runner spends minutes between accepting a run and spawning its process
(many_hosts_load on fa6a7e9: runs in Submitting for 132 s and more with no process yet, judged
dead by their age). Only the accepting runner knows the run is its own: Prefect records no
runner on the state. So the worker's process notes every acceptance of its runner (Prefect's
`StateProposer`, pinned with Prefect 3.9) in memory, and its sweep vouches for those runs while
they stay PENDING (autopilot/worker/vouch.py). The note dies with the worker: a restarted
worker, or another host, vouches for nothing its runner did not accept, and a run whose
runner died is judged as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)

_accepted: set[UUID] = set()


def accepted_here() -> frozenset[UUID]:
    return frozenset(_accepted)


def forget_all_but(still_pending: set[UUID]) -> None:
    """Drop the runs that left PENDING (their process marks its own lease from then on)."""
    _accepted.intersection_update(still_pending)


def _noting(
    propose: Callable[[Any, Any], Awaitable[bool]],
) -> Callable[[Any, Any], Awaitable[bool]]:
    async def noted(self: Any, flow_run: Any) -> bool:
        accepted = await propose(self, flow_run)
        if accepted:
            _accepted.add(flow_run.id)
        return accepted

    noted.__wrapped__ = propose  # type: ignore[attr-defined]
    return noted


def note_runner_acceptances() -> bool:
    """Note every run this process's runner accepts from now on; False (with a warning) if
    this Prefect has no such hook, in which case only living processes are vouched for."""
    try:
        from prefect.runner._state_proposer import StateProposer
    except ImportError:
        logger.warning("Prefect's runner has no StateProposer: accepted runs are not noted")
        return False
    for name in ("propose_pending", "propose_submitting"):
        method = getattr(StateProposer, name, None)
        if method is None:
            logger.warning("Prefect's StateProposer has no %s: accepted runs are not noted", name)
            return False
        if not hasattr(method, "__wrapped__"):
            setattr(StateProposer, name, _noting(method))
    return True
