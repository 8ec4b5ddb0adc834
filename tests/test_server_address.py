"""`autopilot up --database-url` and the server's address: what is accepted, what is refused
(clearly, without echoing a password)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autopilot.devstack.server_address import bind_address, server_database_url
from autopilot.errors import InvalidInput


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql+asyncpg://postgres@db:5432/prefect", "postgresql+asyncpg://postgres@db:5432/prefect"),
        ("postgresql://u:pw@db/prefect", "postgresql+asyncpg://u:pw@db/prefect"),
        ("postgres://u@db/prefect", "postgresql+asyncpg://u@db/prefect"),
        ("sqlite:////var/lib/prefect.db", "sqlite+aiosqlite:////var/lib/prefect.db"),
        ("sqlite+aiosqlite:////x.db", "sqlite+aiosqlite:////x.db"),
    ],
)  # fmt: skip
def test_database_urls_get_the_driver_prefect_runs_on(given: str, used: str):
    assert server_database_url(given) == used


@pytest.mark.parametrize(
    "given", ["mysql://root:hunter2@db/prefect", "db:5432/prefect", "postgresql://", ""]
)
def test_other_database_urls_are_refused_without_echoing_them(given: str):
    with pytest.raises(InvalidInput) as refused:
        server_database_url(given)
    assert refused.value.error_code == "INVALID_DATABASE_URL"
    assert "hunter2" not in refused.value.message


def test_a_server_listens_only_at_an_address_of_this_machine():
    assert bind_address("http://127.0.0.1:4200/api") == "127.0.0.1"
    assert bind_address("http://localhost:4200/api") == "127.0.0.1"
    assert bind_address("http://127.0.0.2:4200/api") == "127.0.0.2"
    # TEST-NET-1 (RFC 5737): never an address of this machine.
    assert bind_address("http://192.0.2.1:4200/api") is None


def test_up_refuses_a_bad_database_url_with_a_clear_error_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "-c", "from autopilot.cli import main; main()", "up",
         "--database-url", "mysql://root:hunter2@db/prefect"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "hunter2" not in result.stderr + result.stdout
