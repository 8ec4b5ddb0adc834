"""Request and response models of the seven auto-pilot operations (CONTRACT.md part A)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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

    simulation_id: str = Field(min_length=1, max_length=200)


class ConfigRequest(SimulationRequest):
    # Validated in the service (case-insensitive, clear message), not by the enum.
    mode: str | None = None


class StartRequest(SimulationRequest):
    force: bool = False


class ConfigResult(BaseModel):
    simulation_id: str
    mode: Mode
    message: str
    available: bool = True


class StartResult(BaseModel):
    simulation_id: str
    status: Status
    current_step: str
    step_progress: int
    step_message: str
    message: str
    force_restarted: bool
    flow_run_id: str | None = None
    generation: int = 0


class ControlResult(BaseModel):
    """Answer of pause, resume and stop."""

    simulation_id: str
    status: Status
    current_step: str | None = None
    message: str
    flow_run_id: str | None = None


class ResetResult(BaseModel):
    simulation_id: str
    message: str
    generation: int = 0


class AutopilotStatus(BaseModel):
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
