"""The attempt's lease on its flow run: renewed while the process lives, checked before every
change to the backend (fencing).

A process stalled past its lease window (SIGSTOP, a long GC pause, a network partition) may
have been declared dead and its run restarted elsewhere. When it wakes it must not act: its
next renewal or its next backend change reads the run first, and on finding it taken the
process ends at once with exit code 0, so neither Prefect's engine nor its runner writes a
state over the new attempt's (a non-zero exit would make the runner report the run Crashed).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from autopilot.liveness import LeaseMark, crashed_after, still_owns
from autopilot.names import LEASE_LABEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunView:
    """What the lease needs to know of its run, as Prefect has it now."""

    run_count: int
    state_type: StateType | None


def read_run_view(flow_run_id: UUID) -> RunView:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return RunView(run.run_count, run.state.type if run.state else None)


def read_history(flow_run_id: UUID) -> list[tuple[datetime, StateType, UUID]]:
    """The run's states: when, which type, which id."""
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return [(state.timestamp, state.type, state.id) for state in states]


def write_mark(flow_run_id: UUID, mark: LeaseMark) -> None:
    with get_client(sync_client=True) as client:
        client.update_flow_run_labels(flow_run_id, {LEASE_LABEL: mark.render()})


def exit_quietly(reason: str) -> None:
    """End the process now, writing nothing to Prefect (see the module docstring)."""
    print(f"auto-pilot: {reason}; this process exits without acting", file=sys.stderr)
    sys.stderr.flush()
    os._exit(0)


class AttemptLease:
    """One attempt's ownership of its flow run."""

    def __init__(
        self,
        flow_run_id: UUID,
        token: int,
        state: str,
        host: str,
        renew_every: float,
        read_run: Callable[[UUID], RunView] = read_run_view,
        write: Callable[[UUID, LeaseMark], None] = write_mark,
        read_states: Callable[[UUID], list[tuple[datetime, StateType, UUID]]] = read_history,
        on_lost: Callable[[str], None] = exit_quietly,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.token = token
        self.state = state
        self.host = host
        self.renew_every = renew_every
        self._read_run = read_run
        self._read_states = read_states
        self._write = write
        self._on_lost = on_lost
        self._beat = 0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def owned(self) -> bool:
        """Whether this attempt still executes the run (one Prefect read)."""
        view = self._read_run(self.flow_run_id)
        return still_owns(
            self.token,
            view.run_count,
            view.state_type,
            lambda: crashed_after(self._read_states(self.flow_run_id), self.state),
        )

    def check(self, what: str) -> None:
        """Fence: before `what` changes the backend, end the process if the run was taken.

        A Prefect read that fails lets the call go on: an outage of Prefect is not a takeover,
        and no other host can take the run over while it cannot read the lease either."""
        try:
            owned = self.owned()
        except Exception as exc:
            logger.warning("could not read the run before %s: %s", what, exc)
            return
        if not owned:
            self._on_lost(f"flow run {self.flow_run_id} was taken over before {what}")

    def renew(self) -> None:
        """One renewal: the ownership check, then the next beat into the run's label."""
        self.check("renewing its lease")
        self._write_next_mark()

    def _write_next_mark(self) -> None:
        self._beat += 1
        mark = LeaseMark(self.host, os.getpid(), self.token, self.state, self._beat)
        self._write(self.flow_run_id, mark)

    def start(self) -> None:
        """Write the first mark now, then renew in a daemon thread until `stop`.

        The first mark needs no ownership check: the attempt has just read its run to take
        its token."""
        self._write_next_mark()
        self._thread = threading.Thread(target=self._renew_forever, name="lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _renew_forever(self) -> None:
        while not self._stopped.wait(self.renew_every):
            try:
                self.renew()
            except Exception as exc:  # Prefect down: the judges go blind too (judge.py)
                logger.warning("could not renew the lease of %s: %s", self.flow_run_id, exc)


_current: AttemptLease | None = None


def hold(lease: AttemptLease) -> None:
    """Make `lease` this process's lease and start renewing it (one attempt per process)."""
    global _current
    if _current is not None:
        _current.stop()
    _current = lease
    lease.start()


def fence(what: str) -> None:
    """Before a change to the backend: end the process if its run was taken (no-op outside a
    leased attempt, e.g. in the runner's hooks or a test's in-process run)."""
    if _current is not None:
        _current.check(what)
