"""Pydantic models of the multimo backend's answers (CONTRACT.md part B).

Lenient on purpose: the real backend sends nulls and extra keys; we keep what we read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class BackendModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _zero_if_none(value: Any) -> Any:
    return 0 if value is None else value


class SimulationInfo(BackendModel):
    simulation_id: str
    status: str = "created"


class PrepareAccepted(BackendModel):
    task_id: str | None = None
    already_prepared: bool = False
    status: str | None = None


class PrepareStatus(BackendModel):
    task_id: str | None = None
    status: str = "not_started"
    progress: int = 0
    message: str | None = None
    error: str | None = None
    already_prepared: bool = False

    _zero = field_validator("progress", mode="before")(_zero_if_none)

    @property
    def is_ready(self) -> bool:
        """Preparation finished: the simulation can be started."""
        return self.already_prepared or self.status in {"ready", "completed"}


class RunStatus(BackendModel):
    simulation_id: str | None = None
    runner_status: str = "idle"
    current_round: int = 0
    total_rounds: int = 0
    progress_percent: float = 0.0
    twitter_actions_count: int = 0
    reddit_actions_count: int = 0
    total_actions_count: int = 0
    error: str | None = None
    updated_at: str | None = None

    _zero = field_validator(
        "current_round",
        "total_rounds",
        "progress_percent",
        "twitter_actions_count",
        "reddit_actions_count",
        "total_actions_count",
        mode="before",
    )(_zero_if_none)


class StartAccepted(BackendModel):
    simulation_id: str | None = None
    runner_status: str | None = None
    total_rounds: int | None = None


class ReportAccepted(BackendModel):
    report_id: str | None = None
    task_id: str | None = None
    status: str | None = None
    already_generated: bool = False


class ReportTaskStatus(BackendModel):
    status: str = "pending"
    progress: int = 0
    message: str | None = None
    report_id: str | None = None

    _zero = field_validator("progress", mode="before")(_zero_if_none)


class Report(BackendModel):
    report_id: str
    simulation_id: str | None = None
    status: str = "pending"
    error: str | None = None
    markdown_content: str | None = None
    chart_path: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
