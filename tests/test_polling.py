"""The steps' one wait-on-the-backend loop (tasks/_polling.py), on a fake clock: no Prefect run,
no backend, no sleeping."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.objects import StateType

from autopilot.errors import BackendUnavailable, StepFailed
from autopilot.models import Step
from autopilot.run.control import RunControl, StepInterrupted
from tasks._outage import OutageTracker
from tasks._polling import poll_until_done


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def paused_after(clock: FakeClock, looks: Callable[[], int], after: int) -> RunControl:
    """The real RunControl, reading a run that is asked to pause once `after` looks were made
    (in place of Prefect's answer: no flow run exists here)."""

    def read_state(flow_run_id: UUID) -> StateType:
        return StateType.PAUSED if looks() >= after else StateType.RUNNING

    return RunControl(
        0.5, flow_run_id=uuid4(), clock=clock, sleep=clock.sleep, read_state=read_state
    )


def looks_returning(*answers: object) -> tuple[Callable[[], object], list[int]]:
    calls = [0]

    def look() -> object:
        answer = answers[calls[0]]
        calls[0] += 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    return look, calls


def setup() -> tuple[FakeClock, OutageTracker, Callable[[list[int]], RunControl]]:
    """A clock, an outage tracker on it, and a control that is never asked to pause."""
    clock = FakeClock()
    outage = OutageTracker(60, Step.MONITORING, base_delay=0.5, clock=clock)
    return clock, outage, lambda calls: paused_after(clock, lambda: calls[0], after=10**9)


def test_it_looks_every_interval_until_the_look_answers():
    clock, outage, control = setup()
    look, calls = looks_returning(None, None, "done")
    assert poll_until_done(look, 2.0, outage, control(calls)) == "done"
    assert calls[0] == 3
    assert sum(clock.slept) == pytest.approx(4.0)  # two waits of 2 s between three looks


def test_an_outage_inside_a_look_is_ridden_out_and_the_look_repeated():
    clock, outage, control = setup()
    look, calls = looks_returning(BackendUnavailable("down"), BackendUnavailable("down"), "ok")
    assert poll_until_done(look, 2.0, outage, control(calls)) == "ok"
    assert calls[0] == 3
    assert clock.slept and sum(clock.slept) == pytest.approx(0.5 + 1.0)  # the back-off only


def test_a_pause_between_looks_interrupts_the_step():
    _, outage, _ = setup()
    look, calls = looks_returning(None, None, "never reached")
    paused_after_two = paused_after(FakeClock(), lambda: calls[0], after=2)
    with pytest.raises(StepInterrupted) as raised:
        poll_until_done(look, 2.0, outage, paused_after_two)
    assert raised.value.reason == "paused" and calls[0] == 2


def test_a_look_that_fails_the_step_ends_it_at_once():
    _, outage, control = setup()
    look, calls = looks_returning(None, StepFailed("simulation failed", step="monitoring"))
    with pytest.raises(StepFailed):
        poll_until_done(look, 2.0, outage, control(calls))
    assert calls[0] == 2
