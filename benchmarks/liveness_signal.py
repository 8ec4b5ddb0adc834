"""What a liveness signal costs the Prefect database: the candidates side by side.

For each candidate, N renewals of one running flow run's liveness, then the growth of the
database's bytes in use, bytes per renewal, the projection for a 72-hour run at one renewal
every 5 s (51,840 renewals), and the p50 time of one renewal. On PostgreSQL an update leaves
the old row version behind until (auto)vacuum frees it for reuse, so the growth is given twice:
`raw` (a first burst of N renewals, no vacuum) and `steady` (a second burst after a VACUUM, as
autovacuum keeps freeing space over a 72-hour run, every `--vacuum-every` renewals if given:
what keeps being added):

  label      PATCH /flow_runs/{id}/labels (ours: autopilot/liveness.py): one row in place
  variable   PATCH /variables/name/{name}: one row in place, plus a `prefect.variable.updated`
             event the server stores
  heartbeat  a `prefect.flow-run.heartbeat` event shaped as Prefect's flow engine emits it
             (what Prefect's own zombie detection watches)

    .venv/bin/python benchmarks/liveness_signal.py [--db sqlite|postgres] [--renewals 2000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autopilot.devstack.postgres import Postgres  # noqa: E402
from benchmarks.bench_support import code_version  # noqa: E402
from tests.helpers import free_port, wait_until  # noqa: E402

RENEWALS_72H = 72 * 3600 // 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--renewals", type=int, default=2000)
    parser.add_argument(
        "--vacuum-every",
        type=int,
        default=0,
        help="PostgreSQL, second burst: VACUUM every K renewals (autovacuum's pace: it wakes "
        "every 60 s, 12 renewals at 5 s); 0 = only before the burst",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="autopilot-bench-liveness-"))
    port = free_port()
    os.environ.update(
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_HOME=str(work / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    from autopilot.devstack.postgres import start_postgres
    from tests.prefect_stack import start_prefect_server

    pg = start_postgres(free_port()) if args.db == "postgres" else None
    server = start_prefect_server(
        work / "server", port, work / "server.log", database_url=pg.url if pg else None
    )
    try:
        measure(args, work, pg)
    finally:
        server.kill()
        server.wait()
        if pg is not None:
            pg.stop()


def bytes_in_use(work: Path, pg: Postgres | None) -> int:
    if pg is None:
        with sqlite3.connect(work / "server" / "prefect.db") as db:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    query = "SELECT sum(pg_total_relation_size(relid)) FROM pg_catalog.pg_statio_user_tables"
    return int(pg.query(query))


def vacuum(pg: Postgres | None) -> None:
    """PostgreSQL: free dead row versions for reuse (what autovacuum does); SQLite reuses freed
    pages by itself."""
    if pg is not None:
        pg.query("VACUUM")


def events_stored(client: object) -> int:
    response = client.request("POST", "/events/filter", json={"limit": 1})  # type: ignore[attr-defined]
    return int(response.json().get("total", 0))


def events_settled(client: object) -> int:
    """The number of stored events once it stops growing: events reach the database through
    the server's pipeline, seconds after they were sent."""
    counts: list[int] = []

    def landed() -> bool:
        counts.append(events_stored(client))
        return len(counts) > 3 and counts[-1] == counts[-4]

    wait_until(landed, timeout=120, interval=1.0, message="events stored")
    return counts[-1]


def measure(args: argparse.Namespace, work: Path, pg: Postgres | None) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate
    from prefect.states import Running

    @flow(name="liveness-bench")
    def noop() -> None:
        pass

    print(f"code {code_version()}, database {args.db}, {args.renewals} renewals per candidate"
          f", vacuum every {args.vacuum_every or args.renewals} in the steady burst")  # fmt: skip
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(noop, tags=["autopilot", "autopilot-sim:bench"])
        client.set_flow_run_state(run.id, Running(), force=True)
        run = client.read_flow_run(run.id)
        client.create_variable(VariableCreate(name="bench-lease", value="0"))
        resource = {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.name": run.name,
            "prefect.version": "3.9.1",
        }
        related = [
            {"prefect.resource.id": f"prefect.flow.{run.flow_id}", "prefect.resource.role": "flow",
             "prefect.resource.name": "liveness-bench"},
            *({"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
              for tag in run.tags),
        ]  # fmt: skip

        def label(beat: int) -> None:
            client.update_flow_run_labels(run.id, {"autopilot.lease": f"host|1234|1|abc|{beat}"})

        def variable(beat: int) -> None:
            client.request(
                "PATCH", "/variables/name/bench-lease", json={"value": f"host|1234|1|abc|{beat}"}
            )

        def heartbeat(beat: int) -> None:
            event = {
                "occurred": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                "event": "prefect.flow-run.heartbeat",
                "resource": resource,
                "related": related,
                "payload": {},
                "id": str(uuid4()),
            }
            client.request("POST", "/events", json=[event])

        candidates: list[tuple[str, Callable[[int], None]]] = [
            ("label", label),
            ("variable", variable),
            ("heartbeat", heartbeat),
        ]
        print(f"{'candidate':<10} {'raw B/renewal':>14} {'72 h MB':>8} {'steady B/renewal':>17} "
              f"{'72 h MB':>8} {'p50 ms':>7} {'events':>7}")  # fmt: skip
        for name, renew in candidates:
            before_events = events_stored(client)
            times: list[float] = []
            grown = []
            for burst in range(2):
                if burst:
                    vacuum(pg)
                before = bytes_in_use(work, pg)
                for beat in range(args.renewals):
                    if burst and args.vacuum_every and beat and beat % args.vacuum_every == 0:
                        vacuum(pg)
                    started = time.perf_counter()
                    renew(burst * args.renewals + beat)
                    times.append(time.perf_counter() - started)
                stored = events_settled(client)
                if pg is not None:
                    pg.query("CHECKPOINT")
                grown.append((bytes_in_use(work, pg) - before) / args.renewals)
            raw, steady = grown
            print(
                f"{name:<10} {raw:>14.1f} {raw * RENEWALS_72H / 1e6:>8.2f} {steady:>17.1f} "
                f"{steady * RENEWALS_72H / 1e6:>8.2f} {statistics.median(times) * 1000:>7.2f} "
                f"{stored - before_events:>7}"
            )


if __name__ == "__main__":
    main()
