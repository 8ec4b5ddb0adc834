"""The simulation itself: agents on a follower graph acting round by round.

Determinism is the design constraint. Each round draws from its own RNG seeded with
`(seed, round)`, and the world state is a pure function of the sequence of actions applied
to it. So a run process that restarts can rebuild the state by replaying the stored actions
and then produce exactly the rounds an uninterrupted run would have produced.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from typing import Any, NamedTuple

PLATFORMS = ("twitter", "reddit")
CREATE_POST = "CREATE_POST"
LIKE_POST = "LIKE_POST"
REPOST = "REPOST"
CREATE_COMMENT = "CREATE_COMMENT"
FOLLOW = "FOLLOW"

# Relative weights of what an active agent does; interactions fall back to posting when the
# agent sees no posts yet (an empty feed at round 1).
_ACTION_WEIGHTS = (
    (CREATE_POST, 0.30),
    (LIKE_POST, 0.32),
    (REPOST, 0.12),
    (CREATE_COMMENT, 0.16),
    (FOLLOW, 0.10),
)
_TOTAL_WEIGHT = sum(w for _, w in _ACTION_WEIGHTS)
_RECENT_PER_AGENT = 5
_PHRASES = (
    "Hot take on",
    "Reading up about",
    "Why nobody talks about",
    "Thread: what I learned about",
    "Unpopular opinion on",
    "Great news for",
)


class Action(NamedTuple):
    round: int
    platform: str
    agent_id: int
    action_type: str
    post_id: str | None
    target_post_id: str | None
    target_agent_id: int | None
    content: str | None


class Agent(NamedTuple):
    agent_id: int
    name: str
    interests: tuple[str, ...]
    activity: float


class World:
    def __init__(self, config: dict[str, Any], platforms: Iterable[str]) -> None:
        self.seed = int(config["seed"])
        self.platforms = tuple(p for p in PLATFORMS if p in set(platforms))
        self.agents = [
            Agent(a["agent_id"], a["name"], tuple(a["interests"]), float(a["activity_level"]))
            for a in config["agents"]
        ]
        follows = {int(k): list(v) for k, v in config["follows"].items()}
        # Per platform: followees as a list (deterministic order for the RNG) and a set.
        self.following = {
            p: {a.agent_id: list(follows.get(a.agent_id, [])) for a in self.agents}
            for p in self.platforms
        }
        self.following_set = {
            p: {k: set(v) for k, v in self.following[p].items()} for p in self.platforms
        }
        self.recent: dict[str, dict[int, deque[str]]] = {
            p: {a.agent_id: deque(maxlen=_RECENT_PER_AGENT) for a in self.agents}
            for p in self.platforms
        }
        self.post_author: dict[str, int] = {}
        self.post_topic: dict[str, str] = {}
        self.post_count = dict.fromkeys(self.platforms, 0)

    # -- state transitions ------------------------------------------------------------------
    def apply(self, action: Action) -> None:
        """The only place state changes; used both live and when replaying stored actions."""
        p, agent = action.platform, action.agent_id
        if action.action_type == CREATE_POST and action.post_id is not None:
            self.post_count[p] += 1
            self.post_author[action.post_id] = agent
            self.post_topic[action.post_id] = (action.content or "#").rsplit("#", 1)[1]
            self.recent[p][agent].append(action.post_id)
        elif action.action_type == REPOST and action.target_post_id is not None:
            # A repost puts the original into the reposter's feed: that is how posts spread.
            self.recent[p][agent].append(action.target_post_id)
        elif action.action_type == FOLLOW and action.target_agent_id is not None:
            target = action.target_agent_id
            if target not in self.following_set[p][agent]:
                self.following_set[p][agent].add(target)
                self.following[p][agent].append(target)

    def replay(self, actions: Iterable[Action]) -> None:
        for action in actions:
            self.apply(action)

    # -- one round ----------------------------------------------------------------------------
    def step(self, round_no: int) -> list[Action]:
        rng = random.Random(f"{self.seed}:round:{round_no}")
        out: list[Action] = []
        for platform in self.platforms:
            for agent in self.agents:
                if rng.random() >= agent.activity:
                    continue
                # Very active agents sometimes do two things in one round.
                times = 2 if rng.random() < agent.activity / 2 else 1
                for _ in range(times):
                    action = self._act(rng, platform, agent, round_no)
                    if action is not None:
                        self.apply(action)
                        out.append(action)
        return out

    def _act(self, rng: random.Random, platform: str, agent: Agent, round_no: int) -> Action | None:
        kind = _choose_kind(rng.random() * _TOTAL_WEIGHT)
        if kind == FOLLOW:
            return self._follow(rng, platform, agent, round_no)
        if kind != CREATE_POST:
            target = self._pick_post(rng, platform, agent)
            if target is not None:
                content = None
                if kind == CREATE_COMMENT:
                    content = f"Re {target}: {rng.choice(_PHRASES).lower()} this"
                return Action(
                    round_no,
                    platform,
                    agent.agent_id,
                    kind,
                    None,
                    target,
                    self.post_author[target],
                    content,
                )
        topic = rng.choice(agent.interests)
        post_id = f"{platform[:2]}-{self.post_count[platform] + 1}"
        content = f"{rng.choice(_PHRASES)} {topic} #{topic}"
        return Action(round_no, platform, agent.agent_id, CREATE_POST, post_id, None, None, content)

    def _pick_post(self, rng: random.Random, platform: str, agent: Agent) -> str | None:
        """A recent post from someone the agent follows, preferring its interests."""
        followees = self.following[platform][agent.agent_id]
        if not followees:
            return None
        fallback = None
        for _ in range(3):
            feed = self.recent[platform][followees[rng.randrange(len(followees))]]
            if not feed:
                continue
            post = feed[rng.randrange(len(feed))]
            if self.post_topic.get(post) in agent.interests:
                return post
            fallback = fallback or post
        return fallback

    def _follow(
        self, rng: random.Random, platform: str, agent: Agent, round_no: int
    ) -> Action | None:
        n = len(self.agents)
        mine = self.following_set[platform][agent.agent_id]
        for _ in range(3):
            other = rng.randrange(n)
            if other != agent.agent_id and other not in mine:
                return Action(round_no, platform, agent.agent_id, FOLLOW, None, None, other, None)
        return None


def _choose_kind(roll: float) -> str:
    for name, weight in _ACTION_WEIGHTS:
        if roll < weight:
            return name
        roll -= weight
    return _ACTION_WEIGHTS[-1][0]
