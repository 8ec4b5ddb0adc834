"""Every `error_code` the code can raise has one home: `autopilot.api_models.ErrorCode`.

The OpenAPI document lists the enum as the envelope's `error_code`; a code raised somewhere
but missing there would make the document lie to clients that switch on it.
"""

from __future__ import annotations

import re
from pathlib import Path

from autopilot.api_models import ErrorCode
from autopilot.errors import AutopilotError

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("autopilot", "tasks", "flows", "deployments")
# `error_code="X"` (an argument) and `error_code = "X"` (a class default).
RAISED = re.compile(r"error_code\s*=\s*\"([A-Z_]+)\"")


def codes_in_source() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            for code in RAISED.findall(path.read_text(encoding="utf-8")):
                found.setdefault(code, str(path.relative_to(REPO)))
    return found


def test_the_scan_finds_the_codes_it_is_meant_to_find():
    found = codes_in_source()
    # One of each kind: a class default, a raise in the service, a step's failure.
    assert {"BACKEND_PROTOCOL", "ALREADY_PAUSED", "PREPARE_FAILED"} <= set(found), found


def test_every_raised_error_code_is_listed_in_the_enum():
    listed = {code.value for code in ErrorCode}
    missing = {code: where for code, where in codes_in_source().items() if code not in listed}
    assert not missing, f"add these to autopilot.api_models.ErrorCode: {missing}"


def test_every_error_class_default_is_listed():
    def subclasses(cls: type[AutopilotError]) -> list[type[AutopilotError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    listed = {code.value for code in ErrorCode}
    for cls in subclasses(AutopilotError):
        assert cls.error_code in listed, cls
