"""The REST shim: the seven `POST /api/simulation/auto-pilot/*` endpoints of the original.

Routes are thin: a request model in, one service call, the envelope out. Errors are mapped
once, here: `{success: false, error, error_code}` with the error class's HTTP status.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from autopilot.api_models import ConfigRequest, SimulationRequest, StartRequest
from autopilot.errors import AutopilotError, InvalidInput
from autopilot.service import AutopilotService
from autopilot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

PREFIX = "/api/simulation/auto-pilot"


def ok(data: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The success envelope."""
    body = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return {"success": True, "data": body}


def failure(status_code: int, message: str, error_code: str) -> JSONResponse:
    """The failure envelope."""
    return JSONResponse(
        status_code=status_code,
        content={"success": False, "error": message, "error_code": error_code},
    )


def _validation_failure(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    id_errors = [e for e in errors if e.get("loc", ())[-1:] == ("simulation_id",)]
    # As the original: absent, null and "" all count as missing.
    if any(e.get("type") == "missing" or e.get("input") in (None, "") for e in id_errors):
        return failure(400, "simulation_id is required", "MISSING_SIMULATION_ID")
    if id_errors:
        return failure(400, "simulation_id must be a non-empty string", "INVALID_SIMULATION_ID")
    if any(e.get("type") == "json_invalid" for e in errors):
        return failure(400, "the request body is not valid JSON", "INVALID_JSON")
    details = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
        for e in errors
    )
    return failure(400, f"invalid request: {details}", InvalidInput.error_code)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the shim on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(
    settings: Settings | None = None, service: AutopilotService | None = None
) -> FastAPI:
    """The FastAPI application (OpenAPI at /docs)."""
    settings = settings or get_settings()
    service = service or AutopilotService(settings)
    token = settings.api_token.get_secret_value() if settings.api_token else None

    async def require_token(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("Authorization", "")
        supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not secrets.compare_digest(supplied.encode(), token.encode()):
            raise AutopilotError("missing or wrong bearer token", error_code="UNAUTHORIZED")

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

    app = FastAPI(
        lifespan=lifespan,
        title="multimo auto-pilot",
        description="The seven auto-pilot endpoints of the original system, on Prefect.",
        version="0.1.0",
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(AutopilotError)
    async def on_autopilot_error(request: Request, exc: AutopilotError) -> JSONResponse:
        status = 401 if exc.error_code == "UNAUTHORIZED" else exc.status_code
        return failure(status, exc.message, exc.error_code)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_failure(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (an undecodable body, an unknown path, a wrong method).
        code = {400: "INVALID_JSON", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return failure(exc.status_code, str(exc.detail), code.get(exc.status_code, "HTTP_ERROR"))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with its traceback, answer without one.
        logger.exception("unexpected error on %s", request.url.path)
        return failure(500, "internal error; see the shim's log", "INTERNAL")

    guarded = [Depends(require_token)]

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
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

    @app.post(f"{PREFIX}/config", dependencies=guarded)
    async def config(body: ConfigRequest) -> dict[str, Any]:
        """Set the mode (`auto` or `manual`) of a simulation's auto-pilot."""
        return ok(await service.config(body.simulation_id, body.mode))

    @app.post(f"{PREFIX}/start", dependencies=guarded)
    async def start(body: StartRequest) -> dict[str, Any]:
        """Start the auto-pilot (or return the active one); `force` starts afresh."""
        return ok(await service.start(body.simulation_id, body.force))

    @app.post(f"{PREFIX}/pause", dependencies=guarded)
    async def pause(body: SimulationRequest) -> dict[str, Any]:
        """Pause (suspend) the active auto-pilot."""
        return ok(await service.pause(body.simulation_id))

    @app.post(f"{PREFIX}/resume", dependencies=guarded)
    async def resume(body: SimulationRequest) -> dict[str, Any]:
        """Resume a paused auto-pilot from where it stopped."""
        return ok(await service.resume(body.simulation_id))

    @app.post(f"{PREFIX}/stop", dependencies=guarded)
    async def stop(body: SimulationRequest) -> dict[str, Any]:
        """Stop the auto-pilot and the simulation on the backend."""
        return ok(await service.stop(body.simulation_id))

    @app.post(f"{PREFIX}/status", dependencies=guarded)
    async def status(body: SimulationRequest) -> dict[str, Any]:
        """The auto-pilot's status; an unknown id is not an error."""
        return ok(await service.status(body.simulation_id))

    @app.post(f"{PREFIX}/reset", dependencies=guarded)
    async def reset(body: SimulationRequest) -> dict[str, Any]:
        """Cancel any active run and start a new generation; the mode is kept."""
        return ok(await service.reset(body.simulation_id))

    return app


def serve_api(settings: Settings | None = None) -> None:
    """Run the shim with uvicorn; refuses a non-loopback address without a token."""
    import uvicorn

    settings = settings or get_settings()
    if not is_loopback(settings.api_host) and settings.api_token is None:
        raise InvalidInput(
            f"refusing to bind {settings.api_host} without AUTOPILOT_API_TOKEN set",
            error_code="TOKEN_REQUIRED",
        )
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)
