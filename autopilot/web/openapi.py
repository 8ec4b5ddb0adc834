"""The OpenAPI document tells the truth: every route's real statuses with the error envelope,
no 422 (validation errors answer 400), the bearer scheme when the shim has a token."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp

from autopilot.api_models import ErrorEnvelope
from autopilot.web.answers import MAX_BODY_BYTES, PREFIX
from autopilot.web.asgi import EnvelopeSafetyNet

_ERROR_DESCRIPTIONS = {
    400: "Bad input: a missing or invalid field (INVALID_STEP, FROM_STEP_NEEDS_FORCE, ...), "
    "or a body that is not JSON.",
    401: "The shim has a token (AUTOPILOT_API_TOKEN) and the request lacks "
    "`Authorization: Bearer <token>` (UNAUTHORIZED). Checked before the body is read.",
    404: "The simulation does not exist on the backend (SIMULATION_NOT_FOUND).",
    409: "Not allowed in the current state (NOT_ACTIVE, ALREADY_PAUSED, NOT_PAUSED, "
    "STEP_NOT_REACHED).",
    413: f"The body is larger than the shim accepts ({MAX_BODY_BYTES} bytes by default; "
    "BODY_TOO_LARGE).",
    500: "A bug in the shim: see its log (INTERNAL).",
    502: "The backend refused a call the auto-pilot did not expect it to refuse, or answered "
    "something it cannot read (BACKEND_REJECTED, BACKEND_AUTH, BACKEND_PROTOCOL).",
    503: "The backend or the Prefect API is unreachable, or the auto-pilot deployment is not "
    "registered: retry later (BACKEND_UNAVAILABLE, PREFECT_UNAVAILABLE, DEPLOYMENT_NOT_FOUND).",
}
# Every guarded route can answer these: validation, the token, the size, a bug.
_EVERY_ROUTE = (400, 401, 413, 500)
# What each operation can raise beyond those (autopilot/service/operations.py): backend calls give
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
