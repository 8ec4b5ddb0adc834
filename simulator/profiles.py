"""Agent profiles and the follower graph, built once at preparation time from the seed.

The result is a plain JSON-able dict (the "simulation config") so it can be stored in SQLite
and in `sims/<id>/config.json`, and read back by a run process on another day.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

TOPICS = (
    "climate",
    "economy",
    "elections",
    "football",
    "movies",
    "music",
    "science",
    "space",
    "startups",
    "health",
    "education",
    "housing",
    "travel",
    "food",
    "gaming",
    "privacy",
)
_FIRST = (
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Emma",
    "Farid",
    "Gia",
    "Hugo",
    "Iris",
    "Jon",
    "Kai",
    "Lena",
)
_LAST = ("Moreau", "Okafor", "Silva", "Tanaka", "Novak", "Berg", "Rossi", "Khan", "Weber", "Lopez")


def build_config(
    simulation_id: str, seed: int, n_agents: int, platforms: list[str]
) -> dict[str, Any]:
    # A dedicated RNG stream: profiles must not depend on anything but the seed.
    rng = random.Random(f"{seed}:profiles")
    agents = []
    for agent_id in range(n_agents):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        # Beta(2, 5) gives many quiet agents and a few very active ones, like real feeds.
        activity = min(0.95, max(0.05, rng.betavariate(2, 5)))
        agents.append(
            {
                "agent_id": agent_id,
                "name": name,
                "username": f"{name.split()[0].lower()}_{agent_id}",
                "interests": rng.sample(TOPICS, rng.randint(1, 3)),
                "activity_level": round(activity, 4),
            }
        )
    return {
        "simulation_id": simulation_id,
        "seed": seed,
        "platforms": platforms,
        "agents": agents,
        "follows": _follower_graph(rng, n_agents),
    }


def _follower_graph(rng: random.Random, n: int) -> dict[str, list[int]]:
    """Each agent follows a handful of others, biased towards a few "influencers" so the
    graph has hubs. Keys are strings because the config goes through JSON."""
    if n < 2:
        return {str(i): [] for i in range(n)}
    weights = [5.0 if i < max(1, n // 10) else 1.0 for i in range(n)]
    # Cumulative weights once: choices() then bisects instead of summing n weights per draw.
    cum_weights = list(itertools.accumulate(weights))
    population = list(range(n))
    follows: dict[str, list[int]] = {}
    for agent in range(n):
        want = min(n - 1, rng.randint(3, 15))
        chosen: list[int] = []
        seen = {agent}
        # Bounded attempts: weighted sampling with rejection, never an endless loop.
        for _ in range(want * 4):
            if len(chosen) >= want:
                break
            other = rng.choices(population, cum_weights=cum_weights)[0]
            if other not in seen:
                seen.add(other)
                chosen.append(other)
        follows[str(agent)] = chosen
    return follows
