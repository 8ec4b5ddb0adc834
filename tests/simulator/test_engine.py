"""The engine in-process: determinism and replay equivalence."""

from __future__ import annotations

from simulator.engine import FOLLOW, REPOST, World
from simulator.profiles import build_config

PLATFORMS = ["twitter", "reddit"]


def _run(seed: int, rounds: int, agents: int = 80) -> list[object]:
    world = World(build_config("sim_x", seed, agents, PLATFORMS), PLATFORMS)
    return [a for r in range(1, rounds + 1) for a in world.step(r)]


def test_same_seed_same_actions_different_seed_differs() -> None:
    assert _run(3, 10) == _run(3, 10)
    assert _run(3, 10) != _run(4, 10)


def test_replaying_stored_actions_continues_identically() -> None:
    config = build_config("sim_x", 8, 80, PLATFORMS)
    straight = World(config, PLATFORMS)
    full = [straight.step(r) for r in range(1, 21)]
    resumed = World(config, PLATFORMS)
    resumed.replay(a for rnd in full[:10] for a in rnd)
    assert [resumed.step(r) for r in range(11, 21)] == full[10:]


def test_interactions_target_posts_of_followed_agents() -> None:
    """Likes, reposts and comments only reach posts that a followee posted or reposted."""
    config = build_config("sim_x", 5, 60, PLATFORMS)
    world = World(config, PLATFORMS)
    follows = {p: {int(k): set(v) for k, v in config["follows"].items()} for p in PLATFORMS}
    shared: dict[str, dict[int, set[str]]] = {p: {} for p in PLATFORMS}
    authors: dict[str, int] = {}
    interactions = 0
    for round_no in range(1, 15):
        for a in world.step(round_no):
            mine = shared[a.platform].setdefault(a.agent_id, set())
            if a.post_id:
                authors[a.post_id] = a.agent_id
                mine.add(a.post_id)
            elif a.action_type == FOLLOW:
                assert a.target_agent_id is not None and a.target_agent_id != a.agent_id
                follows[a.platform][a.agent_id].add(a.target_agent_id)
            else:
                interactions += 1
                assert a.target_post_id is not None
                assert a.target_agent_id == authors[a.target_post_id]
                visible = set().union(
                    *(shared[a.platform].get(f, set()) for f in follows[a.platform][a.agent_id])
                )
                assert a.target_post_id in visible
                if a.action_type == REPOST:
                    mine.add(a.target_post_id)
    assert interactions > 100
