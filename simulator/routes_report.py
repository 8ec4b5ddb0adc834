"""The multimo /api/report endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from simulator import report_task
from simulator.api_models import ReportRequest, ReportStatusRequest
from simulator.context import Context, get_context
from simulator.errors import ApiError, ok

router = APIRouter(prefix="/api/report")
Ctx = Annotated[Context, Depends(get_context)]


@router.post("/generate")
def generate(body: ReportRequest, ctx: Ctx) -> dict[str, Any]:
    return ok(
        report_task.submit(ctx.store, body.simulation_id, ctx.report_seconds, body.force_regenerate)
    )


@router.post("/generate/status")
def generate_status(body: ReportStatusRequest, ctx: Ctx) -> dict[str, Any]:
    if "task_id" in body.model_fields_set:
        # Documented multimo defect, reproduced so clients are tested against it.
        raise ApiError(500, "report status lookup by task_id failed (poll by simulation_id)")
    return ok(report_task.status(ctx.store, body.simulation_id))


@router.get("/list")
def list_reports(ctx: Ctx, simulation_id: str | None = None) -> dict[str, Any]:
    return ok(report_task.list_reports(ctx.store, simulation_id))


@router.get("/{report_id}")
def get_report(report_id: str, ctx: Ctx) -> dict[str, Any]:
    return ok(report_task.get(ctx.store, report_id))
