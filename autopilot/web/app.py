"""The REST shim: the seven `POST /api/simulation/auto-pilot/*` endpoints of the original.

Routes are thin: a request model in, one service call, the envelope model out (so the
OpenAPI document shows every answer's shape, and FastAPI serialises exactly that shape).
Errors are mapped once, here and in `autopilot.web.answers`: `{success: false, error,
error_code}` with the error class's HTTP status.

Two pure-ASGI layers (`autopilot.web.asgi`) make sure no answer goes out without that envelope
and no body is read before it should be, outermost first:

    EnvelopeSafetyNet   outside Starlette's own error middleware: any BaseException still
                        escaping (Prefect's Pause/Abort are not `Exception`s) becomes a 500
                        INTERNAL envelope, if the response has not started
    CORSMiddleware      (when origins are configured) so refusals carry CORS headers too
    RequestGuard        on the auto-pilot routes: the bearer token first (401, the body
                        unread), then the body's size (413, never more than the limit held)
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from autopilot.api_models import (
    ConfigEnvelope,
    ConfigRequest,
    ControlEnvelope,
    ErrorCode,
    Health,
    HealthCache,
    HealthEnvelope,
    ResetEnvelope,
    ResumeRequest,
    SimulationRequest,
    StartEnvelope,
    StartRequest,
    StatusEnvelope,
)
from autopilot.errors import AutopilotError, InvalidInput
from autopilot.logs import basic_config
from autopilot.service.operations import AutopilotService
from autopilot.settings import Settings, get_settings
from autopilot.web.answers import (
    INTERNAL_MESSAGE,
    MAX_BODY_BYTES,
    PREFIX,
    failure,
    http_failure,
    validation_failure,
)
from autopilot.web.asgi import RequestGuard
from autopilot.web.metrics import ShimMetrics
from autopilot.web.openapi import ShimApp, error_responses, route_doc

logger = logging.getLogger(__name__)

__all__ = ["MAX_BODY_BYTES", "PREFIX", "ShimApp", "create_app", "serve_api"]


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
    metrics = ShimMetrics(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.store.open()
        try:
            async with anyio.create_task_group() as group:
                if settings.status_cache:
                    await service.start_status_cache(group)
                group.start_soon(metrics.follow_events)
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
        return validation_failure(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_failure(request, exc)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with its traceback, answer without one.
        logger.exception("unexpected error on %s", request.url.path)
        return failure(500, INTERNAL_MESSAGE, ErrorCode.INTERNAL)

    @app.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
    async def metrics_page() -> PlainTextResponse:
        """Prometheus' text format (autopilot/web/metrics.py lists the metrics)."""
        await metrics.refresh()
        return PlainTextResponse(
            generate_latest(metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    @app.get("/healthz", response_model=HealthEnvelope, responses=error_responses(500))
    async def healthz() -> HealthEnvelope:
        """Liveness of the shim itself, and whether status answers from memory."""
        cache = service.status_cache
        return HealthEnvelope(
            data=Health(
                status="ok",
                status_cache=None
                if cache is None
                else HealthCache(healthy=cache.healthy, hits=cache.hits, loads=cache.loads),
            )
        )

    @app.post(f"{PREFIX}/config", **route_doc("config", ConfigEnvelope))
    async def config(body: ConfigRequest) -> ConfigEnvelope:
        """Set the mode of a simulation's auto-pilot: `auto` runs unattended, `manual` waits
        for a confirmation (`resume`) after each step."""
        return ConfigEnvelope(data=await service.config(body.simulation_id, body.mode))

    @app.post(f"{PREFIX}/start", **route_doc("start", StartEnvelope))
    async def start(body: StartRequest) -> StartEnvelope:
        """Start the auto-pilot (or return the active one); `force` starts afresh, at
        `from_step` if given."""
        return StartEnvelope(
            data=await service.start(body.simulation_id, body.force, body.from_step)
        )

    @app.post(f"{PREFIX}/pause", **route_doc("pause", ControlEnvelope))
    async def pause(body: SimulationRequest) -> ControlEnvelope:
        """Pause (suspend) the active auto-pilot."""
        return ControlEnvelope(data=await service.pause(body.simulation_id))

    @app.post(f"{PREFIX}/resume", **route_doc("resume", ControlEnvelope))
    async def resume(body: ResumeRequest) -> ControlEnvelope:
        """Resume a paused auto-pilot from where it stopped; in manual mode, confirm the
        step it waits for (with an optional note kept with the run)."""
        return ControlEnvelope(data=await service.resume(body.simulation_id, body.note))

    @app.post(f"{PREFIX}/stop", **route_doc("stop", ControlEnvelope))
    async def stop(body: SimulationRequest) -> ControlEnvelope:
        """Stop the auto-pilot and the simulation on the backend."""
        return ControlEnvelope(data=await service.stop(body.simulation_id))

    @app.post(f"{PREFIX}/status", **route_doc("status", StatusEnvelope))
    async def status(body: SimulationRequest) -> StatusEnvelope:
        """The auto-pilot's status; an unknown id is not an error (the no-state shape)."""
        return StatusEnvelope(data=await service.status(body.simulation_id))

    @app.post(f"{PREFIX}/reset", **route_doc("reset", ResetEnvelope))
    async def reset(body: SimulationRequest) -> ResetEnvelope:
        """Cancel any active run and start a new generation; the mode is kept."""
        return ResetEnvelope(data=await service.reset(body.simulation_id))

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
    # In JSON, uvicorn's loggers keep Prefect's configuration (its console handler writes JSON
    # lines, autopilot/logs.py) instead of uvicorn's own formats.
    json_logs = os.environ.get("AUTOPILOT_LOG_FORMAT") == "json"
    log_config = None if json_logs else uvicorn.config.LOGGING_CONFIG
    if json_logs:
        # uvicorn's loggers then reach the root logger's JSON handler; the start-up and
        # access lines are INFO, as in the human format.
        basic_config()
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.INFO)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=log_config,
    )
