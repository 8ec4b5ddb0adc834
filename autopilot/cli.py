"""The `autopilot` command line. Errors of the auto-pilot's tree are caught once, in `main`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from autopilot.errors import AutopilotError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
sim_app = typer.Typer(no_args_is_help=True, help="The bundled multimo-compatible simulator.")
app.add_typer(sim_app, name="sim")

err_console = Console(stderr=True)


@sim_app.command("serve")
def sim_serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(5001, help="Port to bind (multimo's default is 5001)."),
    data_dir: Path = typer.Option(Path(".autopilot/simulator"), help="Where runs are stored."),
    round_seconds: float = typer.Option(1.0, help="Wall seconds per simulated round."),
    prepare_seconds: float = typer.Option(2.0, help="Wall seconds a preparation takes."),
) -> None:
    """Serve the bundled simulator (speaks the multimo HTTP contract)."""
    from simulator.server import serve

    serve(
        host=host,
        port=port,
        data_dir=data_dir,
        round_seconds=round_seconds,
        prepare_seconds=prepare_seconds,
    )


@app.command("worker")
def worker(
    name: str = typer.Option("local", help="Deployment name: auto-pilot/<name>."),
    poll_seconds: float = typer.Option(2.0, help="How often the runner looks for work."),
) -> None:
    """Serve the auto-pilot deployment and recover crashed runs."""
    from deployments.serve import main as serve_main

    serve_main(["--name", name, "--poll-seconds", str(poll_seconds)])


def main() -> None:
    """Console-script entry."""
    try:
        app()
    except AutopilotError as exc:
        err_console.print(f"[red]error[/red] ({exc.error_code}): {exc.message}")
        sys.exit(1)
