"""`autopilot up` and `autopilot demo`: the local stack, and one full auto-pilot run on it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from autopilot.devstack.supervisor import Supervisor
from autopilot.settings import Settings, get_settings

# Demo timings: a whole run in well under two minutes on a small machine.
DEMO_SIMULATOR = {"round_seconds": 0.5, "prepare_seconds": 2.0, "report_seconds": 1.0}
DEMO_WORKER_ENV = {"AUTOPILOT_POLL_INTERVAL": "1", "AUTOPILOT_CONTROL_CHECK_INTERVAL": "0.5"}


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _ui_url(supervisor: Supervisor) -> str:
    return supervisor.prefect_api_url.rstrip("/").removesuffix("/api")


def run_up(
    console: Console,
    settings: Settings | None = None,
    with_simulator: bool = False,
    database_url: str | None = None,
) -> None:
    """Start the stack and supervise it until Ctrl-C or SIGTERM."""
    settings = settings or get_settings()
    supervisor = Supervisor(settings, own_simulator=with_simulator, database_url=database_url)
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        supervisor.start(on_ready=lambda name: console.print(f"[green]✓[/green] {name} ready"))
        console.print(f"Prefect UI: {_ui_url(supervisor)}")
        console.print(f"REST shim:  http://{settings.api_host}:{settings.api_port}/docs")
        console.print(f"Logs:       {supervisor.log_dir}")
        console.print("Ctrl-C stops everything.")
        supervisor.supervise()
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        supervisor.stop()


def _use_stack_environment(supervisor: Supervisor) -> None:
    """Point this process's Prefect client and settings at the supervised stack."""
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "AUTOPILOT_DATA_DIR"):
        os.environ[key] = supervisor.env[key]
    # Prefect creates its home when first imported: give it a directory that exists.
    Path(supervisor.env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    get_settings.cache_clear()


def run_demo(console: Console, rounds: int = 24, agents: int = 40) -> dict[str, Any]:
    """Up, create a demo simulation, run the auto-pilot with live progress, show the report."""
    started = time.monotonic()
    settings = get_settings()
    supervisor = Supervisor(
        settings,
        own_simulator=True,  # the demo always runs against the bundled simulator
        simulator_options=DEMO_SIMULATOR,
        worker_env=DEMO_WORKER_ENV,
        with_api=False,
    )
    # Before anything imports Prefect: this process must use the supervised server.
    _use_stack_environment(supervisor)
    import anyio

    from autopilot.cli.watch import watch_status
    from autopilot.client import MultimoClient
    from autopilot.service.operations import AutopilotService

    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        console.print("[bold]Starting the local stack[/bold] (Prefect server, simulator, worker)")
        supervisor.start(on_ready=lambda name: console.print(f"  [green]✓[/green] {name} ready"))
        threading.Thread(target=supervisor.supervise, daemon=True).start()

        with MultimoClient.from_settings(get_settings()) as backend:
            simulation_id = backend.create_simulation(
                agents=agents, total_simulation_hours=rounds, minutes_per_round=60, seed=7
            )
        console.print(f"Created simulation [bold]{simulation_id}[/bold]: {agents} agents, "
                      f"{rounds} rounds")  # fmt: skip
        service = AutopilotService(get_settings())
        anyio.run(service.config, simulation_id, "auto")
        start = anyio.run(service.start, simulation_id, False)
        console.print(f"Auto-pilot started: flow run {start.flow_run_id}")
        final = watch_status(simulation_id, console, interval=0.5)
        _show_outcome(console, supervisor, simulation_id, final)
        console.print(f"Demo finished in {time.monotonic() - started:.0f}s")
        return final
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything")
        raise
    finally:
        supervisor.stop()


def _show_outcome(
    console: Console, supervisor: Supervisor, simulation_id: str, final: dict[str, Any]
) -> None:
    from autopilot import chart
    from autopilot.client import MultimoClient

    console.print(f"Auto-pilot ended [bold]{final.get('status')}[/bold]")
    if final.get("status") != "completed":
        console.print(f"[red]{final.get('error_step')}: {final.get('error')}[/red]")
        return
    with MultimoClient.from_settings(get_settings()) as backend:
        report = backend.find_completed_report(simulation_id)
        if report is None:
            console.print("[red]no report found[/red]")
            return
        report = backend.get_report(report.report_id)
        rounds = backend.timeline(simulation_id)
    # The report and its chart side by side: the Markdown links `chart.png` relatively.
    folder = supervisor.data_dir / "reports" / simulation_id
    folder.mkdir(parents=True, exist_ok=True)
    target, chart_file = folder / "report.md", folder / chart.FILE_NAME
    chart_file.write_bytes(chart.png(rounds, simulation_id))
    target.write_text(report.markdown_content or "")
    console.rule("report (first lines)")
    for line in (report.markdown_content or "").splitlines()[:14]:
        console.print(line, markup=False, highlight=False)
    console.rule()
    console.print(f"Report (Markdown): {target}")
    console.print(f"Chart (PNG):       {chart_file}")
    flow_run = final.get("flow_run_id")
    console.print(f"Prefect UI:        {_ui_url(supervisor)}/runs/flow-run/{flow_run}")
    console.print(
        "(the demo stops its stack now; `autopilot up` serves the same database, so the run "
        "stays visible at that link while `up` runs)",
        highlight=False,
    )
