"""The report's chart: actions per round for each platform, and active agents per round.

Drawn with matplotlib's Agg backend (no display) from multimo's per-round timeline, so the
same picture comes out wherever it is drawn: in the bundled simulator's file report and in the
Prefect report artifact, which embeds it (a chart file on the machine that wrote it is out of
reach of the Prefect UI, of another host and of a downloaded copy).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: a worker or CI host has no display

from matplotlib import pyplot  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from autopilot.backend_models import TimelineRound  # noqa: E402

TWITTER_COLOUR = "#1d9bf0"
REDDIT_COLOUR = "#ff4500"
AGENTS_COLOUR = "#4d4d4d"
_DPI = 100
# Where a chart sits beside its report.md (which links it by this relative name), and what it
# shows, as an image's alternative text.
FILE_NAME = "chart.png"
DESCRIPTION = "Actions per round and active agents per round"


def title_of(simulation_id: str) -> str:
    return f"Simulation {simulation_id}"


def figure(rounds: Sequence[TimelineRound], simulation_id: str) -> Figure:
    """The two-panel figure; `pyplot.close` it (or use `png`) when done."""
    numbers = [r.round_num for r in rounds]
    fig, (actions, agents) = pyplot.subplots(
        2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(3, 2), layout="constrained"
    )
    fig.suptitle(title_of(simulation_id))
    width = 0.4
    actions.bar([n - width / 2 for n in numbers], [r.twitter_actions for r in rounds],
                width, label="Twitter", color=TWITTER_COLOUR)  # fmt: skip
    actions.bar([n + width / 2 for n in numbers], [r.reddit_actions for r in rounds],
                width, label="Reddit", color=REDDIT_COLOUR)  # fmt: skip
    actions.set_title("Actions per round", loc="left", fontsize="medium")
    actions.set_ylabel("actions")
    # Above the panel, right of its title: inside, it hid the last rounds' bars.
    actions.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False)
    actions.grid(axis="y", alpha=0.3)
    agents.plot(numbers, [r.active_agents_count for r in rounds], marker="o", markersize=3,
                color=AGENTS_COLOUR, label="agents who acted")  # fmt: skip
    agents.set_title("Active agents per round", loc="left", fontsize="medium")
    agents.set_xlabel("round")
    agents.set_ylabel("agents")
    agents.set_ylim(bottom=0)
    agents.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    agents.yaxis.get_major_locator().set_params(integer=True)
    agents.grid(alpha=0.3)
    if numbers:
        agents.set_xlim(min(numbers) - 0.7, max(numbers) + 0.7)
    agents.xaxis.get_major_locator().set_params(integer=True)
    return fig


def png(rounds: Sequence[TimelineRound], simulation_id: str) -> bytes:
    """The chart as PNG bytes."""
    fig = figure(rounds, simulation_id)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=_DPI)
        return buffer.getvalue()
    finally:
        pyplot.close(fig)


def data_uri(image: bytes) -> str:
    """A PNG as a `data:` URI, which Markdown viewers (the Prefect UI's included) show inline."""
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def table_rows(rounds: Sequence[TimelineRound]) -> list[dict[str, Any]]:
    """The per-round series as the rows of a Prefect table artifact."""
    return [
        {
            "round": r.round_num,
            "twitter_actions": r.twitter_actions,
            "reddit_actions": r.reddit_actions,
            "total_actions": r.twitter_actions + r.reddit_actions,
            "active_agents": r.active_agents_count,
        }
        for r in rounds
    ]
