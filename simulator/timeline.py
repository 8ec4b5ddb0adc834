"""A run's rounds summed up as multimo's `GET /api/simulation/<id>/timeline` answers them."""

from __future__ import annotations

import sqlite3
from typing import Any


def rounds(conn: sqlite3.Connection, simulation_id: str) -> list[dict[str, Any]]:
    """One entry per recorded round, oldest first: actions by platform, active agents and
    actions by type (multimo's field names)."""
    by_round: dict[int, dict[str, Any]] = {
        row["round"]: {
            "round_num": row["round"],
            "twitter_actions": row["twitter_actions"],
            "reddit_actions": row["reddit_actions"],
            "total_actions": row["twitter_actions"] + row["reddit_actions"],
            "active_agents_count": 0,
            "action_types": {},
        }
        for row in conn.execute(
            "SELECT round, twitter_actions, reddit_actions FROM rounds"
            " WHERE simulation_id = ? ORDER BY round",
            (simulation_id,),
        )
    }
    for row in conn.execute(
        "SELECT round, COUNT(DISTINCT agent_id) AS agents FROM actions"
        " WHERE simulation_id = ? GROUP BY round",
        (simulation_id,),
    ):
        if row["round"] in by_round:
            by_round[row["round"]]["active_agents_count"] = row["agents"]
    for row in conn.execute(
        "SELECT round, action_type, COUNT(*) AS n FROM actions"
        " WHERE simulation_id = ? GROUP BY round, action_type",
        (simulation_id,),
    ):
        if row["round"] in by_round:
            by_round[row["round"]]["action_types"][row["action_type"]] = row["n"]
    return [by_round[number] for number in sorted(by_round)]
