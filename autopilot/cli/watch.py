"""Live progress of one auto-pilot in the terminal: step, rounds N/M, actions."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from autopilot.eta import duration_text
from autopilot.service.projection import STEP_ORDER

FINAL_STATUSES = {"completed", "failed", "inactive"}


def _fetch(simulation_id: str) -> dict[str, Any]:
    import anyio
    from pydantic import BaseModel

    from autopilot.service.operations import AutopilotService
    from autopilot.settings import get_settings

    async def read() -> Any:
        return await AutopilotService(get_settings()).status(simulation_id)

    result = anyio.run(read)
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else dict(result)


def watch_status(
    simulation_id: str, console: Console, interval: float = 1.0, settle: int = 3
) -> dict[str, Any]:
    """Redraw progress bars until the auto-pilot ends; return the final status."""
    progress = Progress(
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    bars: dict[str, TaskID] = {}
    inactive_seen = 0
    with progress:
        for step in STEP_ORDER[:-1]:
            bars[step] = progress.add_task(step, total=100, detail="")
        while True:
            status = _fetch(simulation_id)
            step = status.get("current_step") or "idle"
            _draw(progress, bars, step, status)
            state = status.get("status", "inactive")
            # A freshly started run may read inactive for an instant: require it twice.
            inactive_seen = inactive_seen + 1 if state == "inactive" else 0
            if state in FINAL_STATUSES - {"inactive"} or inactive_seen >= settle:
                return status
            time.sleep(interval)


def _draw(progress: Progress, bars: dict[str, TaskID], step: str, status: dict[str, Any]) -> None:
    done = True if step == "completed" else None
    for name, bar in bars.items():
        if done or (step in STEP_ORDER and STEP_ORDER.index(name) < STEP_ORDER.index(step)):
            progress.update(bar, completed=100, detail="done")
        elif name == step:
            detail = status.get("progress_detail") or {}
            text = status.get("step_message") or ""
            if "current_round" in detail:
                text = (
                    f"round {detail['current_round']}/{detail['total_rounds']}  "
                    f"twitter {detail['twitter_actions']}  reddit {detail['reddit_actions']}"
                )
            if "eta_seconds" in detail:
                text += (
                    f"  {detail['rounds_per_hour']:.0f} rounds/h, "
                    f"{duration_text(detail['eta_seconds'])} left"
                )
            progress.update(bar, completed=status.get("step_progress") or 0, detail=text)
