"""End to end against a real simulator process: create -> prepare -> run -> report."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.helpers import wait_until
from tests.simulator.conftest import SimClient, stored_actions


def assert_valid_png(path: Path) -> tuple[int, int]:
    """The file decodes as a PNG (every chunk's CRC checked); its size."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def test_full_lifecycle(sim: SimClient) -> None:
    created = sim.data(
        sim.post(
            "/api/simulation/create",
            {"agents": 50, "total_simulation_hours": 12, "minutes_per_round": 60, "seed": 11},
        )
    )
    sim_id = created["simulation_id"]
    assert sim_id.startswith("sim_") and len(sim_id) == 16
    assert created["status"] == "created" and created["total_rounds"] == 12

    ref = {"simulation_id": sim_id}
    before = sim.data(sim.post("/api/simulation/prepare/status", ref))
    assert before["status"] == "not_started"
    assert sim.run_status(sim_id)["runner_status"] == "idle"

    task_id = sim.prepare(sim_id)
    status = sim.data(sim.post("/api/simulation/prepare/status", ref))
    assert status["status"] == "ready" and status["already_prepared"] is True
    again = sim.data(sim.post("/api/simulation/prepare", ref))
    assert again["already_prepared"] is True and "task_id" not in again
    assert sim.data(sim.get(f"/api/simulation/{sim_id}"))["status"] == "ready"
    config = Path(sim.data_dir) / "sims" / sim_id / "config.json"
    assert config.exists() and task_id

    started = sim.data(sim.post("/api/simulation/start", {**ref, "platform": "parallel"}))
    assert started["runner_status"] == "running" and started["total_rounds"] == 12

    final = sim.wait_run(sim_id)
    assert final["current_round"] == final["total_rounds"] == 12
    assert final["twitter_actions_count"] > 0 and final["reddit_actions_count"] > 0
    assert final["total_actions_count"] == (
        final["twitter_actions_count"] + final["reddit_actions_count"]
    )
    assert final["progress_percent"] == 100.0 and final["completed_at"]
    # multimo quirk: the simulation's own status stays "running" after completion.
    assert sim.data(sim.get(f"/api/simulation/{sim_id}"))["status"] == "running"

    timeline = sim.data(sim.get(f"/api/simulation/{sim_id}/timeline"))
    assert timeline["rounds_count"] == 12
    assert [r["round_num"] for r in timeline["timeline"]] == list(range(1, 13))
    rounds = timeline["timeline"]
    assert sum(r["twitter_actions"] for r in rounds) == final["twitter_actions_count"]
    assert sum(r["reddit_actions"] for r in rounds) == final["reddit_actions_count"]
    for r in rounds:
        assert r["total_actions"] == r["twitter_actions"] + r["reddit_actions"]
        assert sum(r["action_types"].values()) == r["total_actions"]
        assert 0 < r["active_agents_count"] <= r["total_actions"]

    gen = sim.data(sim.post("/api/report/generate", ref))
    assert gen["already_generated"] is False and gen["report_id"] and gen["task_id"]

    def report_done() -> bool:
        return bool(sim.data(sim.post("/api/report/generate/status", ref))["status"] == "completed")

    wait_until(report_done, timeout=10, message="report")
    report = sim.data(sim.get(f"/api/report/{gen['report_id']}"))
    assert report["status"] == "completed" and report["error"] is None
    chart = Path(report["chart_path"])
    assert chart == Path(sim.data_dir).resolve() / "reports" / gen["report_id"] / "chart.png"
    width, height = assert_valid_png(chart)
    assert width > 100 and height > 100
    # The file report links its chart relatively, so the pair can be moved or copied.
    assert "](chart.png)" in report["markdown_content"]
    assert str(chart.parent) not in report["markdown_content"]
    assert (chart.parent / "report.md").read_text() == report["markdown_content"]
    assert f"Total actions: {final['total_actions_count']}" in report["markdown_content"]

    again = sim.data(sim.post("/api/report/generate", ref))
    assert again["already_generated"] is True and again["report_id"] == gen["report_id"]
    listed = sim.data(sim.get("/api/report/list", params=ref))
    assert [r["report_id"] for r in listed] == [gen["report_id"]]

    ledger = sim.data(sim.get("/api/sim/ledger", params=ref))
    # The repeated request made no second report, and the ledger says it was asked.
    assert ledger["counts"] == {
        "prepare": 1, "start": 1, "stop": 0, "report": 1, "report_repeat": 1,
    }  # fmt: skip
    assert [e["action"] for e in ledger["entries"]] == [
        "prepare", "start", "report", "report_repeat",
    ]  # fmt: skip


def test_same_seed_gives_same_actions(sim: SimClient) -> None:
    runs = []
    for _ in range(2):
        sim_id = sim.create_prepared(agents=60, total_simulation_hours=8, seed=1234)
        sim.data(sim.post("/api/simulation/start", {"simulation_id": sim_id}))
        runs.append(sim_id)
    results = [sim.wait_run(s) for s in runs]
    keys = ("current_round", "twitter_actions_count", "reddit_actions_count")
    assert [results[0][k] for k in keys] == [results[1][k] for k in keys]
    other = sim.create_prepared(agents=60, total_simulation_hours=8, seed=4321)
    sim.data(sim.post("/api/simulation/start", {"simulation_id": other}))
    different = sim.wait_run(other)
    assert stored_actions(sim.data_dir, runs[0]) == stored_actions(sim.data_dir, runs[1])
    assert different["total_actions_count"] != results[0]["total_actions_count"]


def test_max_rounds_caps_and_platform_selects(sim: SimClient) -> None:
    sim_id = sim.create_prepared(agents=20, total_simulation_hours=24, seed=5)
    started = sim.data(
        sim.post(
            "/api/simulation/start",
            {"simulation_id": sim_id, "max_rounds": 4, "platform": "reddit"},
        )
    )
    assert started["total_rounds"] == 4
    final = sim.wait_run(sim_id)
    assert final["current_round"] == 4
    assert final["twitter_actions_count"] == 0 and final["reddit_actions_count"] > 0


def test_login_accepts_anything_and_bearer_is_ignored(sim: SimClient) -> None:
    token = sim.data(sim.post("/api/v1/auth/login", {"email": "a@b.c", "password": "x"}))
    assert token["token"] == "sim-token"
    response = sim.get("/api/sim/health", headers={"Authorization": "Bearer whatever"})
    assert response.json() == {"success": True, "data": {"status": "ok"}}
