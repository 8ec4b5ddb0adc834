"""The report as the Prefect UI shows it: self-contained, with the chart inside it.

The backend's Markdown may link a chart by a path on the machine that wrote it (the bundled
simulator links `chart.png`, next to its `report.md`). The UI cannot load such a path, nor can
a copy of the artifact elsewhere, so the artifact carries the chart as a `data:` URI instead.
"""

from __future__ import annotations

import re

from autopilot.chart import DESCRIPTION as CHART_ALT

# A Markdown image whose target is neither a web address nor already embedded.
_LOCAL_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?!https?://|data:)(?P<target>[^)\s]+)\)")


def embed_chart(markdown: str, chart_uri: str | None) -> str:
    """`markdown` with its first local image replaced by the chart (others, which nothing
    could load, dropped); without a local image the chart goes after the title line. With no
    chart, local images are dropped and a line says why."""
    found = False

    def replace(match: re.Match[str]) -> str:
        nonlocal found
        first, found = not found, True
        if first and chart_uri:
            return f"![{match['alt'] or CHART_ALT}]({chart_uri})"
        return f"*(image `{match['target']}` is on the backend's disk: not shown here)*"

    text = _LOCAL_IMAGE.sub(replace, markdown)
    if found or not chart_uri:
        return text
    title, newline, rest = text.partition("\n")
    if not title.startswith("#"):
        return f"![{CHART_ALT}]({chart_uri})\n\n{text}"
    return f"{title}{newline}\n![{CHART_ALT}]({chart_uri})\n{rest}"
