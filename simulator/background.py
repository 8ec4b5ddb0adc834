"""The simulator's background jobs (a preparation, a report): each runs in a daemon thread,
and one the server was killed in the middle of is picked up again when it starts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from simulator.store import Store

log = logging.getLogger("simulator.background")

# (store, simulation_id, job_id, seconds the job takes)
Job = Callable[[Store, str, str, float], None]


def run_in_background(
    job: Job, store: Store, simulation_id: str, job_id: str, seconds: float
) -> None:
    """Start `job` in a daemon thread: the server answers at once, the job's row tells how
    far it got."""
    threading.Thread(target=job, args=(store, simulation_id, job_id, seconds), daemon=True).start()


def resume_unfinished(
    store: Store, query: str, id_column: str, what: str, job: Job, seconds: float
) -> None:
    """Run `job` again for every row of `query` (simulation_id, `id_column`): the jobs that
    were pending or processing when the server stopped, continued under their own ids."""
    with store.read() as conn:
        rows = conn.execute(query).fetchall()
    for row in rows:
        log.info("%s: resuming %s %s", row["simulation_id"], what, row[id_column])
        run_in_background(job, store, row["simulation_id"], row[id_column], seconds)
