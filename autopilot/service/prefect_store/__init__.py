"""The service side's Prefect adapter, split by job: the connection (`connection`), reads
(`reads`), changes (`controls`) and the event feed (`events`); `PrefectStore` is all of them."""

from __future__ import annotations

from autopilot.service.prefect_store.connection import PrefectConnection, prefect
from autopilot.service.prefect_store.controls import RunControls
from autopilot.service.prefect_store.events import ChangeFeed, ChangeRefs


class PrefectStore(RunControls, ChangeFeed):
    """Everything the service reads and writes in Prefect (variables, flow runs, artifacts)."""


__all__ = ["ChangeRefs", "PrefectConnection", "PrefectStore", "prefect"]
