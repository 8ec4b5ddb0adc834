"""Proof that a step's checkpoint was written, because resume depends on it.

Prefect logs a failed result write (read-only or full storage) and completes the task anyway:
the next attempt would then redo the step, or worse, a 0-byte file would be taken for a
result. After every step that ran (not Cached) the flow reads the checkpoint back.
"""

from __future__ import annotations

from typing import Any

from prefect.results import get_result_store

from autopilot.errors import StepFailed


def storage_location(store: Any) -> str:
    """Where the store writes, for the error message (a path for local storage)."""
    storage = getattr(store, "result_storage", None)
    return str(getattr(storage, "basepath", None) or storage or "the default result storage")


def verify_checkpoint(step: Any, key: str, step_name: str) -> None:
    """Raise `StepFailed` naming the storage if the step's checkpoint cannot be read back."""
    store: Any = get_result_store().update_for_task(step)
    try:
        written = store.exists(key)
    except Exception:
        written = False
    if not written:
        raise StepFailed(
            f"the checkpoint of step {step_name} could not be written to "
            f"{storage_location(store)} (read-only or full?): without it the run cannot "
            "resume; fix the storage and start again",
            step=step_name,
            error_code="CHECKPOINT_NOT_WRITTEN",
        )
