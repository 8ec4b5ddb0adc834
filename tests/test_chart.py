"""The report's chart: what a reader needs is on it (title, axes, legend, both panels), it is a
real PNG, and it travels inside a `data:` URI and a table."""

from __future__ import annotations

import base64
import io

from matplotlib import pyplot
from PIL import Image

from autopilot import chart
from autopilot.backend_models import TimelineRound

ROUNDS = [
    TimelineRound(round_num=1, twitter_actions=3, reddit_actions=5, active_agents_count=4),
    TimelineRound(round_num=2, twitter_actions=10, reddit_actions=2, active_agents_count=9),
    TimelineRound(round_num=3, twitter_actions=0, reddit_actions=0, active_agents_count=0),
]


def test_the_figure_has_a_title_labelled_axes_a_legend_and_two_panels() -> None:
    fig = chart.figure(ROUNDS, "sim_x")
    try:
        assert fig.get_suptitle() == "Simulation sim_x"
        actions, agents = fig.axes
        assert actions.get_title(loc="left") == "Actions per round"
        assert actions.get_ylabel() == "actions"
        assert [t.get_text() for t in actions.get_legend().get_texts()] == ["Twitter", "Reddit"]
        twitter, reddit = actions.containers
        assert [bar.get_height() for bar in twitter] == [3, 10, 0]
        assert [bar.get_height() for bar in reddit] == [5, 2, 0]
        assert agents.get_title(loc="left") == "Active agents per round"
        assert (agents.get_xlabel(), agents.get_ylabel()) == ("round", "agents")
        (line,) = agents.get_lines()
        assert list(line.get_ydata()) == [4, 9, 0]
        assert agents.get_legend() is not None
    finally:
        pyplot.close(fig)


def test_the_png_decodes_and_its_data_uri_carries_the_same_bytes() -> None:
    image = chart.png(ROUNDS, "sim_x")
    with Image.open(io.BytesIO(image)) as decoded:
        assert decoded.format == "PNG" and decoded.size == (900, 650)
    uri = chart.data_uri(image)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix) and base64.b64decode(uri[len(prefix) :]) == image


def test_an_empty_run_still_draws_a_chart() -> None:
    with Image.open(io.BytesIO(chart.png([], "empty"))) as decoded:
        assert decoded.format == "PNG"


def test_the_table_rows_hold_the_per_round_series() -> None:
    assert chart.table_rows(ROUNDS)[1] == {
        "round": 2, "twitter_actions": 10, "reddit_actions": 2, "total_actions": 12,
        "active_agents": 9,
    }  # fmt: skip
    assert [row["round"] for row in chart.table_rows(ROUNDS)] == [1, 2, 3]
