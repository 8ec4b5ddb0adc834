"""Compute a run's report from its stored actions: figures, top agents and posts, a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autopilot import chart
from autopilot.backend_models import TimelineRound
from simulator import timeline
from simulator.engine import CREATE_COMMENT, LIKE_POST, REPOST
from simulator.store import Store

TOP_N = 10


def build(store: Store, simulation_id: str, report_dir: Path) -> tuple[str, Path]:
    """Return (markdown, chart_path); the chart is written into report_dir."""
    with store.read() as conn:
        sim = dict(
            conn.execute(
                "SELECT * FROM simulations WHERE simulation_id = ?", (simulation_id,)
            ).fetchone()
        )
        run = dict(
            conn.execute("SELECT * FROM runs WHERE simulation_id = ?", (simulation_id,)).fetchone()
        )
        rounds = [TimelineRound.model_validate(r) for r in timeline.rounds(conn, simulation_id)]
        by_type = conn.execute(
            "SELECT platform, action_type, COUNT(*) AS n FROM actions WHERE simulation_id = ?"
            " GROUP BY platform, action_type ORDER BY platform, action_type",
            (simulation_id,),
        ).fetchall()
        agents = conn.execute(
            "SELECT agent_id, COUNT(*) AS n FROM actions WHERE simulation_id = ?"
            " GROUP BY agent_id ORDER BY n DESC, agent_id LIMIT ?",
            (simulation_id, TOP_N),
        ).fetchall()
        # Two steps rather than a self-join: rank engagement first, then look up only the
        # top posts by id (SQLite planned the self-join as a range scan: seconds on 25k rows).
        ranked = conn.execute(
            "SELECT target_post_id AS post_id, platform,"
            f" SUM(action_type = '{LIKE_POST}') AS likes,"
            f" SUM(action_type = '{REPOST}') AS reposts,"
            f" SUM(action_type = '{CREATE_COMMENT}') AS comments, COUNT(*) AS engagement"
            " FROM actions WHERE simulation_id = ?"
            f" AND action_type IN ('{LIKE_POST}', '{REPOST}', '{CREATE_COMMENT}')"
            " GROUP BY target_post_id ORDER BY engagement DESC, target_post_id LIMIT ?",
            (simulation_id, TOP_N),
        ).fetchall()
        posts = []
        for row in ranked:
            origin = conn.execute(
                "SELECT agent_id, content FROM actions WHERE simulation_id = ? AND post_id = ?",
                (simulation_id, row["post_id"]),
            ).fetchone()
            author, content = (origin["agent_id"], origin["content"]) if origin else (None, "")
            posts.append({**dict(row), "author": author, "content": content})
    names = {
        a["agent_id"]: a["name"] for a in json.loads(sim["config_json"] or "{}").get("agents", [])
    }
    series = [(r.twitter_actions, r.reddit_actions) for r in rounds]
    chart_path = write_atomically(report_dir / chart.FILE_NAME, chart.png(rounds, simulation_id))
    return _markdown(sim, run, series, by_type, agents, posts, names), chart_path


def write_atomically(path: Path, content: bytes) -> Path:
    """Write `content` to `path` so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)
    return path


def _markdown(
    sim: dict[str, Any],
    run: dict[str, Any],
    series: list[tuple[int, int]],
    by_type: list[Any],
    agents: list[Any],
    posts: list[Any],
    names: dict[int, str],
) -> str:
    total = run["twitter_actions"] + run["reddit_actions"]
    lines = [
        f"# Simulation report: {sim['simulation_id']}",
        "",
        "## Run figures",
        "",
        f"- Agents: {sim['agents']}",
        f"- Rounds: {run['current_round']} of {run['total_rounds']}"
        f" ({sim['minutes_per_round']} simulated minutes per round)",
        f"- Seed: {sim['seed']}",
        f"- Total actions: {total}",
        f"- Twitter actions: {run['twitter_actions']}",
        f"- Reddit actions: {run['reddit_actions']}",
        f"- Average actions per round: {total / max(1, len(series)):.1f}",
        "",
        "### Actions by platform and type",
        "",
        "| platform | action | count |",
        "|---|---|---|",
        *(f"| {r['platform']} | {r['action_type']} | {r['n']} |" for r in by_type),
        "",
        "## Activity per round",
        "",
        f"![{chart.DESCRIPTION}]({chart.FILE_NAME})",
        "",
        "| round | twitter | reddit | total |",
        "|---|---|---|---|",
        *(f"| {i} | {t} | {r} | {t + r} |" for i, (t, r) in enumerate(series, start=1)),
        "",
        "## Most active agents",
        "",
        "| agent | name | actions |",
        "|---|---|---|",
        *(f"| {a['agent_id']} | {names.get(a['agent_id'], '?')} | {a['n']} |" for a in agents),
        "",
        "## Top posts (likes + reposts + comments)",
        "",
        "| post | platform | author | likes | reposts | comments | content |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {p['post_id']} | {p['platform']} | {names.get(p['author'], p['author'])} |"
            f" {p['likes']} | {p['reposts']} | {p['comments']} | {p['content']} |"
            for p in posts
        ),
        "",
    ]
    return "\n".join(lines)
