"""The REST shim: the seven `POST /api/simulation/auto-pilot/*` endpoints of the original.

Routes are thin: a request model in, one service call, the envelope out. Errors are mapped
once, here: `{success: false, error, error_code}` with the error class's HTTP status.

Two pure-ASGI layers make sure no answer goes out without that envelope and no body is read
before it should be, outermost first:

    EnvelopeSafetyNet   outside Starlette's own error middleware: any BaseException still
                        escaping (Prefect's Pause/Abort are not `Exception`s) becomes a 500
                        INTERNAL envelope, if the response has not started
    CORSMiddleware      (when origins are configured) so refusals carry CORS headers too
    RequestGuard        on the auto-pilot routes: the bearer token first (401, the body
                        unread), then the body's size (413, never more than the limit held)
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autopilot.api_models import (
    SIMULATION_ID_MAX_LENGTH,
    ConfigEnvelope,
    ConfigRequest,
    ControlEnvelope,
    ErrorCode,
    ErrorEnvelope,
    HealthEnvelope,
    ResetEnvelope,
    SimulationRequest,
    StartEnvelope,
    StartRequest,
    StatusEnvelope,
)
from autopilot.errors import AutopilotError, InvalidInput
from autopilot.service import AutopilotService
from autopilot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

PREFIX = "/api/simulation/auto-pilot"
# The seven requests are a few hundred bytes; anything near this is not one of them.
MAX_BODY_BYTES = 16384
INTERNAL_MESSAGE = "internal error; see the shim's log"
# Not ours to swallow: cancellation and the process being told to end.
_PASSED_THROUGH = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def ok(data: BaseModel | dict[str, Any]) -> JSONResponse:
    """The success envelope. Returned as a response so that the route's `response_model`
    only documents the answer: every key is sent as built, none added or dropped."""
    body = data.model_dump(mode="json") if isinstance(data, BaseModel) else jsonable_encoder(data)
    return JSONResponse({"success": True, "data": body})


def failure(
    status_code: int,
    message: str,
    error_code: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The failure envelope."""
    return JSONResponse(
        status_code=status_code,
        content={"success": False, "error": message, "error_code": error_code},
        headers=headers,
    )


# -- validation errors: the field that failed decides the code ------------------------------


def _simulation_id_problem(error: Mapping[str, Any]) -> tuple[str, ErrorCode]:
    # As the original: absent, null and "" all count as missing.
    if error.get("type") == "missing" or error.get("input") in (None, ""):
        return "simulation_id is required", ErrorCode.MISSING_SIMULATION_ID
    if error.get("type") == "string_too_long":
        return (
            f"simulation_id is too long: at most {SIMULATION_ID_MAX_LENGTH} characters",
            ErrorCode.INVALID_SIMULATION_ID,
        )
    if error.get("type") == "string_pattern_mismatch":
        # The words of the service's own check (service.check_simulation_id).
        return (
            "simulation_id must be 1-200 letters, digits, '_', '.', ':' or '-' "
            "(starting with a letter or digit)",
            ErrorCode.INVALID_SIMULATION_ID,
        )
    return "simulation_id must be a non-empty string", ErrorCode.INVALID_SIMULATION_ID


def _mode_problem(error: Mapping[str, Any]) -> tuple[str, ErrorCode]:
    # The words of the service's parse_mode, which checks every string given.
    if error.get("type") == "missing" or error.get("input") is None:
        return "mode is required: 'auto' or 'manual'", ErrorCode.INVALID_MODE
    return f"mode must be 'auto' or 'manual', not {error.get('input')!r}", ErrorCode.INVALID_MODE


_FIELD_PROBLEMS = {"simulation_id": _simulation_id_problem, "mode": _mode_problem}


def _validation_failure(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    # In this order: a bad id is reported before a bad mode, as the service does.
    for field, problem in _FIELD_PROBLEMS.items():
        failed = [e for e in errors if e.get("loc", ())[-1:] == (field,)]
        if failed:
            return failure(400, *problem(failed[0]))
    if any(e.get("type") == "json_invalid" for e in errors):
        return failure(400, "the request body is not valid JSON", ErrorCode.INVALID_JSON)
    details = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
        for e in errors
    )
    return failure(400, f"invalid request: {details}", InvalidInput.error_code)


def _http_failure(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own refusals (an undecodable body, an unknown path, a wrong method)."""
    code = {400: ErrorCode.INVALID_JSON, 404: ErrorCode.NOT_FOUND}.get(
        exc.status_code, ErrorCode.HTTP_ERROR
    )
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"there is no endpoint at {request.url.path}"
    elif exc.status_code == 405:
        code = ErrorCode.METHOD_NOT_ALLOWED
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    # The headers go out too: a 405 must say what is allowed (`Allow`).
    return failure(exc.status_code, message, code, headers=exc.headers)


# -- the ASGI layers ----------------------------------------------------------------------------


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


# -- the OpenAPI document -------------------------------------------------------------------------

_ERROR_DESCRIPTIONS = {
    400: "Bad input: a missing or invalid field, a state the request needs but does not find "
    "(MODE_NOT_AUTO), or a body that is not JSON.",
    401: "The shim has a token (AUTOPILOT_API_TOKEN) and the request lacks "
    "`Authorization: Bearer <token>` (UNAUTHORIZED). Checked before the body is read.",
    404: "The simulation does not exist on the backend (SIMULATION_NOT_FOUND).",
    409: "Not allowed in the current state (NOT_ACTIVE, ALREADY_PAUSED, NOT_PAUSED).",
    413: f"The body is larger than the shim accepts ({MAX_BODY_BYTES} bytes by default; "
    "BODY_TOO_LARGE).",
    500: "A bug in the shim: see its log (INTERNAL).",
    502: "The backend refused a call the auto-pilot did not expect it to refuse "
    "(BACKEND_REJECTED, BACKEND_AUTH).",
    503: "The backend or the Prefect API is unreachable, or the auto-pilot deployment is not "
    "registered: retry later (BACKEND_UNAVAILABLE, PREFECT_UNAVAILABLE, DEPLOYMENT_NOT_FOUND).",
}
# Every guarded route can answer these: validation, the token, the size, a bug.
_EVERY_ROUTE = (400, 401, 413, 500)
# What each operation can raise beyond those (autopilot/service.py): backend calls give
# 404/502/503, Prefect calls 503, illegal transitions 409.
_ROUTE_ERRORS: dict[str, tuple[int, ...]] = {
    "config": (404, 502, 503),
    "start": (404, 502, 503),
    "pause": (409, 503),
    "resume": (409, 503),
    "stop": (404, 502, 503),
    "status": (503,),
    "reset": (404, 502, 503),
}
BEARER_SCHEME = "bearerAuth"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: the error envelope under each status it can answer."""
    return {
        status: {"model": ErrorEnvelope, "description": _ERROR_DESCRIPTIONS[status]}
        for status in sorted(statuses)
    }


def route_doc(endpoint: str, envelope: type[BaseModel]) -> dict[str, Any]:
    """The documentation arguments of one auto-pilot route."""
    return {
        "response_model": envelope,
        "responses": error_responses(*_EVERY_ROUTE, *_ROUTE_ERRORS[endpoint]),
    }


def truthful_document(document: dict[str, Any], bearer: bool) -> dict[str, Any]:
    """FastAPI's document, corrected: no 422 (validation errors answer 400), and the bearer
    scheme on the auto-pilot routes when the shim has a token."""
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            if bearer and path.startswith(f"{PREFIX}/"):
                operation["security"] = [{BEARER_SCHEME: []}]
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if bearer:
        document.setdefault("components", {})["securitySchemes"] = {
            BEARER_SCHEME: {"type": "http", "scheme": "bearer"}
        }
    return document


class ShimApp(FastAPI):
    """FastAPI with the safety net outside all of its layers, and a truthful document."""

    bearer_auth = False

    def build_middleware_stack(self) -> ASGIApp:
        # Starlette's outermost layer (ServerErrorMiddleware) lets BaseExceptions through.
        return EnvelopeSafetyNet(super().build_middleware_stack())

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = truthful_document(super().openapi(), self.bearer_auth)
        return self.openapi_schema


# -- the application ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the shim on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(
    settings: Settings | None = None,
    service: AutopilotService | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI application (OpenAPI at /docs); `max_body_bytes` caps a request's body."""
    settings = settings or get_settings()
    token = settings.shim_token()
    service = service or AutopilotService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.store.open()
        try:
            async with anyio.create_task_group() as group:
                if settings.status_cache:
                    await service.start_status_cache(group)
                yield
                group.cancel_scope.cancel()
        finally:
            await service.store.close()

    app = ShimApp(
        lifespan=lifespan,
        title="multimo auto-pilot",
        description="The seven auto-pilot endpoints of the original system, on Prefect. "
        "Every answer is an envelope: `{success: true, data}` or "
        "`{success: false, error, error_code}`.",
        version="0.1.0",
        # As the original (Flask): `/status/` is unknown (404 envelope), not a bare redirect.
        redirect_slashes=False,
    )
    app.bearer_auth = token is not None
    app.add_middleware(RequestGuard, token=token, max_body_bytes=max_body_bytes)
    if settings.cors_origins:
        # Added last, so outside the guard: preflights and refusals get CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(AutopilotError)
    async def on_autopilot_error(request: Request, exc: AutopilotError) -> JSONResponse:
        return failure(exc.status_code, exc.message, exc.error_code)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_failure(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _http_failure(request, exc)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with its traceback, answer without one.
        logger.exception("unexpected error on %s", request.url.path)
        return failure(500, INTERNAL_MESSAGE, ErrorCode.INTERNAL)

    @app.get("/healthz", response_model=HealthEnvelope, responses=error_responses(500))
    async def healthz() -> JSONResponse:
        """Liveness of the shim itself, and whether status answers from memory."""
        cache = service.status_cache
        return ok(
            {
                "status": "ok",
                "status_cache": None
                if cache is None
                else {"healthy": cache.healthy, "hits": cache.hits, "loads": cache.loads},
            }
        )

    @app.post(f"{PREFIX}/config", **route_doc("config", ConfigEnvelope))
    async def config(body: ConfigRequest) -> JSONResponse:
        """Set the mode (`auto` or `manual`) of a simulation's auto-pilot."""
        return ok(await service.config(body.simulation_id, body.mode))

    @app.post(f"{PREFIX}/start", **route_doc("start", StartEnvelope))
    async def start(body: StartRequest) -> JSONResponse:
        """Start the auto-pilot (or return the active one); `force` starts afresh."""
        return ok(await service.start(body.simulation_id, body.force))

    @app.post(f"{PREFIX}/pause", **route_doc("pause", ControlEnvelope))
    async def pause(body: SimulationRequest) -> JSONResponse:
        """Pause (suspend) the active auto-pilot."""
        return ok(await service.pause(body.simulation_id))

    @app.post(f"{PREFIX}/resume", **route_doc("resume", ControlEnvelope))
    async def resume(body: SimulationRequest) -> JSONResponse:
        """Resume a paused auto-pilot from where it stopped."""
        return ok(await service.resume(body.simulation_id))

    @app.post(f"{PREFIX}/stop", **route_doc("stop", ControlEnvelope))
    async def stop(body: SimulationRequest) -> JSONResponse:
        """Stop the auto-pilot and the simulation on the backend."""
        return ok(await service.stop(body.simulation_id))

    @app.post(f"{PREFIX}/status", **route_doc("status", StatusEnvelope))
    async def status(body: SimulationRequest) -> JSONResponse:
        """The auto-pilot's status; an unknown id is not an error (the no-state shape)."""
        return ok(await service.status(body.simulation_id))

    @app.post(f"{PREFIX}/reset", **route_doc("reset", ResetEnvelope))
    async def reset(body: SimulationRequest) -> JSONResponse:
        """Cancel any active run and start a new generation; the mode is kept."""
        return ok(await service.reset(body.simulation_id))

    return app


def serve_api(settings: Settings | None = None) -> None:
    """Run the shim with uvicorn; refuses an empty token, and a non-loopback address
    without a token."""
    import uvicorn

    settings = settings or get_settings()
    token = settings.shim_token()  # an empty one is refused on any address
    if not is_loopback(settings.api_host) and token is None:
        raise InvalidInput(
            f"refusing to bind {settings.api_host} without AUTOPILOT_API_TOKEN set",
            error_code=ErrorCode.TOKEN_REQUIRED,
        )
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)
