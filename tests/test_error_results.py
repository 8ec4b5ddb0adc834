"""Failed steps store their exception as JSON (the steps' result serializer); every error of
the tree must load back from that, or reading a failed run's result fails a second time."""

from __future__ import annotations

import pytest
from prefect.serializers import JSONSerializer

import autopilot.devstack.pieces  # noqa: F401  (defines StartupFailed on the tree)
import autopilot.errors as errors
import autopilot.run.claim  # noqa: F401  (Superseded, Refused)
import autopilot.run.control  # noqa: F401  (defines StepInterrupted, RunStopped)
import autopilot.run.driver  # noqa: F401  (RunStopped)
from autopilot.errors import AutopilotError


def tree(cls: type[AutopilotError]) -> list[type[AutopilotError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in tree(child))]


CLASSES = tree(AutopilotError)


def test_the_tree_is_the_one_we_think():
    names = {cls.__name__ for cls in CLASSES}
    assert {"StepFailed", "BackendProtocolError", "BackendAuthError"} <= names, names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_loads_back_from_a_json_result(cls: type[AutopilotError]):
    original = cls("POST /api/simulation/start: the backend answered a JSON list")
    loaded = JSONSerializer().loads(JSONSerializer().dumps(original))
    assert type(loaded) is cls
    assert str(loaded) == str(original)


def test_a_step_failure_keeps_its_message_and_code_when_loaded():
    failed = errors.StepFailed("simulation failed at round 3", step="monitoring")
    loaded = JSONSerializer().loads(JSONSerializer().dumps(failed))
    assert isinstance(loaded, errors.StepFailed)
    assert loaded.message == "simulation failed at round 3"
    assert loaded.error_code == "STEP_FAILED"
