"""Fixtures of the REST-shim tests: an HTTP client on the session's shim."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.shim import Api


@pytest.fixture
def api(shim_url: str) -> Iterator[Api]:
    """The seven endpoints of the session's shim (no token); generous timeouts, noisy box."""
    with httpx.Client(base_url=shim_url, timeout=httpx.Timeout(60, connect=10)) as client:
        yield Api(client)
