"""Request bodies. Unknown keys are ignored (as multimo does) except in fault switches,
where a typo would silently disable the fault a test relies on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.faults import FIXED_ROUTES, FaultSpec

SimulationId = Field(min_length=1, max_length=200)
# A chosen id is one path component and one URL segment: no "/", no leading "." (so never
# "." or ".."), nothing that needs quoting.
CHOSEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateRequest(_Body):
    # Optional: tests need ids they choose (e.g. two differing only in punctuation).
    simulation_id: str | None = Field(default=None, pattern=CHOSEN_ID_PATTERN)
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

    @field_validator("simulation_id")
    @classmethod
    def _not_a_route(cls, value: str | None) -> str | None:
        # /api/simulation/start is a route: a simulation called "start" could not be told
        # apart from it in paths (see faults.FIXED_ROUTES).
        if value in FIXED_ROUTES:
            raise ValueError(f"{value!r} names a fixed route and cannot be a simulation id")
        return value


class SimulationRef(_Body):
    simulation_id: str = SimulationId


class PrepareStatusRequest(SimulationRef):
    task_id: str | None = None


class StartRequest(SimulationRef):
    platform: Literal["parallel", "twitter", "reddit"] = "parallel"
    max_rounds: int | None = Field(default=None, ge=1)
    force: bool = False


class ReportRequest(SimulationRef):
    # multimo: a completed report is answered again (`already_generated`) unless forced.
    force_regenerate: bool = False


class ReportStatusRequest(SimulationRef):
    # Any type: its mere presence triggers the 500 quirk, whatever its value.
    task_id: Any = None


class FaultsRequest(FaultSpec):
    simulation_id: str = SimulationId
    clear: bool = False


class LoginRequest(_Body):
    email: str | None = None
    password: str | None = None
