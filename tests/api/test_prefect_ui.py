"""The Prefect UI, one of the three ways the auto-pilot is used, looked at in headless
Chromium: a finished run that was paused once, and a manual-mode run waiting for its
confirmation, whose Resume form is filled in and submitted as a person would.

Screenshots go to the test's temporary directory (`screenshots/`), kept by pytest under
/tmp/pytest-of-$USER/pytest-current/ for a person to look at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autopilot import names
from tests.api.run_records import artifacts, run_logs, wait_step_yielded
from tests.api.shim import Api
from tests.api.test_lifecycle import ONE_OF_EACH, start_auto
from tests.api.test_manual_mode import NOTHING, start_manual, wait_awaiting
from tests.browser import Page, chromium, chromium_path
from tests.conftest import PREFECT_PORT
from tests.helpers import wait_until
from tests.stack_fixtures import Stack

UI = f"http://127.0.0.1:{PREFECT_PORT}"

pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="no chromium (./dev test installs Debian's package where it runs as root)",
)

LOADED_CHART = """(() => {
    const image = document.querySelector('img[src^="data:image/png;base64,"]');
    return image && image.complete ? image.naturalWidth : 0;
})()"""


def paused_once_then_completed(api: Api, stack: Stack) -> tuple[str, str]:
    # 40 s of rounds: on a loaded CI box, monitoring began 16 s after starting once, and a
    # 15 s run had finished by then (no pause to show).
    sim = stack.create_simulation(rounds=40, round_seconds=1.0)
    run_id = start_auto(api, sim)["flow_run_id"]
    api.wait_monitoring(sim)
    api.ok("pause", simulation_id=sim)
    api.wait_for(sim, "paused", timeout=60)
    wait_step_yielded(run_id, "monitoring")
    api.ok("resume", simulation_id=sim)
    api.wait_for(sim, "completed", timeout=150)
    assert stack.ledger(sim) == ONE_OF_EACH
    return sim, run_id


def check_the_finished_run(page: Page, sim: str, run_id: str) -> None:
    page.open(f"{UI}/runs/flow-run/{run_id}")
    page.wait_for_text(names.simulation_tag(sim), "Completed", "Task Runs",
                       "auto-pilot paused at monitoring")  # fmt: skip
    page.screenshot("1-finished-run")

    text = page.open_tab(
        "Task Runs",
        *(f"{step}-{sim}-g0" for step in
          ("preparing", "starting", "monitoring", "generating_report", "completed")),
        "Task runs\n(",
    )  # fmt: skip
    counts = re.search(r"\d+ Task runs?\n\(([^)]*)\)", text)
    assert counts, text
    # The monitoring attempt that yielded to the pause is grey "Paused", nothing is red.
    assert "Cancelled" in counts[1] and "Failed" not in counts[1], counts[1]
    page.screenshot("2-task-runs")

    page.open_tab(
        "Artifacts",
        names.report_artifact_key(sim), names.rounds_artifact_key(sim), "completed: 40/40 rounds",
    )  # fmt: skip
    page.scroll_to_text(names.rounds_artifact_key(sim))
    page.screenshot("3-artifacts")


def check_the_artifacts(page: Page, sim: str, run_id: str) -> None:
    found = artifacts(run_id)
    (report,) = [a for a in found["markdown"] if a.key == names.report_artifact_key(sim)]
    page.open(f"{UI}/artifacts/artifact/{report.id}")
    width = page.wait_for(LOADED_CHART, message="the report's chart, loaded")
    assert width == 900  # decoded by the browser: not a broken image
    page.wait_for_text(f"Simulation report: {sim}", "Most active agents")
    page.evaluate("document.querySelector('img[src^=\"data:image/png;base64,\"]').scrollIntoView()")
    page.screenshot("4-report-artifact-chart")

    (progress,) = found["progress"]
    page.open(f"{UI}/artifacts/artifact/{progress.id}")
    page.wait_for_text("Progress: 100%", "completed: 40/40 rounds")
    page.screenshot("5-progress-artifact")

    (table,) = found["table"]
    page.open(f"{UI}/artifacts/artifact/{table.id}")
    page.wait_for_text("40 Items", "twitter_actions", "active_agents")
    page.screenshot("6-rounds-table")


def check_the_resume_form(page: Page, api: Api, stack: Stack, sim: str, run_id: str) -> None:
    page.open(f"{UI}/runs/flow-run/{run_id}")
    page.wait_for_text("Suspended", "Resume", names.simulation_tag(sim),
                       "manual mode: waiting for a confirmation to run starting")  # fmt: skip
    page.screenshot("7-suspended-run")
    page.click_text("button", "Resume")
    page.wait_for_text("Resume Flow Run", "Note")
    typed = page.evaluate(
        """(() => {
            // The form's own field, inside the "Resume Flow Run" dialog: the page has other
            // inputs (typing into the first visible one once left the dialog closed).
            const inForm = e => {
                let up = e.parentElement;
                for (let depth = 0; up && depth < 12; depth++, up = up.parentElement) {
                    if (up.innerText && up.innerText.includes('Resume Flow Run')) return true;
                }
                return false;
            };
            const fields = 'textarea, input[type=text], input:not([type])';
            const field = [...document.querySelectorAll(fields)]
                .find(e => e.offsetParent !== null && inForm(e));
            if (!field) return false;
            field.focus();
            field.value = 'looked at it in the browser';
            field.dispatchEvent(new Event('input', {bubbles: true}));
            field.dispatchEvent(new Event('change', {bubbles: true}));
            return true;
        })()"""
    )
    assert typed
    page.screenshot("8-resume-form")
    page.click_text("button", "Submit")
    # The form's submission confirmed exactly one step: starting ran, then the next wait.
    wait_awaiting(api, sim, "monitoring")
    assert stack.ledger(sim) == {**NOTHING, "prepare": 1, "start": 1}
    confirmed = "manual mode: starting confirmed: looked at it in the browser"
    wait_until(lambda: confirmed in run_logs(run_id), timeout=30,
               message="the note in the run's logs")  # fmt: skip
    api.ok("stop", simulation_id=sim)


def test_the_prefect_ui_shows_the_steps_the_artifacts_and_the_resume_form(
    api: Api, stack: Stack, tmp_path: Path
) -> None:
    waiting = stack.create_simulation(rounds=6)
    waiting_run = start_manual(api, waiting)["flow_run_id"]
    sim, run_id = paused_once_then_completed(api, stack)
    wait_awaiting(api, waiting, "starting")

    shots = tmp_path / "screenshots"
    with chromium(shots) as page:
        check_the_finished_run(page, sim, run_id)
        check_the_artifacts(page, sim, run_id)
        check_the_resume_form(page, api, stack, waiting, waiting_run)
    taken = sorted(p.name for p in shots.glob("*.png"))
    assert len(taken) == 8 and all((shots / name).stat().st_size > 10_000 for name in taken)
    print(json.dumps({"screenshots": str(shots), "files": taken}))
