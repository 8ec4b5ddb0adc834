"""The five steps share one decorator (`tasks._step.step_task`): what it gives each one is
what resume depends on, so it is stated here step by step."""

from __future__ import annotations

import pytest
from prefect.cache_policies import NO_CACHE

from autopilot.models import Step
from tasks._step import RETRY_DELAYS
from tasks.complete import complete
from tasks.generate_report import generate_report
from tasks.monitor import monitor_simulation
from tasks.prepare import prepare_simulation
from tasks.start import start_simulation

CHECKPOINTED = [
    (prepare_simulation, Step.PREPARING, 3),
    (start_simulation, Step.STARTING, 3),
    (generate_report, Step.GENERATING_REPORT, 3),
    (complete, Step.COMPLETED, 0),
]


@pytest.mark.parametrize(("step", "expected", "retries"), CHECKPOINTED, ids=lambda v: str(v))
def test_side_effecting_steps_persist_a_json_checkpoint(step, expected, retries):
    assert step.name == expected.value
    assert step.persist_result is True
    assert step.result_serializer == "json"
    assert step.cache_key_fn is not None
    assert step.retries == retries
    if retries:
        assert step.retry_delay_seconds == RETRY_DELAYS
        assert step.retry_condition_fn is not None


def test_monitoring_keeps_no_checkpoint_and_no_cache():
    assert monitor_simulation.name == Step.MONITORING.value
    assert monitor_simulation.persist_result is False
    assert monitor_simulation.cache_policy is NO_CACHE
    assert monitor_simulation.retries == 0
