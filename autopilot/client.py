"""The one HTTP client for the multimo backend (real multimo or the bundled simulator).

Only this module catches `httpx` errors: everything leaves it as an `autopilot.errors` class.
Quirks handled here (CONTRACT.md part B): login and one re-login on 401, 429 with back-off
honouring `Retry-After`, error text under `error` or `message` or inside Flask's JSON array
bodies, report status polled by simulation id only. A 2xx answer we cannot read (not JSON,
not the shape we know) is a `BackendProtocolError`, never a raw pydantic or key error. One
login per process and (base URL, email): every client shares the token until a 401.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from autopilot.backend_models import (
    LoginAnswer,
    PrepareAccepted,
    PrepareStatus,
    Report,
    ReportAccepted,
    ReportTaskStatus,
    RunStatus,
    SimulationCreated,
    SimulationInfo,
    StartAccepted,
    Timeline,
    TimelineRound,
)
from autopilot.errors import (
    BackendAuthError,
    BackendProtocolError,
    BackendRejected,
    BackendUnavailable,
    NotFound,
)
from autopilot.settings import Settings

logger = logging.getLogger(__name__)

_MAX_ERROR_TEXT = 300
_MAX_EXCERPT = 120
# Shorter "secrets" than this are not masked: they would shred ordinary words of a message
# (a token "tok" inside "Invalid token"), and no real token or password is that short.
_MIN_MASKED = 4
_RETRY_AFTER_FALLBACK = [1.0, 2.0, 5.0, 10.0, 30.0]
_LOGIN_PATH = "/api/v1/auth/login"

M = TypeVar("M", bound=BaseModel)


class _TokenCache:
    """One bearer token per (base URL, email) for the whole process.

    The steps and the service build a client per call path; without this each one logs in
    again (six logins per run against the real backend). A client reads the cache before
    logging in and writes it after; a 401 replaces the entry. The per-key login lock makes
    concurrent clients that all lack a token (or all hold the same dead one) log in once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}
        self._login_locks: dict[tuple[str, str], threading.Lock] = {}

    def get(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: tuple[str, str], token: str) -> None:
        with self._lock:
            self._tokens[key] = token

    def login_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._login_locks.setdefault(key, threading.Lock())

    def clear(self) -> None:
        """Forget every token (tests; a process that changes its credentials)."""
        with self._lock:
            self._tokens.clear()


TOKENS = _TokenCache()


def error_text(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """The human-readable error of a backend answer, whatever shape its body has, with
    `secrets` masked (an echoing proxy or error page can hand back our password or token)."""
    try:
        body: Any = response.json()
    except (ValueError, RecursionError):
        body = response.text
    # Flask-level errors (405, 429) come as a JSON array: [{...}, status].
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        keys = ("error", "message", "description", "detail")
        text = next((str(body[key]) for key in keys if body.get(key)), "")
    else:
        text = str(body).strip()
    return _mask(text, secrets)[:_MAX_ERROR_TEXT] if text else f"HTTP {response.status_code}"


def _mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret replaced by ***, longest first (so a secret
    that contains another is masked whole)."""
    forms = {
        form
        for secret in secrets
        if len(secret) >= _MIN_MASKED
        for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _retry_after_seconds(response: httpx.Response, attempt: int) -> float:
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass  # an HTTP-date: rare here, fall back to our own schedule
    return _RETRY_AFTER_FALLBACK[min(attempt, len(_RETRY_AFTER_FALLBACK) - 1)]


class MultimoClient:
    """Typed calls to the multimo backend over one `httpx.Client`."""

    def __init__(
        self,
        base_url: str,
        *,
        email: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        rate_limit_budget: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        before_change: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Called with "METHOD /path" before every call that changes the backend (prepare,
        # start, stop, report): the flow's fence (autopilot/run/lease.py) ends a process whose
        # run was taken over before it can act twice.
        self._before_change = before_change or (lambda what: None)
        self._email = email
        self._password = password
        self._token = token
        self._rate_limit_budget = rate_limit_budget
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        before_change: Callable[[str], None] | None = None,
    ) -> MultimoClient:
        """A client configured from `Settings`."""
        return cls(
            settings.backend_url,
            email=settings.backend_email,
            password=settings.backend_password.get_secret_value()
            if settings.backend_password
            else None,
            token=settings.backend_token.get_secret_value() if settings.backend_token else None,
            timeout=settings.http_timeout,
            connect_timeout=settings.connect_timeout,
            rate_limit_budget=settings.rate_limit_budget,
            transport=transport,
            before_change=before_change,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> MultimoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def _can_login(self) -> bool:
        return bool(self._email and self._password)

    def _cache_key(self) -> tuple[str, str]:
        return (self.base_url, self._email or "")

    def login(self) -> None:
        """Log in with the configured credentials, keep the token and share it (`TOKENS`)."""
        if not self._can_login():
            raise BackendAuthError("the backend asks for a login but no credentials are set")
        response = self._send(
            "POST",
            _LOGIN_PATH,
            json={"email": self._email, "password": self._password},
            authenticated=False,
        )
        if response.status_code >= 400:
            # Never echo the request: it holds the password.
            said = error_text(response, self._secrets())
            if response.status_code >= 500:
                # A backend restarting answers 5xx to a login too: an outage, ridden out.
                raise BackendUnavailable(f"login: backend error {response.status_code}: {said}")
            raise BackendAuthError(f"login failed: {said}", backend_status=response.status_code)
        # No excerpt of a login answer in an error: it carries a credential by design (and an
        # echoing proxy would hand back our password).
        what = f"POST {_LOGIN_PATH}"
        body = self._json_body(response, what, show=False)
        data = body.get("data") if isinstance(body, dict) else body
        token = self._parse(LoginAnswer, data, what, show=False).token
        if not token:
            raise BackendAuthError("login answered without a token")
        self._token = token
        TOKENS.put(self._cache_key(), token)

    def _ensure_token(self) -> None:
        """Take the process's token for this backend and email, logging in only if none."""
        if self._token is not None or not self._can_login():
            return
        self._token = TOKENS.get(self._cache_key())
        if self._token is None:
            self._renew_token(stale=None)

    def _renew_token(self, stale: str | None) -> bool:
        """Replace `stale` (the token just refused, or None): with the one another client got
        since, else by one login. True if this call logged in."""
        key = self._cache_key()
        with TOKENS.login_lock(key):
            cached = TOKENS.get(key)
            if cached is not None and cached != stale:
                self._token = cached
                return False
            self.login()
            return True

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        """One HTTP exchange with 429 back-off; connection problems become unavailability."""
        headers = (
            {"Authorization": f"Bearer {self._token}"} if authenticated and self._token else {}
        )
        waited = 0.0
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(
                    f"backend at {self.base_url} timed out on {method} {path}"
                ) from exc
            except httpx.TransportError as exc:
                raise BackendUnavailable(
                    f"backend at {self.base_url} unreachable on {method} {path}: "
                    f"{type(exc).__name__}"
                ) from exc
            if response.status_code != 429:
                return response
            delay = _retry_after_seconds(response, attempt)
            if waited + delay > self._rate_limit_budget:
                raise BackendUnavailable(
                    f"backend rate limit on {method} {path} for {waited:.0f}s: "
                    f"{error_text(response, self._secrets())}"
                )
            logger.warning("rate limited on %s %s, waiting %.1fs", method, path, delay)
            self._sleep(delay)
            waited += delay
            attempt += 1

    def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Send an authenticated call and return the envelope's `data`, or raise the error tree."""
        self._ensure_token()
        response = self._send(method, path, json=json, params=params)
        logged_in = False
        while response.status_code == 401 and self._can_login() and not logged_in:
            # Tokens die when the backend restarts: take the token another client already
            # renewed, or log in again -- at most once per call, as a second 401 after a fresh
            # login means the credentials themselves are refused.
            logged_in = self._renew_token(stale=self._token)
            response = self._send(method, path, json=json, params=params)
        return self._unwrap(response, f"{method} {path}")

    def _unwrap(self, response: httpx.Response, what: str) -> Any:
        """Map a backend answer onto `data` or the error tree."""
        status = response.status_code
        if status >= 400:
            said = error_text(response, self._secrets())
            if status >= 500:
                raise BackendUnavailable(f"{what}: backend error {status}: {said}")
            if status in (401, 403):
                raise BackendAuthError(f"{what}: {said}", backend_status=status)
            if status == 404:
                raise NotFound(f"{what}: {said}")
            raise BackendRejected(f"{what}: {said}", backend_status=status)
        body = self._json_body(response, what)
        if isinstance(body, dict) and body.get("success") is False:
            said = error_text(response, self._secrets())
            raise BackendRejected(f"{what}: {said}", backend_status=status)
        return body.get("data") if isinstance(body, dict) else body

    # -- parsing: every body and every model goes through these two ---------------------

    def _json_body(self, response: httpx.Response, what: str, *, show: bool = True) -> Any:
        """The decoded JSON body, or `BackendProtocolError` (truncated, HTML from a proxy...)."""
        try:
            return response.json()
        except (ValueError, RecursionError):
            # ValueError covers bad JSON and undecodable bytes; RecursionError absurd nesting.
            text = response.text
            problem = "a body that is not JSON" if text.strip() else "an empty body"
            raise self._protocol_error(what, problem, text, raw=True, show=show) from None

    def _parse(self, model: type[M], data: Any, what: str, *, show: bool = True, **known: Any) -> M:
        """`data` (an envelope's `data`) as `model`, with `known` fields from the request.

        `null` reads as `{}` (the backend sends nulls; the models default what is missing);
        anything else that is not an object, or an object the model refuses, is a protocol
        error -- never a pydantic dump, which would reach a flow run's state and the shim.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self._protocol_error(
                what, f"{_json_kind(data)} where an object was expected", data, show=show
            )
        try:
            return model.model_validate({**known, **data})
        except ValidationError as exc:
            raise self._protocol_error(what, _field_problem(exc), data, show=show) from None

    def _protocol_error(
        self, what: str, problem: str, value: Any, *, raw: bool = False, show: bool = True
    ) -> BackendProtocolError:
        """One sentence: the endpoint, what was wrong, and a short cut of what came back."""
        excerpt = _excerpt(value, raw=raw, secrets=self._secrets()) if show else ""
        message = f"{what}: the backend answered {problem}"
        if excerpt:
            message += f": {excerpt}"
        elif not show:
            message += " (not shown: a login answer carries credentials)"
        return BackendProtocolError(message, endpoint=what, excerpt=excerpt)

    def _secrets(self) -> list[str]:
        return [secret for secret in (self._password, self._token) if secret]

    def _fetch(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        **known: Any,
    ) -> M:
        """One call whose `data` is read as `model` (see `_parse`)."""
        data = self._call(method, path, json=json, params=params)
        return self._parse(model, data, f"{method} {path}", **known)

    # -- simulations -------------------------------------------------------------------

    def get_simulation(self, simulation_id: str) -> SimulationInfo:
        """Read a simulation; `NotFound` if the backend does not know it."""
        path = f"/api/simulation/{_segment(simulation_id)}"
        return self._fetch(SimulationInfo, "GET", path, simulation_id=simulation_id)

    def create_simulation(self, **fields: Any) -> str:
        """Create a simulation (bundled simulator) and return its id."""
        path = "/api/simulation/create"
        return self._fetch(SimulationCreated, "POST", path, json=fields).simulation_id

    def prepare_status(self, simulation_id: str, task_id: str | None = None) -> PrepareStatus:
        """Preparation state; always send both ids when a task is known (a failed task hides)."""
        body: dict[str, Any] = {"simulation_id": simulation_id}
        if task_id:
            body["task_id"] = task_id
        return self._fetch(PrepareStatus, "POST", "/api/simulation/prepare/status", json=body)

    def prepare(self, simulation_id: str) -> PrepareAccepted:
        """Ask the backend to prepare; it has no duplicate guard, so call once per preparation."""
        body = {"simulation_id": simulation_id}
        self._before_change("POST /api/simulation/prepare")
        return self._fetch(PrepareAccepted, "POST", "/api/simulation/prepare", json=body)

    def run_status(self, simulation_id: str) -> RunStatus:
        """The runner's state: the only reliable completion signal."""
        path = f"/api/simulation/{_segment(simulation_id)}/run-status"
        return self._fetch(RunStatus, "GET", path)

    def timeline(self, simulation_id: str) -> list[TimelineRound]:
        """The run's rounds summed up (actions by platform, active agents), oldest first."""
        path = f"/api/simulation/{_segment(simulation_id)}/timeline"
        return self._fetch(Timeline, "GET", path).timeline

    def start(
        self,
        simulation_id: str,
        *,
        platform: str = "parallel",
        max_rounds: int | None = None,
        force: bool = False,
    ) -> StartAccepted:
        """Start the simulation run."""
        body: dict[str, Any] = {"simulation_id": simulation_id, "platform": platform}
        if max_rounds is not None:
            body["max_rounds"] = max_rounds
        if force:
            body["force"] = True
        self._before_change("POST /api/simulation/start")
        return self._fetch(StartAccepted, "POST", "/api/simulation/start", json=body)

    def stop(self, simulation_id: str) -> None:
        """Stop the running simulation (the backend answers 400 unless running or paused)."""
        self._before_change("POST /api/simulation/stop")
        self._call("POST", "/api/simulation/stop", json={"simulation_id": simulation_id})

    # -- reports -----------------------------------------------------------------------

    def generate_report(self, simulation_id: str, force_regenerate: bool = False) -> ReportAccepted:
        """Ask for a report; the answer says whether one already existed (multimo answers
        with a completed report of the simulation, any run's, unless `force_regenerate`)."""
        body: dict[str, Any] = {"simulation_id": simulation_id}
        if force_regenerate:
            body["force_regenerate"] = True
        self._before_change("POST /api/report/generate")
        return self._fetch(ReportAccepted, "POST", "/api/report/generate", json=body)

    def report_generation_status(self, simulation_id: str) -> ReportTaskStatus | None:
        """Report task state by simulation id ONLY (with a task id the backend answers 500).

        None means "no task in progress" (a 404): confirm the report's fate with `get_report`.
        """
        body = {"simulation_id": simulation_id}
        try:
            return self._fetch(ReportTaskStatus, "POST", "/api/report/generate/status", json=body)
        except NotFound:
            return None

    def get_report(self, report_id: str) -> Report:
        """One report with its Markdown."""
        path = f"/api/report/{_segment(report_id)}"
        return self._fetch(Report, "GET", path, report_id=report_id)

    def list_reports(self, simulation_id: str) -> list[Report]:
        """The simulation's reports, newest first as the backend orders them.

        `data` is the list itself or an object holding it under `reports`; a missing list is
        no reports, anything else that is not a list of report objects a protocol error.
        """
        what = "GET /api/report/list"
        data = self._call(*what.split(" ", 1), params={"simulation_id": simulation_id})
        items = data.get("reports") if isinstance(data, dict) else data
        if items is None:
            return []
        if not isinstance(items, list):
            raise self._protocol_error(
                what, f"{_json_kind(items)} where a list of reports was expected", items
            )
        return [self._parse(Report, item, what) for item in items]

    def find_completed_report(self, simulation_id: str) -> Report | None:
        """An existing completed report of this simulation, if any."""
        for report in self.list_reports(simulation_id):
            if report.status == "completed":
                return report
        return None


def _segment(value: str) -> str:
    """One URL path segment: an id can never reach another route or carry a query."""
    return quote(value, safe="")


def _json_kind(value: Any) -> str:
    """How a decoded JSON value reads in an error ("a JSON list", ...)."""
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON list"
    return "a JSON object"


def _field_problem(exc: ValidationError) -> str:
    """The first refused field of an object, without the pydantic dump (or its input echo)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if not errors:
        return "an object we cannot read"
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "?"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return f"an object without its '{field}' field{more}"
    return f"an object whose '{field}' is invalid ({first['msg']}){more}"


def _excerpt(value: Any, *, raw: bool, secrets: Iterable[str]) -> str:
    """At most `_MAX_EXCERPT` printable characters of what came back, secrets masked.

    `raw` values are response text; others are decoded JSON, shown as JSON. Masking happens
    before the cut, so a cut can never leave half a secret. Never given the request body.
    """
    if raw:
        text = str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            text = _json_kind(value)
    text = _mask(text, secrets)
    # Masked everywhere first: no cut below can leave part of a secret.
    text = text[: _MAX_EXCERPT * 20]
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > _MAX_EXCERPT:
        text = text[: _MAX_EXCERPT - 1] + "…"
    return text
