"""The models the flow's steps take and return (one in, one out; no dict hand-offs)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from autopilot.api_models import Mode


class Step(StrEnum):
    """Step names exactly as the original API spells them (CONTRACT.md part A)."""

    IDLE = "idle"
    PREPARING = "preparing"
    STARTING = "starting"
    MONITORING = "monitoring"
    GENERATING_REPORT = "generating_report"
    COMPLETED = "completed"
    FAILED = "failed"


# A run that reached one of these steps may have started the simulation on the backend.
STARTED_STEPS = frozenset(
    {Step.STARTING.value, Step.MONITORING.value, Step.GENERATING_REPORT.value}
)

# The steps a restart may begin at (`start force from_step=...`), in the flow's order.
RESTARTABLE_STEPS = (Step.PREPARING, Step.STARTING, Step.MONITORING, Step.GENERATING_REPORT)


def steps_before(step: Step) -> tuple[Step, ...]:
    """The restartable steps the flow runs before `step` (none before PREPARING)."""
    return RESTARTABLE_STEPS[: RESTARTABLE_STEPS.index(step)]


class RunOptions(BaseModel):
    """Per-run options; None means "use the worker's settings"."""

    platform: str = "parallel"
    max_rounds: int | None = Field(default=None, ge=1)
    poll_interval: float | None = Field(default=None, gt=0)
    stall_timeout: float | None = Field(default=None, gt=0)
    outage_tolerance: float | None = Field(default=None, ge=0)
    # First wait after a failed backend call (doubling up to 30 s); tests make it short.
    outage_base_delay: float | None = Field(default=None, gt=0)


class SimulationConfig(BaseModel):
    """The per-simulation Prefect variable: the mode and the current generation.

    `generation_id` is random and part of every checkpoint key: a generation counter that
    restarts (a lost Prefect database) can never reach the checkpoints of an earlier life.
    """

    mode: Mode = Mode.MANUAL
    generation: int = 0
    generation_id: str | None = None
    # What began the current generation ("stop", "reset", "force"): status says so until it runs.
    begun_by: str | None = None
    # A generation begun at a later step: the steps before `from_step` are taken as done,
    # as generation `steps_from_generation` finished them (every attempt of it reads this).
    from_step: Step | None = None
    steps_from_generation: int | None = None


class BackendBaseline(BaseModel):
    """What the backend held when the generation began, in the backend's own terms.

    "Did this happen in our generation?" is decided against this record (a run with another
    start, a report with another id), never by comparing the backend's clock with ours.
    """

    runner_status: str = "idle"
    run_started_at: str | None = None
    run_updated_at: str | None = None
    report_ids: list[str] = Field(default_factory=list)


class StepContext(BaseModel):
    """What every step needs to know about the attempt it belongs to."""

    simulation_id: str
    generation: int = 0
    generation_id: str
    options: RunOptions = Field(default_factory=RunOptions)
    from_step: Step | None = None
    steps_from_generation: int | None = None

    def taken_as_done(self, step: Step) -> bool:
        """Whether this generation takes `step` as done (it began at a later step)."""
        return self.from_step is not None and step in steps_before(self.from_step)

    def taken_from(self) -> str:
        """Where a step taken as done was done, for progress and logs."""
        return f"taken as done from generation {self.steps_from_generation}"


class PrepareResult(BaseModel):
    simulation_id: str
    task_id: str | None = None
    already_prepared: bool = False
    # Taken before preparing, checkpointed with it: every attempt of the generation sees it.
    baseline: BackendBaseline = Field(default_factory=BackendBaseline)


class StartResult(BaseModel):
    simulation_id: str
    adopted: bool = False
    runner_status: str
    total_rounds: int = 0
    # The backend's start time of the run we started or adopted (its identity).
    run_started_at: str | None = None


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
