"""`autopilot demo` and `autopilot up` as a person runs them: real processes, private ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx

from autopilot.devstack.supervisor import port_in_use
from tests.helpers import AUTOPILOT, free_port, wait_until

PREFIX = "/api/simulation/auto-pilot"


def private_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment whose stack uses free ports and its own data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AUTOPILOT_"))}
    env.update(
        PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
        AUTOPILOT_BACKEND_URL=f"http://127.0.0.1:{free_port()}",
        AUTOPILOT_API_PORT=str(free_port()),
        AUTOPILOT_DATA_DIR=str(tmp_path / "data"),
        COLUMNS="400",  # rich wraps at the terminal width: keep paths on one line
    )
    return env


def shim_prefix(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['AUTOPILOT_API_PORT']}{PREFIX}"


def children_of(pid: int) -> dict[int, str]:
    """Direct child processes of `pid` with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def test_demo_runs_one_auto_pilot_to_a_report_and_leaves_nothing_running(tmp_path: Path):
    env = private_env(tmp_path)
    result = subprocess.run(
        [*AUTOPILOT, "demo", "--rounds", "6"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Auto-pilot ended completed" in result.stdout
    report = re.search(r"Report \(Markdown\): (\S+)", result.stdout)
    chart = re.search(r"Chart \(PNG\):\s+(\S+)", result.stdout)
    assert report and chart, result.stdout
    markdown = Path(report.group(1)).read_text()
    assert "# Simulation report" in markdown
    # The report links its chart relatively, and the chart is there.
    assert "](chart.png)" in markdown
    assert Path(chart.group(1)) == Path(report.group(1)).parent / "chart.png"
    assert Path(chart.group(1)).read_bytes().startswith(b"\x89PNG")
    for url in (env["PREFECT_API_URL"], env["AUTOPILOT_BACKEND_URL"]):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert not port_in_use("127.0.0.1", port), f"{url} still answers after the demo"


def test_up_serves_restarts_a_dead_child_and_stops_everything_on_sigterm(tmp_path: Path):
    env = private_env(tmp_path)
    # With a token, the Prefect server is protected too; a PREFECT_HOME elsewhere that does
    # not exist yet must not stop the server from finding its database folder.
    env["AUTOPILOT_API_TOKEN"] = "s3cret-token"
    env["PREFECT_HOME"] = str(tmp_path / "elsewhere" / "prefect-home")
    up = subprocess.Popen(
        [*AUTOPILOT, "up", "--with-simulator"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    shim = httpx.Client(
        base_url=f"http://127.0.0.1:{env['AUTOPILOT_API_PORT']}",
        timeout=30,
        headers={"Authorization": "Bearer s3cret-token"},
    )
    backend = httpx.Client(base_url=env["AUTOPILOT_BACKEND_URL"], timeout=10)

    def run_one_auto_pilot() -> None:
        created = backend.post("/api/simulation/create", json={"total_simulation_hours": 4})
        sim = created.json()["data"]["simulation_id"]
        shim.post(f"{PREFIX}/config", json={"simulation_id": sim, "mode": "auto"})
        assert shim.post(f"{PREFIX}/start", json={"simulation_id": sim}).status_code == 200

        def completed() -> bool:
            status = shim.post(f"{PREFIX}/status", json={"simulation_id": sim}).json()["data"]
            assert status["status"] != "failed", status
            return bool(status["status"] == "completed")

        wait_until(completed, timeout=180, interval=0.5, message="auto-pilot completed")

    try:
        wait_until(lambda: shim.get("/healthz").status_code == 200, timeout=180, interval=0.5)
        prefect_api = env["PREFECT_API_URL"]
        assert httpx.post(f"{prefect_api}/flow_runs/filter", json={}).status_code == 401
        assert (
            httpx.post(f"{shim_prefix(env)}/status", json={"simulation_id": "x"}).status_code == 401
        )
        authorized = httpx.post(
            f"{prefect_api}/flow_runs/filter", json={}, auth=("autopilot", "s3cret-token")
        )
        assert authorized.status_code == 200
        run_one_auto_pilot()

        workers = {p for p, cmd in children_of(up.pid).items() if "deployments.serve" in cmd}
        assert len(workers) == 1
        os.killpg(workers.pop(), signal.SIGKILL)
        wait_until(
            lambda: any("deployments.serve" in c for c in children_of(up.pid).values()),
            timeout=60,
            message="worker restarted",
        )
        run_one_auto_pilot()  # served by the restarted worker
        children = children_of(up.pid)
    finally:
        up.send_signal(signal.SIGTERM)
        output = up.communicate(timeout=90)[0].decode()
        shim.close()
        backend.close()
    assert up.returncode == 0, output[-3000:]
    assert "worker exited with" in output  # the supervisor noticed and restarted it
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    for port in (env["AUTOPILOT_API_PORT"], env["AUTOPILOT_BACKEND_URL"].rsplit(":", 1)[1]):
        assert not port_in_use("127.0.0.1", int(port))
