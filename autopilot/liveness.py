"""Liveness in Prefect: how a running attempt shows it is alive, and when it still owns its run.

A running attempt writes a *lease mark* into a label of its own flow run (`names.LEASE_LABEL`)
every `lease_renew_every` seconds: its host, pid, token, the Running state it began in, and a
beat that moves. A label update rewrites one row in place: no event, no
history, so a 72-hour run adds no storage for it (benchmarks/liveness_signal.py measures the
candidates). Any worker on any host judges a run by watching its mark change
(autopilot/worker/judge.py): it never compares its clock with the writer's.

Ownership (fencing): an attempt's token is the run's `run_count` when it began. Taking a run
over restarts it on its own id, and the restarted attempt entering Running counts it up; until
then the run sits Crashed, Scheduled or Pending. A process that sees either has lost its run
and must not touch the backend again (autopilot/run/lease.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from prefect.client.schemas.objects import StateType

# States the run can only be in while this attempt is not its executor: someone declared it
# dead and restarted it (or is about to).
TAKEN_STATES = frozenset({StateType.CRASHED, StateType.SCHEDULED, StateType.PENDING})
_SEPARATOR = "|"


def short_state(state_id: UUID | None) -> str:
    """A Running state's id as the mark carries it (enough to tell two stints apart)."""
    return state_id.hex[:12] if state_id is not None else ""


@dataclass(frozen=True)
class LeaseMark:
    """What an attempt writes into its run's lease label: who it is, and a beat that moves."""

    host: str
    pid: int
    run_count: int
    state: str
    beat: int

    def render(self) -> str:
        fields = (self.host, str(self.pid), str(self.run_count), self.state, str(self.beat))
        return _SEPARATOR.join(fields)

    @classmethod
    def parse(cls, text: object) -> LeaseMark | None:
        """The mark a label holds, or None for no label or one we did not write."""
        if not isinstance(text, str):
            return None
        parts = text.rsplit(_SEPARATOR, 4)
        if len(parts) != 5 or not all(parts[i].isdigit() for i in (1, 2, 4)):
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]), parts[3], int(parts[4]))

    def is_of(self, state_id: UUID | None) -> bool:
        """Whether the mark was written in the Running stint that began in `state_id` (and
        not by an attempt before a takeover or a pause, whose mark lingers until the next
        one writes)."""
        return bool(self.state) and self.state == short_state(state_id)


def still_owns(token: int, run_count: int, state_type: StateType | None) -> bool:
    """Whether the attempt that began at `run_count == token` still executes the run.

    A pause, a stop or the run's end keep it the owner until its process exits; a takeover
    (Crashed → Scheduled → Pending → a new Running, which counts up) does not."""
    return run_count == token and state_type not in TAKEN_STATES
