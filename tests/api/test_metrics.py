"""`GET /metrics` scraped during a run that crashes once: Prometheus' format, the auto-pilots by
status and step, the steps' ends and durations, crash restarts, backend errors, cache counters."""

from __future__ import annotations

import os
import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from autopilot.worker.executors import living_executor
from tests.api.shim import Api
from tests.api.test_from_step import check_completed_later
from tests.api.test_lifecycle import ONE_OF_EACH, start_auto
from tests.helpers import wait_until
from tests.stack_fixtures import Stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(shim_url: str) -> Samples:
    response = httpx.get(f"{shim_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_follow_a_run_through_a_crash_to_its_end(api: Api, stack: Stack, shim_url: str):
    before = scrape(shim_url)
    assert value(before, "autopilot_prefect_reachable") == 1
    assert ("autopilot_status_cache_hits_total", frozenset()) in before

    sim = stack.create_simulation(rounds=40, round_seconds=0.2)
    run_id = start_auto(api, sim)["flow_run_id"]
    api.wait_monitoring(sim)
    during = scrape(shim_url)
    assert value(during, "autopilot_autopilots", status="active", step="monitoring") >= 1

    pid = wait_until(lambda: living_executor(stack.data_dir, run_id), timeout=30)
    os.kill(pid, signal.SIGKILL)
    check_completed_later(api, sim, run_id)
    assert stack.ledger(sim) == ONE_OF_EACH

    reports = {"step": "generating_report", "outcome": "Completed"}
    reported = value(before, "autopilot_step_runs_total", **reports)

    def counted() -> Samples | None:
        after = scrape(shim_url)
        return after if value(after, "autopilot_step_runs_total", **reports) > reported else None

    after = wait_until(counted, timeout=30, message="the report step's end counted")
    assert (
        value(after, "autopilot_crash_restarts_total")
        >= value(before, "autopilot_crash_restarts_total") + 1
    )
    for step in ("preparing", "monitoring", "generating_report", "completed"):
        grew = value(after, "autopilot_step_duration_seconds_count", step=step) - value(
            before, "autopilot_step_duration_seconds_count", step=step
        )
        assert grew >= 1, step
    # Monitoring ran about 40 rounds of 0.2 s in its last attempt: not 0, not hours.
    assert value(after, "autopilot_step_duration_seconds_sum", step="monitoring") > 0
    assert value(after, "autopilot_autopilots", status="completed", step="completed") >= 1
    assert value(after, "autopilot_status_cache_reads_total") >= 1


def test_backend_errors_the_shim_meets_are_counted_by_kind(api: Api, stack: Stack, shim_url: str):
    sim = stack.create_simulation(rounds=6)
    before = value(scrape(shim_url), "autopilot_backend_errors_total", kind="BACKEND_UNAVAILABLE")
    stack.set_faults(sim, unavailable_requests=1)
    api.fail("config", 503, "BACKEND_UNAVAILABLE", simulation_id=sim, mode="auto")
    after = value(scrape(shim_url), "autopilot_backend_errors_total", kind="BACKEND_UNAVAILABLE")
    assert after == before + 1
