"""Simulator-only endpoints under /api/sim (health, ledger, fault switches, kill-run) and the
multimo login endpoint, which here hands out a fixed token (the simulator has no auth)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from simulator import faults
from simulator.api_models import FaultsRequest, LoginRequest, SimulationRef
from simulator.context import Context, get_context
from simulator.errors import ApiError, ok
from simulator.store import read_faults, write_faults

router = APIRouter()
Ctx = Annotated[Context, Depends(get_context)]
LEDGER_ACTIONS = ("prepare", "start", "stop", "report")


def _require(ctx: Context, simulation_id: str) -> None:
    if simulation_id != faults.GLOBAL and ctx.store.get_simulation(simulation_id) is None:
        raise ApiError(404, f"simulation {simulation_id} not found")


@router.get("/api/sim/health")
def health() -> dict[str, Any]:
    return ok({"status": "ok"})


@router.post("/api/v1/auth/login")
def login(body: LoginRequest) -> dict[str, Any]:
    return ok({"token": "sim-token", "email": body.email})


@router.get("/api/sim/ledger")
def ledger(simulation_id: str, ctx: Ctx) -> dict[str, Any]:
    _require(ctx, simulation_id)
    with ctx.store.read() as conn:
        rows = conn.execute(
            "SELECT seq, action, at, detail FROM ledger WHERE simulation_id = ? ORDER BY seq",
            (simulation_id,),
        ).fetchall()
    entries = [
        {"seq": r["seq"], "action": r["action"], "at": r["at"], "detail": json.loads(r["detail"])}
        for r in rows
    ]
    counts = dict.fromkeys(LEDGER_ACTIONS, 0)
    for entry in entries:
        counts[entry["action"]] = counts.get(entry["action"], 0) + 1
    return ok({"simulation_id": simulation_id, "entries": entries, "counts": counts})


@router.get("/api/sim/faults")
def get_faults(simulation_id: str, ctx: Ctx) -> dict[str, Any]:
    _require(ctx, simulation_id)
    return ok(faults.public_view(simulation_id, ctx.store.get_faults(simulation_id)))


@router.post("/api/sim/faults")
def set_faults(body: FaultsRequest, ctx: Ctx) -> dict[str, Any]:
    _require(ctx, body.simulation_id)
    spec = faults.FaultSpec.model_validate(
        body.model_dump(include=set(faults.FaultSpec.model_fields) & body.model_fields_set)
    )
    with ctx.store.write() as conn:
        config = faults.apply_spec(read_faults(conn, body.simulation_id), spec, clear=body.clear)
        write_faults(conn, body.simulation_id, config)
    return ok(faults.public_view(body.simulation_id, config))


@router.post("/api/sim/kill-run")
def kill_run(body: SimulationRef, ctx: Ctx) -> dict[str, Any]:
    _require(ctx, body.simulation_id)
    return ok(ctx.runs.kill(body.simulation_id))
