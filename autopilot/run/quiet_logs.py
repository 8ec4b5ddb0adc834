"""Operators' logs: a pause is one INFO line, a failed run one ERROR line naming the step and
the reason; tracebacks only for our own bugs.

Prefect logs every exception a task or flow raises at ERROR with its traceback, and again in
"Finished in state Failed(...)". For the auto-pilot's known outcomes (a step yielding to a
pause or stop, a step failing for a reason it states) that is noise: eleven tracebacks in a
session of normal use. This filter, on Prefect's run loggers in the flow process, drops the
repeats and the tracebacks of our own error classes; anything else passes untouched.
"""

from __future__ import annotations

import logging

from autopilot.errors import AutopilotError, StepFailed
from autopilot.run.control import StepInterrupted

_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")
_KNOWN = ("StepInterrupted", "StepFailed", "RunStopped")


class KnownOutcomes(logging.Filter):
    """Rewrites or drops Prefect's records about the auto-pilot's known outcomes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, StepInterrupted):
            return False  # the step said "run is paused: … yields" at INFO already
        if isinstance(error, AutopilotError):
            if record.name == "prefect.task_runs":
                return False  # the flow's line below names the step and the reason
            step = error.step if isinstance(error, StepFailed) else "?"
            record.msg, record.args = f"auto-pilot failed at {step}: {error.message}", ()
            record.exc_info, record.exc_text = None, None
            return True
        message = record.getMessage()
        if "Finished in state" in message and any(name in message for name in _KNOWN):
            return False
        # A pause: the step's own "run is paused: … yields" line says it.
        return not message.startswith("Finished in state Suspended") and not (
            message.startswith("Execution of flow run") and message.endswith("is paused.")
        )


_FILTER = KnownOutcomes()


def quiet_known_outcomes() -> None:
    """Install the filter on Prefect's run loggers (idempotent)."""
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
