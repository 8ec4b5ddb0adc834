"""One Prefect client for the service side, and Prefect's failures as `PrefectUnavailable`.

Every Prefect call of the service goes through `PrefectConnection._api`, so an unreachable
Prefect API becomes `PrefectUnavailable` in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import anyio
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import PrefectHTTPStatusError

from autopilot.errors import PrefectUnavailable

A = TypeVar("A")
B = TypeVar("B")


class ConnectionRefused(httpx.TransportError):
    """The Prefect server refused the connection: it is down (or restarting)."""


class FailFastTransport(httpx.AsyncHTTPTransport):
    """Turns a refused connection into an error Prefect's client does not retry.

    Once a client has connected, Prefect retries refused connections with back-off for
    about a minute (2+4+8+16+32 s): right for a flow run, wrong for a shim request that
    should answer 503 now. Busy answers (503, 429) are still retried as Prefect does.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            raise ConnectionRefused(str(exc), request=request) from exc


@asynccontextmanager
async def unavailable_as_error() -> AsyncIterator[None]:
    """Prefect connection failures and 5xx surface as `PrefectUnavailable`."""
    try:
        yield
    except (httpx.TransportError, PrefectHTTPStatusError) as exc:
        if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500:
            raise
        raise PrefectUnavailable(f"the Prefect API is unreachable: {type(exc).__name__}") from exc


@asynccontextmanager
async def prefect() -> AsyncIterator[PrefectClient]:
    """A fresh Prefect client whose failures surface as `PrefectUnavailable`."""
    async with unavailable_as_error(), get_client() as client:
        yield client


async def both(
    first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]]
) -> tuple[A, B]:
    """Two calls at once; the first error is raised as itself (not as an exception group,
    which the shim's error handlers would not recognise)."""
    results: list[Any] = [None, None]
    errors: list[Exception] = []

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            results[index] = await call()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, first)
        group.start_soon(run, 1, second)
    if errors:
        raise errors[0]
    return results[0], results[1]


class PrefectConnection:
    """The kept client (or a fresh one per call when not opened) and what is read once."""

    def __init__(self, deployment_name: str, httpx_settings: dict[str, Any] | None = None) -> None:
        self.deployment_name = deployment_name
        # Extra settings of the kept client's httpx client (event hooks that count requests).
        self._httpx_settings = httpx_settings or {}
        # A long-lived process (the shim) keeps one client: opening one costs ~25 ms here,
        # more than a request on it.
        self._client: PrefectClient | None = None
        # Read once per process: serving the deployment again keeps its id.
        self._known_deployment_id: UUID | None = None

    async def open(self) -> None:
        """Keep one Prefect client open until `close()`."""
        if self._client is None:
            settings = {"transport": FailFastTransport(), **self._httpx_settings}
            client = get_client(httpx_settings=settings)
            await client.__aenter__()
            self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)

    @asynccontextmanager
    async def _api(self) -> AsyncIterator[PrefectClient]:
        if self._client is None:
            async with prefect() as client:
                yield client
            return
        async with unavailable_as_error():
            yield self._client
