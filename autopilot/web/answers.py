"""The shim's failure answers: the envelope (`failure`) and the mapping of FastAPI's own
refusals (validation, unknown path, wrong method) onto stable error codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from autopilot.api_models import SIMULATION_ID_MAX_LENGTH, ErrorCode
from autopilot.errors import InvalidInput
from autopilot.service.rules import SIMULATION_ID_RULE

PREFIX = "/api/simulation/auto-pilot"
# The seven requests are a few hundred bytes; anything near this is not one of them.
MAX_BODY_BYTES = 16384
INTERNAL_MESSAGE = "internal error; see the shim's log"


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
        # The words of the service's own check (rules.check_simulation_id).
        return (
            SIMULATION_ID_RULE,
            ErrorCode.INVALID_SIMULATION_ID,
        )
    return "simulation_id must be a non-empty string", ErrorCode.INVALID_SIMULATION_ID


def _mode_problem(error: Mapping[str, Any]) -> tuple[str, ErrorCode]:
    # The words of the service's parse_mode, which checks every string given.
    if error.get("type") == "missing" or error.get("input") is None:
        return "mode is required: 'auto' or 'manual'", ErrorCode.INVALID_MODE
    return f"mode must be 'auto' or 'manual', not {error.get('input')!r}", ErrorCode.INVALID_MODE


_FIELD_PROBLEMS = {"simulation_id": _simulation_id_problem, "mode": _mode_problem}


def validation_failure(exc: RequestValidationError) -> JSONResponse:
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


def http_failure(request: Request, exc: StarletteHTTPException) -> JSONResponse:
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
