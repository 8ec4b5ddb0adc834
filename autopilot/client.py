"""The one HTTP client for the multimo backend (real multimo or the bundled simulator).

Only this module catches `httpx` errors: everything leaves it as an `autopilot.errors` class.
Quirks handled here (CONTRACT.md part B): login and one re-login on 401, 429 with back-off
honouring `Retry-After`, error text under `error` or `message` or inside Flask's JSON array
bodies, report status polled by simulation id only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from autopilot.backend_models import (
    PrepareAccepted,
    PrepareStatus,
    Report,
    ReportAccepted,
    ReportTaskStatus,
    RunStatus,
    SimulationInfo,
    StartAccepted,
)
from autopilot.errors import BackendAuthError, BackendRejected, BackendUnavailable, NotFound
from autopilot.settings import Settings

logger = logging.getLogger(__name__)

_MAX_ERROR_TEXT = 300
_RETRY_AFTER_FALLBACK = [1.0, 2.0, 5.0, 10.0, 30.0]


def error_text(response: httpx.Response) -> str:
    """The human-readable error of a backend answer, whatever shape its body has."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    # Flask-level errors (405, 429) come as a JSON array: [{...}, status].
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        for key in ("error", "message", "description", "detail"):
            value = body.get(key)
            if value:
                return str(value)[:_MAX_ERROR_TEXT]
        return f"HTTP {response.status_code}"
    text = str(body).strip()
    return text[:_MAX_ERROR_TEXT] if text else f"HTTP {response.status_code}"


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
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
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
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

    def login(self) -> None:
        """Log in with the configured credentials and keep the token."""
        if not self._can_login():
            raise BackendAuthError("the backend asks for a login but no credentials are set")
        response = self._send(
            "POST",
            "/api/v1/auth/login",
            json={"email": self._email, "password": self._password},
            authenticated=False,
        )
        if response.status_code >= 400:
            # Never echo the request: it holds the password.
            raise BackendAuthError(
                f"login failed: {error_text(response)}", backend_status=response.status_code
            )
        token = (_envelope_data(response) or {}).get("token")
        if not token:
            raise BackendAuthError("login answered without a token")
        self._token = str(token)

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
                    f"{error_text(response)}"
                )
            logger.warning("rate limited on %s %s, waiting %.1fs", method, path, delay)
            self._sleep(delay)
            waited += delay
            attempt += 1

    def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Send an authenticated call and return the envelope's `data`, or raise the error tree."""
        if self._token is None and self._can_login():
            self.login()
        response = self._send(method, path, json=json, params=params)
        if response.status_code == 401 and self._can_login():
            # Tokens die when the backend restarts: log in again, once.
            self.login()
            response = self._send(method, path, json=json, params=params)
        return _unwrap(response, f"{method} {path}")

    # -- simulations -------------------------------------------------------------------

    def get_simulation(self, simulation_id: str) -> SimulationInfo:
        """Read a simulation; `NotFound` if the backend does not know it."""
        data = self._call("GET", f"/api/simulation/{_segment(simulation_id)}")
        return SimulationInfo.model_validate({"simulation_id": simulation_id, **(data or {})})

    def create_simulation(self, **fields: Any) -> str:
        """Create a simulation (bundled simulator) and return its id."""
        data = self._call("POST", "/api/simulation/create", json=fields)
        return str(data["simulation_id"])

    def prepare_status(self, simulation_id: str, task_id: str | None = None) -> PrepareStatus:
        """Preparation state; always send both ids when a task is known (a failed task hides)."""
        body: dict[str, Any] = {"simulation_id": simulation_id}
        if task_id:
            body["task_id"] = task_id
        data = self._call("POST", "/api/simulation/prepare/status", json=body)
        return PrepareStatus.model_validate(data or {})

    def prepare(self, simulation_id: str) -> PrepareAccepted:
        """Ask the backend to prepare; it has no duplicate guard, so call once per preparation."""
        data = self._call("POST", "/api/simulation/prepare", json={"simulation_id": simulation_id})
        return PrepareAccepted.model_validate(data or {})

    def run_status(self, simulation_id: str) -> RunStatus:
        """The runner's state: the only reliable completion signal."""
        data = self._call("GET", f"/api/simulation/{_segment(simulation_id)}/run-status")
        return RunStatus.model_validate(data or {})

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
        data = self._call("POST", "/api/simulation/start", json=body)
        return StartAccepted.model_validate(data or {})

    def stop(self, simulation_id: str) -> None:
        """Stop the running simulation (the backend answers 400 unless running or paused)."""
        self._call("POST", "/api/simulation/stop", json={"simulation_id": simulation_id})

    # -- reports -----------------------------------------------------------------------

    def generate_report(self, simulation_id: str) -> ReportAccepted:
        """Ask for a report; the answer says whether one already existed."""
        data = self._call("POST", "/api/report/generate", json={"simulation_id": simulation_id})
        return ReportAccepted.model_validate(data or {})

    def report_generation_status(self, simulation_id: str) -> ReportTaskStatus | None:
        """Report task state by simulation id ONLY (with a task id the backend answers 500).

        None means "no task in progress" (a 404): confirm the report's fate with `get_report`.
        """
        try:
            data = self._call(
                "POST", "/api/report/generate/status", json={"simulation_id": simulation_id}
            )
        except NotFound:
            return None
        return ReportTaskStatus.model_validate(data or {})

    def get_report(self, report_id: str) -> Report:
        """One report with its Markdown."""
        data = self._call("GET", f"/api/report/{_segment(report_id)}")
        return Report.model_validate({"report_id": report_id, **(data or {})})

    def list_reports(self, simulation_id: str) -> list[Report]:
        """The simulation's reports, newest first as the backend orders them."""
        data = self._call("GET", "/api/report/list", params={"simulation_id": simulation_id})
        items = data.get("reports", []) if isinstance(data, dict) else (data or [])
        return [Report.model_validate(item) for item in items if isinstance(item, dict)]

    def find_completed_report(self, simulation_id: str) -> Report | None:
        """An existing completed report of this simulation, if any."""
        for report in self.list_reports(simulation_id):
            if report.status == "completed":
                return report
        return None


def _segment(value: str) -> str:
    """One URL path segment: an id can never reach another route or carry a query."""
    return quote(value, safe="")


def _envelope_data(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) else None


def _unwrap(response: httpx.Response, what: str) -> Any:
    """Map a backend answer onto `data` or the error tree."""
    status = response.status_code
    if status >= 500:
        raise BackendUnavailable(f"{what}: backend error {status}: {error_text(response)}")
    if status in (401, 403):
        raise BackendAuthError(f"{what}: {error_text(response)}", backend_status=status)
    if status == 404:
        raise NotFound(f"{what}: {error_text(response)}")
    if status >= 400:
        raise BackendRejected(f"{what}: {error_text(response)}", backend_status=status)
    try:
        body = response.json()
    except ValueError as exc:
        raise BackendUnavailable(f"{what}: backend answered non-JSON") from exc
    if isinstance(body, dict) and body.get("success") is False:
        raise BackendRejected(f"{what}: {error_text(response)}", backend_status=status)
    return body.get("data") if isinstance(body, dict) else body
