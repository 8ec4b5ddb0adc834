"""Fault switches, so tests (and demos) can make the simulator misbehave on purpose.

All switches are off by default. They are set per simulation, either at creation time
(`POST /api/simulation/create {..., "faults": {...}}`) or later with
`POST /api/sim/faults {"simulation_id": "<id>", ...}` (read them back with
`GET /api/sim/faults?simulation_id=<id>`). `simulation_id: "*"` sets global switches that
apply to every simulation. In a POST, only the keys present are changed; `null` clears one,
`"clear": true` clears all before applying the rest.

- `fail_at_round: N` -- the run fails when it reaches round N (round N is not recorded):
  `runner_status` becomes `failed`, `error` is "injected failure at round N".
- `unavailable_requests: K` -- the next K requests for that simulation answer 503 with the
  multimo envelope `{"success": false, "error": ...}`.
- `unavailable_seconds: T` -- requests for that simulation answer 503 for T seconds from now.
- `delay_seconds: D` -- answers for that simulation are delayed by D seconds.
- `kill_run_at_round: N` -- the run process SIGKILLs itself right after recording round N.
  Run-status stays frozen at `running` (a dead process, as the monitor must detect it). The
  server does not respawn it while it lives; a restarted server resumes it as any other.
  `POST /api/sim/kill-run {"simulation_id"}` SIGKILLs the run process immediately.
- `unavailable_routes: {"<METHOD> <path>": K, ...}` -- the next K requests for that
  simulation whose method and path equal the key (`"POST /api/simulation/start"`,
  `"GET /api/simulation/<id>/run-status"` with the literal id, ...) answer 503 like
  `unavailable_requests`, one unit each, so exactly the first call of one step can fail. A
  request matching a route spends that route's unit, not one of `unavailable_requests`. The
  map sent replaces the previous one; `GET /api/sim/faults` shows the counts left.
- `malformed_routes: {"<METHOD> <path>": K, ...}` -- a corrupting proxy: same keys, units
  and ownership as `unavailable_routes`, but the next K matching requests answer HTTP 200
  with the malformed body `malformed_answer` names, without running the route (no side
  effect, nothing ledgered). Counts left show in `GET /api/sim/faults`.
- `malformed_answer: "list" | "string" | "truncated" | "html" | "wrong_types"` -- the body
  a `malformed_routes` unit serves (the simulation's own, else the global one, else "list"):
  `{"success": true, "data": [1, 2, 3]}`; `{"success": true, "data": "nonsense"}`; the first
  half of a JSON envelope (application/json, cut mid-object); `<html><body>502 Bad
  Gateway</body></html>` as text/html; or an envelope whose run-status/task fields all have
  the wrong types (see `MALFORMED_BODIES`).
- `fail_prepare: true` -- the next preparation task fails ("injected preparation failure").
- `prepare_result_failed: "<reason>"` -- the next preparation "completes" but failed, as the
  real multimo reports it: task `status: "completed"`, `progress: 100`, `result:
  {"simulation_id", "status": "failed", "error": "<reason>"}`; the simulation is not
  prepared, its status is `failed` and its `error` the reason. Spent by that one preparation
  (a global one by the next preparation of any simulation), so the following prepares
  normally.
- `fail_report: true` -- report generation fails ("injected report failure").

A request spends at most one unit, in this order: while `unavailable_seconds` lasts it
answers 503 and spends nothing; else a unit of its `unavailable_routes`, else of
`unavailable_requests` (503); else a unit of its `malformed_routes` (200, malformed). In each
switch the simulation's own units go before the global ones.

A request is "for a simulation" when its path (`/api/simulation/<id>[/...]`), query string
or JSON body carries that simulation_id. The control endpoints under `/api/sim/` are never
affected, so a test can always switch faults off again.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator.store import Store, read_faults, write_faults

GLOBAL = "*"
# Path segments after /api/simulation/ that name a route, not a simulation (create refuses
# them as ids, so a segment is an id exactly when it is not one of these).
FIXED_ROUTES = frozenset({"create", "prepare", "start", "stop", "list"})
_ROUTE_KEY = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S*$")
RouteCounts = dict[str, Annotated[int, Field(ge=0)]]
MalformedAnswer = Literal["list", "string", "truncated", "html", "wrong_types"]
_JSON, _HTML = b"application/json", b"text/html"
_VALID_LOOKING = json.dumps(
    {"success": True, "data": {"runner_status": "running", "current_round": 3, "total_rounds": 10}}
).encode()
_WRONG_TYPES = {
    "runner_status": 7,
    "current_round": "many",
    "total_rounds": [],
    "status": {},
    "task_id": 5,
    "progress": "x",
}
# (content type, body) of each malformed answer.
MALFORMED_BODIES: dict[str, tuple[bytes, bytes]] = {
    "list": (_JSON, json.dumps({"success": True, "data": [1, 2, 3]}).encode()),
    "string": (_JSON, json.dumps({"success": True, "data": "nonsense"}).encode()),
    "truncated": (_JSON, _VALID_LOOKING[: len(_VALID_LOOKING) // 2]),
    "html": (_HTML, b"<html><body>502 Bad Gateway</body></html>"),
    "wrong_types": (_JSON, json.dumps({"success": True, "data": _WRONG_TYPES}).encode()),
}
assert set(MALFORMED_BODIES) == set(get_args(MalformedAnswer))


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fail_at_round: int | None = Field(default=None, ge=1)
    unavailable_requests: int | None = Field(default=None, ge=0)
    unavailable_seconds: float | None = Field(default=None, ge=0)
    delay_seconds: float | None = Field(default=None, ge=0, le=300)
    kill_run_at_round: int | None = Field(default=None, ge=1)
    unavailable_routes: RouteCounts | None = None
    malformed_routes: RouteCounts | None = None
    malformed_answer: MalformedAnswer | None = None
    fail_prepare: bool | None = None
    prepare_result_failed: str | None = Field(default=None, min_length=1, max_length=2000)
    fail_report: bool | None = None

    @field_validator("unavailable_routes", "malformed_routes")
    @classmethod
    def _route_keys(cls, routes: dict[str, int] | None) -> dict[str, int] | None:
        # A key that can never equal "<METHOD> <path>" would silently disable the fault.
        for key in routes or {}:
            if not _ROUTE_KEY.match(key):
                raise ValueError(f'route key {key!r} is not "<METHOD> /<path>"')
        return routes


def apply_spec(current: dict[str, Any], spec: FaultSpec, clear: bool = False) -> dict[str, Any]:
    """Merge the keys the caller actually sent; durations become absolute deadlines so they
    mean "from now" however long the switch sits in the database."""
    config = {} if clear else dict(current)
    for key in spec.model_fields_set:
        value = getattr(spec, key)
        if key == "unavailable_seconds":
            config["unavailable_until"] = None if value is None else time.time() + value
        else:
            config[key] = value
    return {k: v for k, v in config.items() if v is not None}


def public_view(simulation_id: str, config: dict[str, Any]) -> dict[str, Any]:
    until = config.get("unavailable_until")
    remaining = max(0.0, until - time.time()) if until else 0.0
    return {
        "simulation_id": simulation_id,
        "fail_at_round": config.get("fail_at_round"),
        "unavailable_requests": config.get("unavailable_requests", 0),
        "unavailable_seconds_remaining": round(remaining, 3),
        "delay_seconds": config.get("delay_seconds", 0),
        "kill_run_at_round": config.get("kill_run_at_round"),
        "unavailable_routes": dict(config.get("unavailable_routes") or {}),
        "malformed_routes": dict(config.get("malformed_routes") or {}),
        "malformed_answer": config.get("malformed_answer"),
        "fail_prepare": bool(config.get("fail_prepare")),
        "prepare_result_failed": config.get("prepare_result_failed"),
        "fail_report": bool(config.get("fail_report")),
    }


def effective(conn: sqlite3.Connection, simulation_id: str) -> dict[str, Any]:
    """Global switches overridden by the simulation's own."""
    return {**read_faults(conn, GLOBAL), **read_faults(conn, simulation_id)}


def take_once(conn: sqlite3.Connection, simulation_id: str, key: str) -> Any:
    """Spend a one-shot switch inside the caller's write transaction: the simulation's own
    first, else the global one. Returns its value, or None when neither is set."""
    for owner in (simulation_id, GLOBAL):
        config = read_faults(conn, owner)
        value = config.pop(key, None)
        if value is not None:
            write_faults(conn, owner, config)
            return value
    return None


class Outcome(Enum):
    NORMAL = "normal"  # run the route
    UNAVAILABLE = "unavailable"  # answer 503
    MALFORMED = "malformed"  # answer 200 with a malformed body


@dataclass(frozen=True)
class Verdict:
    delay: float
    outcome: Outcome = Outcome.NORMAL
    malformed_answer: str = "list"  # which MALFORMED_BODIES entry, when MALFORMED


# The counters a request may spend one unit of, first match wins (see the module docstring):
# (switch, keyed by route, outcome).
_COUNTERS = (
    ("unavailable_routes", True, Outcome.UNAVAILABLE),
    ("unavailable_requests", False, Outcome.UNAVAILABLE),
    ("malformed_routes", True, Outcome.MALFORMED),
)


def _left(config: dict[str, Any], switch: str, by_route: bool, route: str) -> int:
    value = config.get(switch)
    return int(((value or {}).get(route) if by_route else value) or 0)


def consume_request(store: Store, simulation_id: str, route: str = "") -> Verdict:
    """What to do with one request (`route` is "<METHOD> <path>"), spending one unit of the
    first counter in `_COUNTERS` that has one left for it."""
    with store.read() as conn:
        configs = [read_faults(conn, k) for k in (simulation_id, GLOBAL)]
    delay = max(float(c.get("delay_seconds") or 0) for c in configs)
    if any((c.get("unavailable_until") or 0) > time.time() for c in configs):
        return Verdict(delay, Outcome.UNAVAILABLE)
    if not any(_left(c, s, r, route) for c in configs for s, r, _ in _COUNTERS):
        return Verdict(delay)
    answer = next((c["malformed_answer"] for c in configs if c.get("malformed_answer")), "list")
    # Re-read under the write lock: concurrent requests must not spend the same unit twice.
    with store.write() as conn:
        owned = [(key, read_faults(conn, key)) for key in (simulation_id, GLOBAL)]
        for switch, by_route, outcome in _COUNTERS:
            for key, config in owned:
                left = _left(config, switch, by_route, route)
                if left > 0:
                    config[switch] = {**config[switch], route: left - 1} if by_route else left - 1
                    write_faults(conn, key, config)
                    return Verdict(delay, outcome, answer)
    return Verdict(delay)


def _simulation_id_of(path: str, query: bytes, body: bytes) -> str | None:
    parts = path.strip("/").split("/")
    # Any id, chosen ones included: only the fixed routes' own segments are not ids.
    segment = parts[2] if len(parts) >= 3 and parts[:2] == ["api", "simulation"] else ""
    if segment and segment not in FIXED_ROUTES:
        return segment
    found = parse_qs(query.decode("latin-1")).get("simulation_id")
    if found:
        return found[0]
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if isinstance(data, dict) and isinstance(data.get("simulation_id"), str):
            return str(data["simulation_id"])
    return None


class FaultMiddleware:
    """Pure ASGI middleware: it must read the body to find a simulation_id and then hand
    the same bytes to the route, which BaseHTTPMiddleware makes awkward."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/api/") or path.startswith("/api/sim/"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body") or message["type"] != "http.request":
                break
        body = b"".join(chunks)
        sim_id = _simulation_id_of(path, scope.get("query_string", b""), body)
        if sim_id is not None:
            route = f"{scope.get('method', '')} {path}"
            verdict = await asyncio.to_thread(consume_request, self.store, sim_id, route)
            if verdict.delay:
                await asyncio.sleep(verdict.delay)
            if verdict.outcome is Outcome.UNAVAILABLE:
                error = {"success": False, "error": "simulator unavailable"}
                await _send(send, 503, _JSON, json.dumps(error).encode())
                return
            if verdict.outcome is Outcome.MALFORMED:
                await _send(send, 200, *MALFORMED_BODIES[verdict.malformed_answer])
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send(send: Send, status: int, content_type: bytes, raw: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
