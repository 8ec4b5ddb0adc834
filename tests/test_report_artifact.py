"""The report artifact carries its chart: local image links become the embedded chart."""

from __future__ import annotations

from autopilot.report_artifact import CHART_ALT, embed_chart

URI = "data:image/png;base64,iVBORw0KGgo="


def test_the_first_local_image_becomes_the_embedded_chart() -> None:
    markdown = "# Report\n\n## Activity\n\n![Actions per round](chart.png)\n\n| a |\n"
    assert embed_chart(markdown, URI) == (
        f"# Report\n\n## Activity\n\n![Actions per round]({URI})\n\n| a |\n"
    )


def test_absolute_paths_are_local_too_and_extra_ones_are_explained_not_left_broken() -> None:
    markdown = "![a](/srv/reports/r1/chart.png)\n![b](../other.png)\n"
    text = embed_chart(markdown, URI)
    assert text.splitlines()[0] == f"![a]({URI})"
    assert text.splitlines()[1] == (
        "*(image `../other.png` is on the backend's disk: not shown here)*"
    )


def test_web_images_and_embedded_ones_stay_as_they_are() -> None:
    markdown = "# R\n![logo](https://example.org/logo.png) ![x](data:image/png;base64,AA==)\n"
    text = embed_chart(markdown, URI)
    assert "![logo](https://example.org/logo.png)" in text
    assert "![x](data:image/png;base64,AA==)" in text
    assert text.startswith(f"# R\n\n![{CHART_ALT}]({URI})\n")  # no local image: after the title


def test_a_report_without_title_or_images_gets_the_chart_first() -> None:
    assert embed_chart("plain text", URI) == f"![{CHART_ALT}]({URI})\n\nplain text"


def test_without_a_chart_local_images_are_explained_and_nothing_is_added() -> None:
    assert embed_chart("# R\n![c](chart.png)\n", None) == (
        "# R\n*(image `chart.png` is on the backend's disk: not shown here)*\n"
    )
    assert embed_chart("# R\ntext\n", None) == "# R\ntext\n"
