"""Liveness rules without Prefect: the lease mark, ownership, the judge on a fake clock, and
the lease's fencing with Prefect's read and write injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, State, StateType

from autopilot.liveness import LeaseMark, crashed_after, short_state, still_owns
from autopilot.names import LEASE_LABEL
from autopilot.run.lease import AttemptLease, RunView
from autopilot.worker.judge import LivenessJudge, died_here


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STATE = uuid4()


def running(mark: str | None) -> tuple[UUID | None, bool, str | None]:
    return (STATE, False, mark)


def test_a_lease_mark_reads_back_and_foreign_labels_are_ignored():
    mark = LeaseMark("host-a|x", 4242, 3, "0123456789ab", 17)
    assert LeaseMark.parse(mark.render()) == mark
    for text in (None, 5, "", "a|b|c", "h|1|2|s|x", "h|1|2|s"):
        assert LeaseMark.parse(text) is None


@pytest.mark.parametrize(
    ("run_count", "state", "owned"),
    [
        (2, StateType.RUNNING, True),
        (2, StateType.PAUSED, True),  # a pause being carried out: still ours until we exit
        (2, StateType.CANCELLING, True),
        (2, StateType.COMPLETED, True),
        (2, StateType.CRASHED, False),  # declared dead
        (3, StateType.RUNNING, False),  # another attempt runs it
    ],
)
def test_ownership_follows_the_run_count_and_the_state(run_count, state, owned):
    assert still_owns(2, run_count, state, crashed_since=lambda: pytest.fail("no history")) is owned


T = datetime(2026, 12, 6, tzinfo=UTC)
OURS = uuid4()


def history(*types: StateType) -> list[tuple[datetime, StateType, UUID]]:
    """Pending, then our Running state, then `types` (shuffled: no order is promised)."""
    states = [(T, StateType.PENDING, uuid4()), (T + timedelta(seconds=1), StateType.RUNNING, OURS)]
    states += [(T + timedelta(seconds=2 + i), kind, uuid4()) for i, kind in enumerate(types)]
    return states[::-1]


@pytest.mark.parametrize("state", [StateType.SCHEDULED, StateType.PENDING])
def test_on_the_way_back_to_running_the_history_tells_a_resume_from_a_takeover(state):
    ours = short_state(OURS)
    resumed = history(StateType.PAUSED, StateType.SCHEDULED, StateType.PENDING)
    taken = history(StateType.CRASHED, StateType.SCHEDULED, StateType.PENDING)
    assert still_owns(2, 2, state, lambda: crashed_after(resumed, ours)) is True
    assert still_owns(2, 2, state, lambda: crashed_after(taken, ours)) is False


def test_a_crash_before_our_attempt_began_is_not_a_takeover_of_it():
    earlier = [(T - timedelta(seconds=9), StateType.CRASHED, uuid4())] + history(StateType.PAUSED)
    assert crashed_after(earlier, short_state(OURS)) is False
    assert crashed_after(earlier, "not-in-history") is True  # cannot tell: act as if taken


def test_a_run_whose_mark_moves_lives_and_one_whose_mark_stands_still_for_a_window_dies():
    clock = FakeClock()
    judge = LivenessJudge(window=20, clock=clock)
    alive, dead = uuid4(), uuid4()
    for beat in range(10):
        assert judge.observe({alive: running(f"a|1|1|{beat}"), dead: running("b|1|1|7")}) == (
            set() if beat < 4 else {dead}
        )
        clock.now += 5


def test_a_change_of_state_restarts_the_window():
    clock = FakeClock()
    judge = LivenessJudge(window=20, clock=clock)
    run = uuid4()
    judge.observe({run: running(None)})
    clock.now += 15
    judge.observe({run: (uuid4(), False, None)})  # resumed, restarted: a new state
    clock.now += 15
    assert judge.observe({run: (STATE, False, None)}) == set()


def test_a_pending_run_gets_longer_to_start_its_process():
    clock = FakeClock()
    judge = LivenessJudge(window=20, pending_factor=3, clock=clock)
    run = uuid4()
    for _ in range(12):
        assert judge.observe({run: (STATE, True, None)}) == set()
        clock.now += 5
    assert judge.observe({run: (STATE, True, None)}) == {run}


def test_a_pending_run_older_than_its_limit_on_the_server_s_clock_dies_at_the_second_look():
    # The judge itself just started (a worker restarted): its own watch is short, but the
    # server says the run has been pending for over three windows.
    clock = FakeClock()
    judge = LivenessJudge(window=20, pending_factor=3, clock=clock)
    run = uuid4()
    for watched in (0, 5, 10, 15):  # not yet watched for a window: maybe held up by an outage
        assert judge.observe({run: (STATE, True, None)}, {run: 75.0 + watched}) == set()
        clock.now += 5
    assert judge.observe({run: (STATE, True, None)}, {run: 95.0}) == {run}
    young = uuid4()
    for age in (10.0, 15.0, 20.0, 25.0, 30.0):
        assert judge.observe({young: (STATE, True, None)}, {young: age}) == set()
        clock.now += 5


def test_a_failed_look_forgets_everything_so_an_outage_is_never_a_death():
    clock = FakeClock()
    judge = LivenessJudge(window=20, clock=clock)
    run = uuid4()
    judge.observe({run: running("a|1|1|1")})
    clock.now += 15
    judge.blind()  # Prefect down for 60 s: the run cannot renew, nobody can judge
    clock.now += 60
    assert judge.observe({run: running("a|1|1|1")}) == set()
    clock.now += 15
    assert judge.observe({run: running("a|1|1|1")}) == set()
    clock.now += 5
    assert judge.observe({run: running("a|1|1|1")}) == {run}


def test_a_judge_that_was_not_watching_for_a_window_does_not_vouch_for_the_gap():
    clock = FakeClock()
    judge = LivenessJudge(window=20, clock=clock)
    run = uuid4()
    judge.observe({run: running("a|1|1|1")})
    clock.now += 45  # this worker stalled (or its sweep could not run)
    assert judge.observe({run: running("a|1|1|1")}) == set()


def test_runs_that_stopped_running_are_forgotten():
    clock = FakeClock()
    judge = LivenessJudge(window=20, clock=clock)
    run = uuid4()
    judge.observe({run: running("a|1|1|1")})
    clock.now += 15
    judge.observe({})  # paused: not in the input
    clock.now += 10
    assert judge.observe({run: running("a|1|1|1")}) == set()


class FakeRun:
    def __init__(self) -> None:
        self.view = RunView(run_count=1, state_type=StateType.RUNNING)
        self.marks: list[LeaseMark] = []
        self.lost: list[str] = []
        self.reads_fail = False
        self.history: list[tuple[datetime, StateType, UUID]] = []

    def read(self, _: UUID) -> RunView:
        if self.reads_fail:
            raise ConnectionError("Prefect is down")
        return self.view

    def write(self, _: UUID, mark: LeaseMark) -> None:
        self.marks.append(mark)

    def lease(self) -> AttemptLease:
        return AttemptLease(
            uuid4(), 1, "0123456789ab", "host-a", 5.0, self.read, self.write, self.states,
            self.lost.append,
        )  # fmt: skip

    def states(self, _: UUID) -> list[tuple[datetime, StateType, UUID]]:
        return self.history


def test_renewals_write_a_moving_beat_while_the_run_is_owned():
    run = FakeRun()
    lease = run.lease()
    lease.renew()
    lease.renew()
    assert [mark.beat for mark in run.marks] == [1, 2]
    assert {(m.host, m.run_count, m.state) for m in run.marks} == {("host-a", 1, "0123456789ab")}
    assert run.lost == []


def test_the_fence_ends_a_process_whose_run_was_taken_before_it_acts():
    run = FakeRun()
    lease = run.lease()
    lease.check("POST /api/simulation/start")
    assert run.lost == []
    run.view = RunView(run_count=2, state_type=StateType.RUNNING)  # another attempt runs it
    lease.check("POST /api/simulation/start")
    assert run.lost == [
        f"flow run {lease.flow_run_id} was taken over before POST /api/simulation/start"
    ]


def test_a_renewal_after_a_takeover_ends_the_process_instead_of_writing():
    run = FakeRun()
    lease = run.lease()
    run.view = RunView(run_count=1, state_type=StateType.CRASHED)

    def lost(reason: str) -> None:
        raise SystemExit(reason)  # what os._exit does: nothing after it runs

    lease._on_lost = lost
    with pytest.raises(SystemExit):
        lease.renew()
    assert run.marks == []


def test_a_prefect_outage_is_not_a_takeover():
    run = FakeRun()
    lease = run.lease()
    run.reads_fail = True
    lease.check("POST /api/report/generate")
    assert run.lost == []


def flow_run(state_type: StateType, mark: LeaseMark | None) -> FlowRun:
    labels = {LEASE_LABEL: mark.render()} if mark else {}
    return FlowRun(flow_id=uuid4(), state=State(type=state_type, id=STATE), labels=labels)


MINE = LeaseMark("host-a", 4242, 1, short_state(STATE), 9)


@pytest.mark.parametrize(
    ("run", "alive", "died"),
    [
        (flow_run(StateType.RUNNING, MINE), False, True),
        (flow_run(StateType.RUNNING, MINE), True, False),  # still running here
        (flow_run(StateType.RUNNING, None), False, False),  # no mark yet: the window decides
        # another host's process: never judged from here
        (flow_run(StateType.RUNNING, LeaseMark("host-b", 4242, 1, short_state(STATE), 9)), False,
         False),
        # a mark of an earlier stint (before a takeover or a pause): its process ended on purpose
        (flow_run(StateType.RUNNING, LeaseMark("host-a", 4242, 1, "feedfeedfeed", 9)), False,
         False),
        (flow_run(StateType.PENDING, MINE), False, False),  # being started, maybe elsewhere
    ],
)  # fmt: skip
def test_the_same_host_shortcut_only_judges_this_host_s_current_executor(run, alive, died):
    assert died_here(run, "host-a", alive=lambda pid: alive) is died
