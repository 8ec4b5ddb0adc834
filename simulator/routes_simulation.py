"""The multimo /api/simulation endpoints: create, read, prepare, start, run-status, stop."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from simulator import faults, prepare, timeline
from simulator.api_models import (
    CreateRequest,
    PrepareStatusRequest,
    SimulationRef,
    StartRequest,
)
from simulator.context import Context, get_context
from simulator.errors import ApiError, ok
from simulator.runner import run_view
from simulator.store import now_iso, write_faults

router = APIRouter(prefix="/api/simulation")
Ctx = Annotated[Context, Depends(get_context)]


def simulation_view(ctx: Context, sim: dict[str, Any]) -> dict[str, Any]:
    config_path = ctx.store.sim_dir(sim["simulation_id"]) / "config.json"
    return {
        "simulation_id": sim["simulation_id"],
        "project_id": sim["project_id"],
        "status": sim["status"],
        "enable_twitter": bool(sim["enable_twitter"]),
        "enable_reddit": bool(sim["enable_reddit"]),
        "agents": sim["agents"],
        "total_simulation_hours": sim["total_simulation_hours"],
        "minutes_per_round": sim["minutes_per_round"],
        "total_rounds": sim["total_rounds"],
        "seed": sim["seed"],
        "round_seconds": sim["round_seconds"],
        "prepared": bool(sim["prepared"]),
        "config_path": str(config_path) if sim["prepared"] else None,
        # Why the last preparation's result failed (status "failed"); null otherwise.
        "error": sim["error"],
        "created_at": sim["created_at"],
        "updated_at": sim["updated_at"],
    }


def _require(ctx: Context, simulation_id: str) -> dict[str, Any]:
    sim = ctx.store.get_simulation(simulation_id)
    if sim is None:
        raise ApiError(404, f"simulation {simulation_id} not found")
    return sim


@router.post("/create")
def create(body: CreateRequest, ctx: Ctx) -> dict[str, Any]:
    if not (body.enable_twitter or body.enable_reddit):
        raise ApiError(400, "enable at least one platform (twitter or reddit)")
    total_rounds = int(body.total_simulation_hours * 60) // body.minutes_per_round
    if total_rounds < 1:
        raise ApiError(400, "total_simulation_hours is shorter than one round")
    sim_id = body.simulation_id or f"sim_{uuid.uuid4().hex[:12]}"
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    now = now_iso()
    with ctx.store.write() as conn:
        # Checked under the write lock, so two creates of one chosen id cannot both pass.
        if conn.execute("SELECT 1 FROM simulations WHERE simulation_id = ?", (sim_id,)).fetchone():
            raise ApiError(409, f"simulation {sim_id} already exists")
        conn.execute(
            "INSERT INTO simulations (simulation_id, project_id, status, enable_twitter,"
            " enable_reddit, agents, total_simulation_hours, minutes_per_round, total_rounds,"
            " seed, round_seconds, created_at, updated_at)"
            " VALUES (?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sim_id,
                body.project_id,
                int(body.enable_twitter),
                int(body.enable_reddit),
                body.agents,
                body.total_simulation_hours,
                body.minutes_per_round,
                total_rounds,
                seed,
                body.round_seconds,
                now,
                now,
            ),
        )
        if body.faults is not None:
            write_faults(conn, sim_id, faults.apply_spec({}, body.faults))
    ctx.store.sim_dir(sim_id).mkdir(parents=True, exist_ok=True)
    sim = ctx.store.get_simulation(sim_id)
    assert sim is not None
    return ok(simulation_view(ctx, sim))


@router.post("/prepare")
def prepare_simulation(body: SimulationRef, ctx: Ctx) -> dict[str, Any]:
    return ok(prepare.submit(ctx.store, body.simulation_id, ctx.prepare_seconds))


@router.post("/prepare/status")
def prepare_status(body: PrepareStatusRequest, ctx: Ctx) -> dict[str, Any]:
    return ok(prepare.status(ctx.store, body.simulation_id, body.task_id))


@router.post("/start")
def start(body: StartRequest, ctx: Ctx) -> dict[str, Any]:
    return ok(ctx.runs.start(body.simulation_id, body.platform, body.max_rounds, body.force))


@router.post("/stop")
def stop(body: SimulationRef, ctx: Ctx) -> dict[str, Any]:
    return ok(ctx.runs.stop(body.simulation_id))


@router.get("/{simulation_id}")
def get_simulation(simulation_id: str, ctx: Ctx) -> dict[str, Any]:
    # Quirk kept from multimo: status stays "running" after the run completes.
    return ok(simulation_view(ctx, _require(ctx, simulation_id)))


@router.get("/{simulation_id}/run-status")
def run_status(simulation_id: str, ctx: Ctx) -> dict[str, Any]:
    _require(ctx, simulation_id)
    return ok(run_view(simulation_id, ctx.store.get_run(simulation_id)))


@router.get("/{simulation_id}/timeline")
def get_timeline(simulation_id: str, ctx: Ctx) -> dict[str, Any]:
    """multimo's per-round summary (its `start_round`/`end_round` filters are not needed here)."""
    _require(ctx, simulation_id)
    with ctx.store.read() as conn:
        rounds = timeline.rounds(conn, simulation_id)
    return ok({"rounds_count": len(rounds), "timeline": rounds})
