"""What the routes share: the store, the run manager and the server's timing settings."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from simulator.runner import RunManager
from simulator.store import Store


@dataclass(frozen=True)
class Context:
    store: Store
    runs: RunManager
    prepare_seconds: float
    report_seconds: float


def get_context(request: Request) -> Context:
    ctx = request.app.state.ctx
    assert isinstance(ctx, Context)
    return ctx
