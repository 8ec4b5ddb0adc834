"""The models the flow's steps take and return (one in, one out; no dict hand-offs)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Step(StrEnum):
    """Step names exactly as the original API spells them (CONTRACT.md part A)."""

    IDLE = "idle"
    PREPARING = "preparing"
    STARTING = "starting"
    MONITORING = "monitoring"
    GENERATING_REPORT = "generating_report"
    COMPLETED = "completed"
    FAILED = "failed"


class RunOptions(BaseModel):
    """Per-run options; None means "use the worker's settings"."""

    platform: str = "parallel"
    max_rounds: int | None = Field(default=None, ge=1)
    poll_interval: float | None = Field(default=None, gt=0)
    stall_timeout: float | None = Field(default=None, gt=0)
    outage_tolerance: float | None = Field(default=None, ge=0)


class StepContext(BaseModel):
    """What every step needs to know about the attempt it belongs to."""

    simulation_id: str
    generation: int = 0
    # Backend activity older than this belongs to an earlier generation, not to us.
    generation_started_at: datetime
    options: RunOptions = Field(default_factory=RunOptions)


class PrepareResult(BaseModel):
    simulation_id: str
    task_id: str | None = None
    already_prepared: bool = False


class StartResult(BaseModel):
    simulation_id: str
    adopted: bool = False
    runner_status: str
    total_rounds: int = 0


class MonitorResult(BaseModel):
    simulation_id: str
    current_round: int = 0
    total_rounds: int = 0
    twitter_actions: int = 0
    reddit_actions: int = 0


class ReportResult(BaseModel):
    simulation_id: str
    report_id: str
    adopted: bool = False
    chart_path: str | None = None
    markdown_chars: int = 0


class Outcome(BaseModel):
    simulation_id: str
    generation: int
    report_id: str
    completed_at: datetime
