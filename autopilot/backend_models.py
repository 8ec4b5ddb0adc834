"""Pydantic models of the multimo backend's answers (CONTRACT.md part B).

Lenient on purpose: the real backend sends nulls and extra keys; we keep what we read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class BackendModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _zero_if_none(value: Any) -> Any:
    return 0 if value is None else value


# A simulation in one of these states has been prepared (multimo keeps `running` even after
# its run completed).
PREPARED_STATES = frozenset({"ready", "running", "paused", "completed", "stopped"})


class LoginAnswer(BackendModel):
    # Optional: an answer without a token is a refused login (BackendAuthError), not garbage.
    token: str | None = None


class SimulationCreated(BackendModel):
    # Every later call names the simulation by this id: an empty one is no answer at all.
    simulation_id: str = Field(min_length=1)


class SimulationInfo(BackendModel):
    simulation_id: str
    status: str = "created"
    error: str | None = None

    @property
    def is_prepared(self) -> bool:
        return self.status in PREPARED_STATES


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
    # multimo's finished task carries the preparation's own outcome here: a task can end
    # `completed` while `result.status` is `failed` (the reason in `result.error`).
    result: dict[str, Any] | None = None

    _zero = field_validator("progress", mode="before")(_zero_if_none)

    @property
    def already_ready(self) -> bool:
        """The backend says the simulation is prepared (asked by simulation id)."""
        return self.already_prepared or self.status == "ready"

    @property
    def task_ended(self) -> bool:
        """The preparation task finished, successfully or not: its outcome must be checked."""
        return self.status in {"completed", "failed"}

    @property
    def succeeded(self) -> bool:
        """The backend reports a finished, successful preparation (still confirm that the
        simulation itself is prepared: see `SimulationInfo.is_prepared`)."""
        return self.already_ready or (self.status == "completed" and self.failure is None)

    @property
    def failure(self) -> str | None:
        """Why the preparation failed, if the task or its result says it did."""
        result = self.result if isinstance(self.result, dict) else {}
        if self.status == "failed" or result.get("status") == "failed":
            reason = result.get("error") or self.error or self.message
            return str(reason) if reason else "the backend gave no reason"
        return None


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
    started_at: str | None = None
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
    started_at: str | None = None


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


class TimelineRound(BackendModel):
    """One round of `GET /api/simulation/<id>/timeline` (multimo sums a round's actions)."""

    round_num: int
    twitter_actions: int = 0
    reddit_actions: int = 0
    active_agents_count: int = 0
    action_types: dict[str, int] = {}


class Timeline(BackendModel):
    rounds_count: int = 0
    timeline: list[TimelineRound] = []


class Report(BackendModel):
    report_id: str
    simulation_id: str | None = None
    status: str = "pending"
    error: str | None = None
    markdown_content: str | None = None
    chart_path: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
