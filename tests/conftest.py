"""Session-wide isolation: every test session gets its own Prefect home, API port and storage.

Prefect reads its settings when first imported, so they are set here, before any test module
imports it. The Prefect server itself starts only if a test asks for it (tests/flow).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.helpers import free_port

SESSION_DIR = Path(tempfile.mkdtemp(prefix="autopilot-tests-"))
PREFECT_PORT = free_port()

os.environ.update(
    {
        "PREFECT_HOME": str(SESSION_DIR / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Cached step results must never leak between sessions (PREFECT-NOTES.md).
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(SESSION_DIR / "results"),
        "AUTOPILOT_DATA_DIR": str(SESSION_DIR / "autopilot-data"),
    }
)
for name in list(os.environ):
    # A developer's own configuration must not leak into the tests.
    if name.startswith("AUTOPILOT_") and name != "AUTOPILOT_DATA_DIR":
        del os.environ[name]

pytest_plugins = ["tests.stack_fixtures"]


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Keep a failed session's logs and databases for inspection; drop a green one's."""
    import shutil

    if exitstatus == 0:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)
    else:
        print(f"\nlogs and data of this session: {SESSION_DIR}")
