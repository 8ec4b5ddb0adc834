"""Where `autopilot up` may start a Prefect server, and on which database.

The server is started only at an address of this machine, the host of PREFECT_API_URL: a
server host of many (README, "Many hosts") sets it to the name the other hosts use, so the
server listens where they reach it. Its database is SQLite in the data dir unless
`--database-url` names another (PostgreSQL, for many hosts)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from autopilot.errors import InvalidInput

# The drivers Prefect's server runs on (both ship with Prefect), and the plain spellings
# people copy from elsewhere.
_DRIVERS = {
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "sqlite": "sqlite+aiosqlite",
}


def server_database_url(url: str) -> str:
    """`url` with the async driver Prefect's server needs; `InvalidInput` for anything else.

    The message names the scheme only: the rest of a database URL may hold a password."""
    scheme, sep, rest = url.strip().partition("://")
    driver = _DRIVERS.get(scheme.lower()) if sep else None
    if driver is None or not rest:
        shown = scheme if sep else "none"
        raise InvalidInput(
            "--database-url must look like postgresql+asyncpg://user@host:5432/prefect or "
            f"sqlite+aiosqlite:////path/prefect.db (scheme given: {shown})",
            error_code="INVALID_DATABASE_URL",
        )
    return f"{driver}://{rest}"


def bind_address(api_url: str) -> str | None:
    """The address of this machine a server for `api_url` listens on, or None when the URL
    names another machine (a server this process cannot start)."""
    host = urlsplit(api_url).hostname or ""
    if host in {"localhost", ""}:
        return "127.0.0.1"
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))  # only an address of this machine can be bound
    except OSError:
        return None
    return address
