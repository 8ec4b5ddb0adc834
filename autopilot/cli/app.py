"""The `autopilot` command line. Errors of the auto-pilot's tree are caught once, in `main`."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import typer
from pydantic import BaseModel
from rich.console import Console

from autopilot.errors import AutopilotError
from autopilot.logs import use_log_format
from autopilot.prefect_env import ensure_prefect_api_url

APP_HELP = """Drive multimo simulations through their five steps with Prefect, unattended.

Example: autopilot demo   (a full run against the bundled simulator)
"""
app = typer.Typer(no_args_is_help=True, add_completion=False, help=APP_HELP)
sim_app = typer.Typer(
    no_args_is_help=True,
    help="The bundled multimo-compatible simulator.\n\nExample: autopilot sim serve --port 5001",
)
app.add_typer(sim_app, name="sim")
notify_app = typer.Typer(
    no_args_is_help=True,
    help="POST to a webhook when an auto-pilot run ends (Prefect automations).\n\n"
    "Example: autopilot notify add --webhook https://hooks.example.com/autopilot",
)
app.add_typer(notify_app, name="notify")

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")
SIMULATION_ID = typer.Argument(..., help="The multimo simulation id.")
JSON_OUTPUT = typer.Option(False, "--json", help="Print the result as JSON.")


def _run(operation: Callable[[Any], Awaitable[T]]) -> T:
    """Run one service operation with a service built from the settings."""
    from autopilot.service.operations import AutopilotService
    from autopilot.settings import get_settings

    service = AutopilotService(get_settings())
    return anyio.run(operation, service)


def _print(result: BaseModel | dict[str, Any], as_json: bool) -> None:
    data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    if as_json:
        console.print_json(json.dumps(data))
        return
    for key, value in data.items():
        if value not in (None, {}, ""):
            console.print(f"[bold]{key}[/bold]: {value}")


@app.command("config")
def config_cmd(
    simulation_id: str = SIMULATION_ID,
    mode: str = typer.Argument(..., help="auto or manual"),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Set a simulation's auto-pilot mode.

    Example: autopilot config sim_abc123 auto
    """
    _print(_run(lambda s: s.config(simulation_id, mode)), as_json)


@app.command("start")
def start_cmd(
    simulation_id: str = SIMULATION_ID,
    force: bool = typer.Option(False, "--force", help="Cancel any active run, start afresh."),
    from_step: str | None = typer.Option(
        None,
        "--from-step",
        metavar="STEP",
        help=(
            "Start afresh at this step (implies --force): preparing, starting, monitoring or "
            "generating_report. The steps before it are taken as done from the latest "
            "generation that finished them."
        ),
    ),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Start the auto-pilot: unattended in auto mode, one step per `resume` in manual mode.

    Example: autopilot start sim_abc123 --from-step generating_report
    """
    forced = force or from_step is not None
    _print(_run(lambda s: s.start(simulation_id, forced, from_step)), as_json)


@app.command("pause")
def pause_cmd(simulation_id: str = SIMULATION_ID, as_json: bool = JSON_OUTPUT) -> None:
    """Pause (suspend) the active auto-pilot.

    Example: autopilot pause sim_abc123
    """
    _print(_run(lambda s: s.pause(simulation_id)), as_json)


@app.command("resume")
def resume_cmd(
    simulation_id: str = SIMULATION_ID,
    note: str | None = typer.Option(
        None, "--note", help="Confirming a step in manual mode: a note kept with the run."
    ),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Resume a paused auto-pilot.

    Example: autopilot resume sim_abc123
    """
    _print(_run(lambda s: s.resume(simulation_id, note)), as_json)


@app.command("stop")
def stop_cmd(simulation_id: str = SIMULATION_ID, as_json: bool = JSON_OUTPUT) -> None:
    """Stop the auto-pilot and the simulation.

    Example: autopilot stop sim_abc123
    """
    _print(_run(lambda s: s.stop(simulation_id)), as_json)


@app.command("reset")
def reset_cmd(simulation_id: str = SIMULATION_ID, as_json: bool = JSON_OUTPUT) -> None:
    """Cancel any active run and start a new generation (mode kept).

    Example: autopilot reset sim_abc123
    """
    _print(_run(lambda s: s.reset(simulation_id)), as_json)


@app.command("status")
def status_cmd(
    simulation_id: str = SIMULATION_ID,
    as_json: bool = JSON_OUTPUT,
    watch: bool = typer.Option(False, "--watch", help="Show live progress until it ends."),
) -> None:
    """Show the auto-pilot's status (the machine-readable state with --json).

    Example: autopilot status sim_abc123 --watch
    """
    if watch:
        from autopilot.cli.watch import watch_status

        final = watch_status(simulation_id, console)
        _print(final, as_json)
        return
    _print(_run(lambda s: s.status(simulation_id)), as_json)


@app.command("up")
def up_cmd(
    with_simulator: bool = typer.Option(
        False,
        "--with-simulator",
        help="Start the bundled simulator at AUTOPILOT_BACKEND_URL even if it is not the "
        "default (the default URL always gets one).",
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        metavar="URL",
        help="The database of the Prefect server this starts, e.g. "
        "postgresql+asyncpg://postgres@db:5432/prefect for many hosts (default: SQLite in "
        "the data dir). It listens at PREFECT_API_URL's address, which must be this machine's.",
    ),
) -> None:
    """Start Prefect server, simulator, worker and REST shim; supervise until Ctrl-C.

    Example: autopilot up --database-url postgresql+asyncpg://postgres@db:5432/prefect
    """
    from autopilot.devstack.demo import run_up
    from autopilot.devstack.server_address import server_database_url

    database = server_database_url(database_url) if database_url is not None else None
    run_up(console, with_simulator=with_simulator, database_url=database)


@app.command("demo")
def demo_cmd(
    rounds: int = typer.Option(24, min=1, help="Rounds of the demo simulation."),
    agents: int = typer.Option(40, min=2, help="Agents of the demo simulation."),
) -> None:
    """A full auto-pilot run on the bundled simulator, with live progress and the report.

    Example: autopilot demo --rounds 6
    """
    from autopilot.devstack.demo import run_demo

    final = run_demo(console, rounds=rounds, agents=agents)
    if final.get("status") != "completed":
        raise typer.Exit(1)


@app.command("chaos")
def chaos_cmd(
    trials: int = typer.Option(10, min=1, help="How many trials (one kill each)."),
    seed: int = typer.Option(1, help="Seed of the random targets and moments."),
    targets: str = typer.Option(
        "flow,worker,shim,simulator,prefect",
        help="Comma-separated: flow, worker, shim, simulator, prefect, host (with --hosts 2+), "
        "and the injection points flow@start-accepted, flow@report-done, flow@pause-window.",
    ),
    rounds: int = typer.Option(12, min=1, help="Rounds per auto-pilot."),
    parallel: int = typer.Option(1, min=1, help="Trials running at the same time."),
    hosts: int = typer.Option(
        1,
        min=1,
        help="Workers standing for hosts (own identity and data dir); 2+ allows "
        "the target `host` (kill the host running the auto-pilot, worker and flows).",
    ),
    host_down: float = typer.Option(30.0, min=0, help="Seconds a killed host stays down."),
    db: str = typer.Option(
        "sqlite",
        help="The Prefect server's database: sqlite, or postgres (a throwaway "
        "PostgreSQL cluster, as for many hosts).",
    ),
    restarts: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help="Share of the trials that restart a run from a step (starting, monitoring or "
        "generating_report) and kill during the restart.",
    ),
    manual: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help="Share of the trials run in manual mode (the harness confirms each step).",
    ),
) -> None:
    """Kill processes at random moments; exit 1 on any violated invariant.

    Example: autopilot chaos --trials 40 --parallel 2 --hosts 3 --targets flow,host
    """
    import signal

    from autopilot.devstack.chaos import Chaos
    from autopilot.devstack.demo import raise_interrupt

    # SIGTERM as Ctrl-C: the harness's stack is stopped on the way out either way.
    signal.signal(signal.SIGTERM, raise_interrupt)
    chosen = [t.strip() for t in targets.split(",") if t.strip()]
    chaos = Chaos(
        trials,
        seed,
        chosen,
        rounds,
        parallel=parallel,
        hosts=hosts,
        host_down=host_down,
        db=db,
        restarts=restarts,
        manual=manual,
    )
    results = chaos.run()
    console.print(chaos.summary(results))
    violations = sum(len(t.violations) for t in results)
    console.print(f"{len(results)} trials, {violations} violations")
    if violations:
        raise typer.Exit(1)
    if chaos.interrupted:
        console.print(f"interrupted after {len(results)} of {trials} trials")
        raise typer.Exit(130)


@app.command("api")
def api_cmd() -> None:
    """Serve the REST shim (AUTOPILOT_API_HOST/PORT, default 127.0.0.1:8000).

    Example: AUTOPILOT_API_PORT=8080 autopilot api
    """
    from autopilot.web.app import serve_api

    serve_api()


@app.command("worker")
def worker_cmd(
    name: str = typer.Option("local", help="Deployment name: auto-pilot/<name>."),
    poll_seconds: float = typer.Option(1.0, help="How often the runner looks for work."),
) -> None:
    """Serve the auto-pilot deployment and recover crashed runs.

    Example: AUTOPILOT_HOST_ID=host-b autopilot worker --name local
    """
    from autopilot.worker.serve import main as serve_main

    serve_main(["--name", name, "--poll-seconds", str(poll_seconds)])


@app.command("recover")
def recover_cmd(
    deployment: list[str] = typer.Option(
        ..., help="A deployment whose runs to recover, e.g. auto-pilot/process (repeatable)."
    ),
    sweep_seconds: float = typer.Option(5.0, help="How often to look at the runs."),
) -> None:
    """Restart crashed or dead runs of deployments served by others (a process work pool).

    Example: autopilot recover --deployment auto-pilot/process
    """
    from autopilot.worker.watch import main as watch_main

    args = [arg for name in deployment for arg in ("--deployment", name)]
    watch_main([*args, "--sweep-seconds", str(sweep_seconds)])


@notify_app.command("add")
def notify_add(
    webhook: str = typer.Option(..., "--webhook", metavar="URL", help="Where to POST."),
    on: str = typer.Option(
        "completed,failed,crashed", "--on", help="Outcomes to tell: completed, failed, crashed."
    ),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """POST the simulation id, generation, status, error step, error and the Prefect UI link
    to a URL each time an auto-pilot run reaches one of the outcomes.

    Example: autopilot notify add --webhook http://127.0.0.1:9000/hook --on completed,failed
    """
    from autopilot import notify

    ensure_prefect_api_url()
    hook = notify.add(notify.check_url(webhook), notify.parse_outcomes(on))
    _print(_hook_fields(hook), as_json)


@notify_app.command("list")
def notify_list(as_json: bool = JSON_OUTPUT) -> None:
    """The notifications set up, with their ids.

    Example: autopilot notify list --json
    """
    from autopilot import notify

    found = [_hook_fields(hook) for hook in notify.hooks()]
    if as_json:
        console.print_json(json.dumps(found))
        return
    for hook in found:
        console.print(f"{hook['id']}  POST {hook['target']}  on {','.join(hook['outcomes'])}")
    if not found:
        console.print("no notifications")


@notify_app.command("remove")
def notify_remove(
    hook_id: str = typer.Argument(..., metavar="ID", help="The id `notify list` shows."),
) -> None:
    """Remove a notification (its automation and its webhook block).

    Example: autopilot notify remove 0b6c1c1e-5d1f-4c1e-9a57-1f0d1c2b3a4d
    """
    from autopilot import notify

    hook = notify.remove(hook_id)
    console.print(f"removed {hook.id} (POST {hook.target})")


def _hook_fields(hook: Any) -> dict[str, Any]:
    return {"id": str(hook.id), "target": hook.target, "outcomes": hook.outcomes}


@sim_app.command("serve")
def sim_serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(5001, help="Port to bind (multimo's default is 5001)."),
    data_dir: Path = typer.Option(Path(".autopilot/simulator"), help="Where runs are stored."),
    round_seconds: float = typer.Option(1.0, help="Wall seconds per simulated round."),
    prepare_seconds: float = typer.Option(2.0, help="Wall seconds a preparation takes."),
    report_seconds: float = typer.Option(1.0, help="Wall seconds a report takes."),
) -> None:
    """Serve the bundled simulator (speaks the multimo HTTP contract).

    Example: autopilot sim serve --port 5001 --round-seconds 0.5
    """
    from simulator.server import serve

    serve(
        host=host,
        port=port,
        data_dir=data_dir,
        round_seconds=round_seconds,
        prepare_seconds=prepare_seconds,
        report_seconds=report_seconds,
    )


def main() -> None:
    """Console-script entry."""
    ensure_prefect_api_url()
    try:
        use_log_format()
        # Without standalone mode click returns (not raises) the code of `typer.Exit`.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except AutopilotError as exc:
        err_console.print(f"[red]error[/red] ({exc.error_code}): {exc.message}")
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
