"""Point every auto-pilot process at one real Prefect server before Prefect is imported.

Without PREFECT_API_URL, Prefect starts a private ephemeral server in each process, so the
CLI, the shim and the worker would each see a different (or the same SQLite file locked)
database. The default is the server `autopilot up` runs.
"""

from __future__ import annotations

import os

DEFAULT_PREFECT_API_URL = "http://127.0.0.1:4200/api"


def ensure_prefect_api_url() -> str:
    """Set PREFECT_API_URL (unless already set) and quiet telemetry; return the URL."""
    os.environ.setdefault("PREFECT_API_URL", DEFAULT_PREFECT_API_URL)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return os.environ["PREFECT_API_URL"]
