"""Several hosts judging one run dead at the same moment take it over once (a real Prefect
server; each "host" is its own client, racing)."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import anyio
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed, Running

from autopilot.names import takeover_variable_name
from autopilot.worker.recovery import RESTART_STATE_NAME, claim, restart_or_give_up, take_over

HOSTS = 8


@flow(name="claims-test")
def idle() -> None:
    pass


async def a_run_in(state_factory):  # type: ignore[no-untyped-def]
    async with get_client() as client:
        run = await client.create_flow_run(idle)
        await client.set_flow_run_state(run.id, state_factory(), force=True)
        return await client.read_flow_run(run.id)


async def race(act) -> list[bool]:  # type: ignore[no-untyped-def]
    results: list[bool] = []

    async def one_host() -> None:
        async with get_client() as client:
            results.append(await act(client))

    async with anyio.create_task_group() as group:
        for _ in range(HOSTS):
            group.start_soon(one_host)
    return results


async def states_of(run_id):  # type: ignore[no-untyped-def]
    async with get_client() as client:
        history = await client.read_flow_run_states(run_id)
        current = await client.read_flow_run(run_id)
    return [state.type for state in history], current.state


def test_hosts_racing_to_take_over_one_dead_run_restart_it_once(prefect_server):
    async def scenario():  # type: ignore[no-untyped-def]
        run = await a_run_in(Running)
        results = await race(lambda client: take_over(client, run, "its lease lapsed", 3))
        return results, await states_of(run.id)

    results, (history, current) = anyio.run(scenario)
    assert sorted(results) == [False] * (HOSTS - 1) + [True]
    assert history.count(StateType.CRASHED) == 1
    assert history.count(StateType.SCHEDULED) == 1
    assert current.type == StateType.SCHEDULED and current.name == RESTART_STATE_NAME


def test_hosts_racing_to_restart_one_crashed_run_restart_it_once(prefect_server):
    async def scenario():  # type: ignore[no-untyped-def]
        run = await a_run_in(lambda: Crashed(message="its process died"))
        results = await race(lambda client: restart_or_give_up(client, run.id, 3))
        return results, await states_of(run.id)

    results, (history, current) = anyio.run(scenario)
    assert sorted(results) == [False] * (HOSTS - 1) + [True]
    assert history.count(StateType.SCHEDULED) == 1
    assert current.type == StateType.SCHEDULED


def test_a_run_that_moved_on_since_it_was_judged_is_left_alone(prefect_server):
    async def scenario():  # type: ignore[no-untyped-def]
        judged = await a_run_in(Running)
        async with get_client() as client:
            # The run renewed into a new state (paused, resumed) after the judge looked.
            await client.set_flow_run_state(judged.id, Running(), force=True)
            taken = await take_over(client, judged, "its lease lapsed", 3)
        return taken, await states_of(judged.id)

    taken, (history, current) = anyio.run(scenario)
    assert taken is False
    assert StateType.CRASHED not in history and current.type == StateType.RUNNING


def test_a_claim_whose_holder_died_before_acting_goes_stale_and_is_claimed_again(prefect_server):
    async def scenario():  # type: ignore[no-untyped-def]
        state_id = uuid4()
        async with get_client() as client:
            first = await claim(client, state_id)  # ... and its holder dies here
            fresh = await claim(client, state_id)  # within STALE_CLAIM: refused
            again = await claim(client, state_id, stale=timedelta(0))  # past it: next round
            after = await claim(client, state_id, stale=timedelta(0))
            taken = await client.read_variable_by_name(takeover_variable_name(state_id, 1))
        return first, fresh, again, taken is not None, after

    first, fresh, again, round_one_exists, after = anyio.run(scenario)
    assert (first, fresh, again, round_one_exists) == (True, False, True, True)
    assert after is True  # round 2: each stale round gives way to exactly one new claim
