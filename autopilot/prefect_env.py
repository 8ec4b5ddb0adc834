"""Point every auto-pilot process at one real Prefect server before Prefect is imported.

Without PREFECT_API_URL, Prefect starts a private ephemeral server in each process, so the
CLI, the shim and the worker would each see a different (or the same SQLite file locked)
database. The default is the server `autopilot up` runs.
"""

from __future__ import annotations

import os

from autopilot.errors import InvalidInput
from autopilot.settings import Settings, get_settings

DEFAULT_PREFECT_API_URL = "http://127.0.0.1:4200/api"


def prefect_auth_string(settings: Settings) -> str:
    """The basic-auth string `autopilot up` protects its Prefect server with (token set)."""
    token = settings.shim_token()
    assert token is not None
    return f"autopilot:{token}"


def ensure_prefect_api_url() -> str:
    """Set PREFECT_API_URL (unless already set), the Prefect credentials that go with the
    shim's token (see `autopilot up`), and quiet telemetry; return the URL."""
    os.environ.setdefault("PREFECT_API_URL", DEFAULT_PREFECT_API_URL)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = get_settings()
    try:
        if settings.shim_token() is not None:
            os.environ.setdefault("PREFECT_API_AUTH_STRING", prefect_auth_string(settings))
    except InvalidInput:
        pass  # a blank token is refused where it is used, with the CLI's message
    return os.environ["PREFECT_API_URL"]
