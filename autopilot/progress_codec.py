"""How a progress artifact's description carries structured detail for the status projection.

The description holds a human line for the Prefect UI and, in a hidden HTML comment, the
`{step, detail}` that the status endpoint turns back into `progress_detail`.
"""

from __future__ import annotations

import json
import re
from typing import Any

DETAIL_MARKER = "autopilot-detail"
_DETAIL_RE = re.compile(rf"<!-- {DETAIL_MARKER} (.*?) -->", re.S)


def encode_description(summary: str, step: str, detail: dict[str, Any]) -> str:
    """The artifact description: a line for people, the detail for the status projection."""
    payload = json.dumps({"step": step, "detail": detail}, sort_keys=True)
    return f"{summary}\n\n<!-- {DETAIL_MARKER} {payload} -->"


def decode_description(description: str | None) -> dict[str, Any] | None:
    """The `{step, detail}` hidden in a description written by `encode_description`."""
    if not description:
        return None
    match = _DETAIL_RE.search(description)
    if match is None:
        return None
    try:
        decoded = json.loads(match.group(1))
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
