"""Request bodies. Unknown keys are ignored (as multimo does) except in fault switches,
where a typo would silently disable the fault a test relies on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.faults import FaultSpec

SimulationId = Field(min_length=1, max_length=200)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateRequest(_Body):
    project_id: str | None = None
    enable_twitter: bool = True
    enable_reddit: bool = True
    agents: int = Field(default=20, ge=1, le=100_000)
    total_simulation_hours: float = Field(default=72, gt=0, le=100_000)
    minutes_per_round: int = Field(default=60, ge=1, le=100_000)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    # Per-simulation override of the server's seconds per round (tests use it to slow one run).
    round_seconds: float | None = Field(default=None, ge=0, le=3600)
    faults: FaultSpec | None = None


class SimulationRef(_Body):
    simulation_id: str = SimulationId


class PrepareStatusRequest(SimulationRef):
    task_id: str | None = None


class StartRequest(SimulationRef):
    platform: Literal["parallel", "twitter", "reddit"] = "parallel"
    max_rounds: int | None = Field(default=None, ge=1)
    force: bool = False


class ReportStatusRequest(SimulationRef):
    # Any type: its mere presence triggers the 500 quirk, whatever its value.
    task_id: Any = None


class FaultsRequest(FaultSpec):
    simulation_id: str = SimulationId
    clear: bool = False


class LoginRequest(_Body):
    email: str | None = None
    password: str | None = None
