"""The auto-pilot's error tree; every class carries the HTTP status it maps to.

    AutopilotError (500)
    ├── BackendUnavailable (503)   an outage: refused, timeout, 5xx, 429 past its budget
    │   └── BackendProtocolError (502) a 2xx answer we cannot read: not JSON, wrong shape
    ├── PrefectUnavailable (503)   the Prefect API is unreachable or has no deployment
    ├── BackendRejected (502)      the backend answered 4xx we did not expect
    │   └── BackendAuthError (502) login failed or the token was refused twice
    ├── NotFound (404)             unknown simulation / report / run
    ├── Conflict (409)             an illegal transition (pause when not active, ...)
    ├── InvalidInput (400)         bad request fields
    └── StepFailed (500)           the simulation itself failed, stalled or was stopped

Only `BackendUnavailable` (so `BackendProtocolError` too) is an outage: steps ride it out
(tasks/_outage.py) and retry it (tasks/_step.py). The client raises these, the REST shim maps
them once, the CLI catches them once in `main`. Defined where they are raised, and on this tree
too: `StepInterrupted` (autopilot/run/control.py), `RunStopped` (autopilot/run/driver.py),
`Superseded` and `Refused` (autopilot/run/claim.py), `StartupFailed` (devstack/pieces.py).
"""

from __future__ import annotations


class AutopilotError(Exception):
    """Base of every error the auto-pilot raises on purpose."""

    status_code = 500
    error_code = "INTERNAL"

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code


class BackendUnavailable(AutopilotError):
    """The backend could not be reached or answered 5xx / 429: worth retrying."""

    status_code = 503
    error_code = "BACKEND_UNAVAILABLE"


class BackendProtocolError(BackendUnavailable):
    """The backend answered 2xx with a body we cannot read: not JSON, or not the shape we know.

    Retryable like any outage: a corrupting proxy or a half-restarted backend is transient more
    often than not, and the steps ride it out for a bounded time. 502, as a gateway answers a
    bad upstream. `endpoint` is "METHOD /path"; `excerpt` is a short, secret-free cut of what
    came back (empty when nothing may be shown, as for a login answer).
    """

    status_code = 502
    error_code = "BACKEND_PROTOCOL"

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        excerpt: str = "",
        error_code: str | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code)
        self.endpoint = endpoint
        self.excerpt = excerpt


class PrefectUnavailable(AutopilotError):
    """The Prefect API could not be reached, or the auto-pilot deployment is not registered."""

    status_code = 503
    error_code = "PREFECT_UNAVAILABLE"


class BackendRejected(AutopilotError):
    """The backend refused a request with a 4xx we did not expect."""

    status_code = 502
    error_code = "BACKEND_REJECTED"

    def __init__(
        self, message: str, *, backend_status: int | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message, error_code=error_code)
        self.backend_status = backend_status


class BackendAuthError(BackendRejected):
    """Login failed or the backend refused our token even after a fresh login."""

    error_code = "BACKEND_AUTH"


class NotFound(AutopilotError):
    """The thing asked for does not exist."""

    status_code = 404
    error_code = "NOT_FOUND"


class Conflict(AutopilotError):
    """The request is not allowed in the current state."""

    status_code = 409
    error_code = "CONFLICT"


class InvalidInput(AutopilotError):
    """The request's fields are missing or invalid."""

    status_code = 400
    error_code = "INVALID_INPUT"


class StepFailed(AutopilotError):
    """A step ended in failure: the simulation failed, stalled, was stopped, or an outage lasted."""

    error_code = "STEP_FAILED"

    # `step` has a default only so that Prefect's JSON result serializer, which rebuilds an
    # exception as `cls(message)`, can load a failed step's stored exception ("" = not known).
    def __init__(self, message: str, *, step: str = "", error_code: str | None = None) -> None:
        super().__init__(message, error_code=error_code)
        self.step = step
