"""Which Crashed states count as deaths against the restart cap (no Prefect needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect.client.schemas.objects import State, StateType

from autopilot.worker.recovery import deaths

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def history(*types: StateType) -> list[State]:
    # Out of order on purpose: Prefect does not promise an order.
    states = [State(type=kind, timestamp=T0 + timedelta(seconds=i)) for i, kind in enumerate(types)]
    return states[::-1]


def test_a_crash_reported_again_after_its_restart_was_scheduled_is_one_death():
    # Prefect's process worker: the hook restarts (Scheduled), then the worker says Crashed.
    once = history(StateType.RUNNING, StateType.CRASHED, StateType.SCHEDULED, StateType.CRASHED)
    assert len(deaths(once)) == 1


def test_each_crash_of_a_running_attempt_is_a_death():
    twice = history(
        StateType.PENDING, StateType.RUNNING, StateType.CRASHED, StateType.SCHEDULED,
        StateType.PENDING, StateType.RUNNING, StateType.CRASHED,
    )  # fmt: skip
    assert len(deaths(twice)) == 2


def test_a_run_that_died_while_starting_counts_too():
    assert len(deaths(history(StateType.SCHEDULED, StateType.PENDING, StateType.CRASHED))) == 1
