"""`AUTOPILOT_LOG_FORMAT=json`: one JSON object a line from every process (shim, worker, flow
runs), each carrying `simulation_id`, `generation`, `step` and `flow_run_id` where they exist.

Every one of those processes logs through Prefect's logging configuration (the root logger's
`console` handler, also for uvicorn's loggers in the shim), and every flow process inherits its
worker's environment. So the switch is made once, in the environment, before Prefect configures
logging: Prefect's own `json` formatter is replaced by `JsonLines` and given to its console and
debug handlers (`PREFECT_LOGGING_*` overrides of its logging.yml). The human format stays the
default.

Secrets never appear: the values of secret settings (the backend password and token, the shim
token, Prefect's auth string and key) are replaced by `***` in every message and traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from autopilot.names import step_of_task_run

HUMAN, JSON = "human", "json"
# Environment variables whose values are secrets wherever they appear.
SECRET_VARIABLES = (
    "AUTOPILOT_BACKEND_PASSWORD",
    "AUTOPILOT_BACKEND_TOKEN",
    "AUTOPILOT_API_TOKEN",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_API_AUTH_STRING",
    "PREFECT_API_KEY",
)
_JSON_LOGGING = {
    "PREFECT_LOGGING_FORMATTERS_JSON_CLASS": "autopilot.logs.JsonLines",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER": "json",
    "PREFECT_LOGGING_HANDLERS_DEBUG_FORMATTER": "json",
}


def use_log_format(value: str | None = None) -> str:
    """Switch this process (and every process it starts) to `value` (default: the
    AUTOPILOT_LOG_FORMAT variable); the format in use. Call it before anything logs."""
    from autopilot.errors import InvalidInput

    chosen = value if value is not None else os.environ.get("AUTOPILOT_LOG_FORMAT", HUMAN)
    chosen = chosen.strip().lower() or HUMAN
    if chosen not in (HUMAN, JSON):
        raise InvalidInput(
            f"AUTOPILOT_LOG_FORMAT must be {HUMAN} or {JSON}, not {chosen!r}",
            error_code="INVALID_LOG_FORMAT",
        )
    if chosen == JSON:
        os.environ["AUTOPILOT_LOG_FORMAT"] = JSON
        os.environ.update(_JSON_LOGGING)
        if "prefect" in sys.modules:  # it configured logging when imported: again, in JSON
            from prefect.logging.configuration import setup_logging

            setup_logging(incremental=False)
    return chosen


def _secrets() -> list[str]:
    values = []
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "").strip()
        if len(value) >= 4:  # shorter ones would blank out ordinary words
            values.append(value)
            if ":" in value:  # a basic-auth string: its password alone is secret too
                values.append(value.split(":", 1)[1])
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run_context() -> dict[str, Any]:
    """The simulation, generation, step and flow run of the code logging, if it runs in one."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover (prefect is a dependency)
        return {}
    found: dict[str, Any] = {}
    flow_context = FlowRunContext.get()
    if flow_context is not None and flow_context.flow_run is not None:
        parameters = flow_context.flow_run.parameters or {}
        found["simulation_id"] = parameters.get("simulation_id")
        found["generation"] = parameters.get("generation")
        found["flow_run_id"] = str(flow_context.flow_run.id)
    task_context = TaskRunContext.get()
    if task_context is not None:
        found["step"] = task_context.task.name
        found["flow_run_id"] = found.get("flow_run_id") or str(task_context.task_run.flow_run_id)
    return found


class JsonLines(logging.Formatter):
    """A log record as one line of JSON: time, level, logger, message, the run's identity."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._secrets = _secrets()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self._secrets),
            "pid": record.process,
        }
        context = run_context()
        # Lines logged as a task run ends (its context gone) still name it: "<step>-<n>".
        task_run_name = getattr(record, "task_run_name", None)
        if "step" not in context and isinstance(task_run_name, str) and task_run_name:
            context["step"] = step_of_task_run(task_run_name)
        # Prefect's run loggers name the flow run on the record even outside its context.
        flow_run_id = getattr(record, "flow_run_id", None) or context.get("flow_run_id")
        for key, value in (
            ("simulation_id", context.get("simulation_id")),
            ("generation", context.get("generation")),
            ("step", context.get("step")),
            ("flow_run_id", str(flow_run_id) if flow_run_id else None),
        ):
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info), self._secrets)
        return json.dumps(entry, default=str, ensure_ascii=False)


def basic_config(level: int = logging.INFO) -> None:
    """A process's own logging before Prefect configures its own (the worker's): in the format
    chosen. Does nothing once the root logger has a handler (Prefect's, then)."""
    handler = logging.StreamHandler()
    if os.environ.get("AUTOPILOT_LOG_FORMAT") == JSON:
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
