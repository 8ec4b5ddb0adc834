"""Two pure-ASGI layers: no answer leaves the shim without the envelope, and no body is read
before the token is checked or past the size limit (see `autopilot.web.app` for the order)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autopilot.api_models import ErrorCode
from autopilot.web.answers import INTERNAL_MESSAGE, PREFIX, failure

logger = logging.getLogger("autopilot.web")

# Not ours to swallow: cancellation and the process being told to end.
_PASSED_THROUGH = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def _must_propagate(exc: BaseException) -> bool:
    """Cancellation and shutdown, alone or inside an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(_PASSED_THROUGH) is not None
    return isinstance(exc, _PASSED_THROUGH)


class EnvelopeSafetyNet:
    """The outermost layer: nothing reaches uvicorn, whose own 500 is plain text.

    Starlette's error middleware (and so FastAPI's `Exception` handler) only sees
    `Exception`s; Prefect's `Pause` and `Abort` derive from `BaseException`. Whatever still
    escapes is logged with its traceback and answered 500 INTERNAL, never with the traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BaseException as exc:
            if started or _must_propagate(exc):
                # Too late for an envelope (the server drops the connection), or not ours.
                raise
            logger.exception("unexpected error on %s", scope.get("path"))
            await failure(500, INTERNAL_MESSAGE, ErrorCode.INTERNAL)(scope, receive, send)


class BodyTooLarge(Exception):
    """The request's body passed the limit (internal to RequestGuard)."""


class ClientGone(Exception):
    """The client disconnected before its body was complete (internal to RequestGuard)."""


def declared_length(headers: Headers) -> int:
    """The body's announced size; 0 when unannounced (chunked) or unreadable (the server's
    HTTP parser refuses malformed framing before we are called)."""
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0


async def read_capped(receive: Receive, limit: int) -> bytes:
    """The whole body, counted as it arrives: `BodyTooLarge` as soon as it passes `limit`
    (the chunk that passed it is dropped, so no more than `limit` bytes are ever held)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already in one message, then the connection's
    own messages (its disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def bearer_matches(headers: Headers, token: bytes) -> bool:
    """`Authorization: Bearer <token>`, the scheme case-insensitive, compared in constant time."""
    scheme, _, supplied = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Headers are latin-1 text in ASGI: back to the bytes the client sent.
    return secrets.compare_digest(supplied.strip().encode("latin-1"), token)


class RequestGuard:
    """In front of the auto-pilot routes: the token, then the body's size, both before the
    route (and FastAPI's body parsing) sees a byte. `/healthz` and the docs are not guarded."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(f"{PREFIX}/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.token is not None and not bearer_matches(headers, self.token):
            await self.refuse(
                scope,
                receive,
                send,
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                ErrorCode.UNAUTHORIZED,
                {"WWW-Authenticate": "Bearer"},
            )
            return
        try:
            if declared_length(headers) > self.max_body_bytes:
                raise BodyTooLarge
            body = await read_capped(receive, self.max_body_bytes)
        except BodyTooLarge:
            await self.refuse(
                scope,
                receive,
                send,
                413,
                f"the request body is larger than {self.max_body_bytes} bytes",
                ErrorCode.BODY_TOO_LARGE,
            )
            return
        except ClientGone:
            return  # nobody is left to answer
        await self.app(scope, replay(body, receive), send)

    @staticmethod
    async def refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        status_code: int,
        message: str,
        code: ErrorCode,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # The body may be left unread on the wire: the connection cannot carry another request.
        response = failure(status_code, message, code, {**(headers or {}), "Connection": "close"})
        await response(scope, receive, send)
