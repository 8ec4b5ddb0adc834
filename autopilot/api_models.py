"""Request and response models of the seven auto-pilot operations (CONTRACT.md part A).

The envelope models at the end only describe the answers in the OpenAPI document: the routes
return the envelope as built today, so no key is added or dropped by a model.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The characters of autopilot/names.py's SIMULATION_ID_PATTERN; the length (at most 200) is a
# separate constraint so that a long id is told "too long", not "bad characters".
SIMULATION_ID_CHARS = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
SIMULATION_ID_MAX_LENGTH = 200
# What the service's `parse_mode` accepts; documented here, enforced there (same message).
MODE_PATTERN = r"^\s*(?:[Aa][Uu][Tt][Oo]|[Mm][Aa][Nn][Uu][Aa][Ll])\s*$"
# The steps `start` may begin at (the service also takes them in capitals).
FROM_STEP_PATTERN = r"^\s*(?:preparing|starting|monitoring|generating_report)\s*$"


class Mode(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


class Status(StrEnum):
    INACTIVE = "inactive"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    simulation_id: str = Field(
        min_length=1,
        max_length=SIMULATION_ID_MAX_LENGTH,
        pattern=SIMULATION_ID_CHARS,
        description="The multimo simulation id: letters, digits, '_', '.', ':' or '-'.",
    )


class ConfigRequest(SimulationRequest):
    # Checked in the service (case-insensitive, clear message), not by the enum: the pattern
    # only tells the document's readers (and schemathesis) what is accepted.
    mode: str = Field(
        json_schema_extra={"pattern": MODE_PATTERN},
        description="`auto` or `manual`, case-insensitive.",
    )


class StartRequest(SimulationRequest):
    force: bool = False
    # Checked in the service (clear message, INVALID_STEP), not by an enum.
    from_step: str | None = Field(
        default=None,
        json_schema_extra={"pattern": FROM_STEP_PATTERN},
        description=(
            "With force=true: begin the new generation at this step; the steps before it are "
            "taken as done from the latest generation that finished them. One of preparing, "
            "starting, monitoring, generating_report."
        ),
    )


class ResumeRequest(SimulationRequest):
    note: str | None = Field(
        default=None,
        max_length=2000,
        description=(
            "When the auto-pilot waits for a confirmation (manual mode): a note kept with the "
            "run, as the Prefect UI's Resume form takes it."
        ),
    )


class _Answer(BaseModel):
    # The routes dump every field, defaults included: the document says each key is present.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ConfigResult(_Answer):
    simulation_id: str
    mode: Mode
    message: str
    available: bool = True


class StartResult(_Answer):
    simulation_id: str
    status: Status
    current_step: str
    step_progress: int
    step_message: str
    message: str
    force_restarted: bool
    flow_run_id: str | None = None
    generation: int = 0


class ControlResult(_Answer):
    """Answer of pause, resume and stop."""

    simulation_id: str
    status: Status
    current_step: str | None = None
    message: str
    flow_run_id: str | None = None


class ResetResult(_Answer):
    simulation_id: str
    message: str
    generation: int = 0


class AutopilotStatus(_Answer):
    """The status projection; every key of the original is kept, new ones only added."""

    simulation_id: str
    mode: Mode = Mode.MANUAL
    status: Status = Status.INACTIVE
    current_step: str = "idle"
    step_progress: int = 0
    step_message: str = ""
    progress_detail: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    paused_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None
    error_step: str | None = None
    last_completed_step: str | None = None
    retry_count: int = 0
    available: bool = True
    message: str = ""
    flow_run_id: str | None = None
    generation: int = 0
    heartbeat_at: datetime | None = None
    heartbeat_age_seconds: float | None = None
    # Manual mode: the run waits (paused) for a confirmation to run `current_step`.
    awaiting_confirmation: bool = False


class NoStateStatus(_Answer):
    """The status of an id with no auto-pilot history (projection.no_state)."""

    # Closed, so that a full status never passes for this narrower shape in the envelope's
    # union (the shim serialises answers through the envelope models).
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    simulation_id: str
    mode: Mode
    status: Status
    available: bool
    message: str


class HealthCache(BaseModel):
    healthy: bool
    hits: int
    loads: int


class Health(BaseModel):
    """Liveness of the shim, and its status cache (null when status reads Prefect each time)."""

    status: Literal["ok"]
    status_cache: HealthCache | None


# -- the envelopes: what the routes return, so what the OpenAPI document shows ---------------


class ErrorCode(StrEnum):
    """Every `error_code` the shim can answer, and the few the CLI prints at start-up.

    tests/test_error_codes.py fails when a new `error_code=` is not listed here.
    """

    # autopilot/errors.py: each class's default.
    INTERNAL = "INTERNAL"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    PREFECT_UNAVAILABLE = "PREFECT_UNAVAILABLE"
    BACKEND_REJECTED = "BACKEND_REJECTED"
    BACKEND_AUTH = "BACKEND_AUTH"
    BACKEND_PROTOCOL = "BACKEND_PROTOCOL"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_INPUT = "INVALID_INPUT"
    STEP_FAILED = "STEP_FAILED"
    # autopilot/service/operations.py and autopilot/service/prefect_store.py.
    INVALID_SIMULATION_ID = "INVALID_SIMULATION_ID"
    INVALID_MODE = "INVALID_MODE"
    SIMULATION_NOT_FOUND = "SIMULATION_NOT_FOUND"
    NOT_ACTIVE = "NOT_ACTIVE"
    ALREADY_PAUSED = "ALREADY_PAUSED"
    NOT_PAUSED = "NOT_PAUSED"
    DEPLOYMENT_NOT_FOUND = "DEPLOYMENT_NOT_FOUND"
    INVALID_STEP = "INVALID_STEP"
    FROM_STEP_NEEDS_FORCE = "FROM_STEP_NEEDS_FORCE"
    STEP_NOT_REACHED = "STEP_NOT_REACHED"
    # tasks/*.py: a step's failure, should one ever travel up to an answer.
    SIMULATION_FAILED = "SIMULATION_FAILED"
    SIMULATION_STOPPED = "SIMULATION_STOPPED"
    SIMULATION_STALLED = "SIMULATION_STALLED"
    BACKEND_OUTAGE = "BACKEND_OUTAGE"
    PREPARE_FAILED = "PREPARE_FAILED"
    CHECKPOINT_NOT_WRITTEN = "CHECKPOINT_NOT_WRITTEN"
    # Inside a run only (a step yielding, a stopped run): never an answer, listed so that
    # every code in the tree has one home.
    STEP_INTERRUPTED = "STEP_INTERRUPTED"
    RUN_STOPPED = "RUN_STOPPED"
    SUPERSEDED = "SUPERSEDED"
    REFUSED = "REFUSED"
    # autopilot/web/app.py: the shim's own refusals.
    MISSING_SIMULATION_ID = "MISSING_SIMULATION_ID"
    INVALID_JSON = "INVALID_JSON"
    UNAUTHORIZED = "UNAUTHORIZED"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    HTTP_ERROR = "HTTP_ERROR"
    # autopilot/web/app.py, at start-up only (the CLI prints them; no request sees them).
    TOKEN_REQUIRED = "TOKEN_REQUIRED"
    EMPTY_TOKEN = "EMPTY_TOKEN"
    STARTUP_FAILED = "STARTUP_FAILED"
    # autopilot/worker/sweep.py, at a worker's start-up only.
    INVALID_TIMINGS = "INVALID_TIMINGS"
    # The CLI's `up --database-url`, `notify` and the log format switch.
    INVALID_DATABASE_URL = "INVALID_DATABASE_URL"
    INVALID_LOG_FORMAT = "INVALID_LOG_FORMAT"
    INVALID_OUTCOME = "INVALID_OUTCOME"
    INVALID_WEBHOOK_URL = "INVALID_WEBHOOK_URL"
    INVALID_ID = "INVALID_ID"
    NOTIFICATION_NOT_FOUND = "NOTIFICATION_NOT_FOUND"


class ErrorEnvelope(BaseModel):
    """Every failure: one human sentence and a stable machine code."""

    success: Literal[False]
    error: str
    error_code: ErrorCode


class _Success(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    success: Literal[True] = True


class ConfigEnvelope(_Success):
    data: ConfigResult


class StartEnvelope(_Success):
    data: StartResult


class ControlEnvelope(_Success):
    data: ControlResult


class StatusEnvelope(_Success):
    # The no-state shape first: it is the narrower one (every key required).
    data: NoStateStatus | AutopilotStatus


class ResetEnvelope(_Success):
    data: ResetResult


class HealthEnvelope(_Success):
    data: Health
