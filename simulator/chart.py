"""A bar chart of actions per round as a PNG, written with zlib + struct only.

Two bars per round (twitter blue, reddit orange) on a white canvas with light grid lines at
each quarter of the maximum. No text is drawn (no font dependency): the report's Markdown
carries the legend and the figures.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

TWITTER_RGB = (29, 155, 240)
REDDIT_RGB = (255, 69, 0)
_WHITE = (255, 255, 255)
_AXIS = (40, 40, 40)
_GRID = (225, 225, 225)
_MARGIN = 30
_HEIGHT = 320


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(_WHITE) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, rgb: tuple[int, int, int]) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1:
            return
        row = bytes(rgb) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def png(self) -> bytes:
        stride = self.width * 3
        # Filter type 0 (None) for every scanline: simple, and zlib does the compressing.
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def render(series: list[tuple[int, int]]) -> bytes:
    """series[i] = (twitter_actions, reddit_actions) of round i + 1."""
    rounds = max(1, len(series))
    bar = max(2, min(24, 800 // (rounds * 3)))
    group = bar * 2 + max(1, bar // 2)
    width = _MARGIN * 2 + rounds * group
    canvas = _Canvas(width, _HEIGHT)
    top, bottom = _MARGIN, _HEIGHT - _MARGIN
    peak = max([max(t, r) for t, r in series] + [1])
    for quarter in range(1, 5):
        y = bottom - (bottom - top) * quarter // 4
        canvas.rect(_MARGIN, y, width - _MARGIN, y + 1, _GRID)
    for index, (twitter, reddit) in enumerate(series):
        x = _MARGIN + index * group + max(1, bar // 4)
        for offset, value, rgb in ((0, twitter, TWITTER_RGB), (bar, reddit, REDDIT_RGB)):
            h = (bottom - top) * value // peak
            canvas.rect(x + offset, bottom - h, x + offset + bar, bottom, rgb)
    canvas.rect(_MARGIN, top, _MARGIN + 1, bottom + 1, _AXIS)
    canvas.rect(_MARGIN, bottom, width - _MARGIN, bottom + 1, _AXIS)
    # Legend swatches, top left: twitter then reddit (named in the report text).
    canvas.rect(_MARGIN + 8, 8, _MARGIN + 20, 20, TWITTER_RGB)
    canvas.rect(_MARGIN + 28, 8, _MARGIN + 40, 20, REDDIT_RGB)
    return canvas.png()


def write(path: Path, series: list[tuple[int, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(render(series))
    tmp.replace(path)
    return path
