"""Assemble the simulator's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from simulator import (
    clock,
    errors,
    prepare,
    report_task,
    routes_control,
    routes_report,
    routes_simulation,
)
from simulator.context import Context
from simulator.faults import FaultMiddleware
from simulator.runner import RunManager
from simulator.store import Store


def create_app(
    data_dir: Path,
    round_seconds: float = 1.0,
    prepare_seconds: float = 2.0,
    report_seconds: float = 1.0,
    clock_offset_seconds: float = 0.0,
    timestamp_zone: str = clock.UTC_NAME,
) -> FastAPI:
    """The clock settings are process-wide (and inherited by run processes): one app per
    process, as `serve` runs it."""
    clock.configure(clock_offset_seconds, timestamp_zone)
    store = Store(Path(data_dir))
    ctx = Context(
        store=store,
        runs=RunManager(store, round_seconds),
        prepare_seconds=prepare_seconds,
        report_seconds=report_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A restarted server first settles what the previous one left behind: background
        # tasks died with it, run processes may or may not have.
        prepare.recover(store, prepare_seconds)
        report_task.recover(store, report_seconds)
        ctx.runs.recover()
        yield

    app = FastAPI(title="multimo simulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    errors.install(app)
    app.add_middleware(FaultMiddleware, store=store)
    app.include_router(routes_simulation.router)
    app.include_router(routes_report.router)
    app.include_router(routes_control.router)
    return app
