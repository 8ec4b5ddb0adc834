"""The backend client on answers it cannot read, and its process-wide token cache.

A 2xx body that is not JSON or not the shape we know is a `BackendProtocolError` (an outage,
one sentence naming the endpoint, a short secret-free excerpt), never a pydantic, key or type
error. One login per process and (base URL, email), shared by every client until a 401.

httpx's MockTransport stands in for the real multimo (which we do not own and cannot run here).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

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
from autopilot.client import TOKENS, MultimoClient
from autopilot.errors import (
    AutopilotError,
    BackendAuthError,
    BackendProtocolError,
    BackendUnavailable,
)
from tests.conftest import SESSION_DIR

# Hypothesis's caches go to the session directory, not to .hypothesis/ in the repository.
set_hypothesis_home_dir(SESSION_DIR / "hypothesis")

BASE_URL = "http://multimo.test"
LOGIN_PATH = "/api/v1/auth/login"
EMAIL = "pilot@example.test"
PASSWORD = "hunter2-very-secret"
TOKEN = "tok-0123456789-secret"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def fresh_token_cache() -> Iterator[None]:
    """Every test starts and ends without a cached token: tests stay independent."""
    TOKENS.clear()
    yield
    TOKENS.clear()


def make_client(handler: Handler, base_url: str = BASE_URL, **kwargs: Any) -> MultimoClient:
    sleeps: list[float] = []
    return MultimoClient(
        base_url, transport=httpx.MockTransport(handler), sleep=sleeps.append, **kwargs
    )


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data})


def answering(data: Any) -> Handler:
    """A backend answering `data` in the envelope to every request."""
    return lambda request: ok(data)


def is_login(request: httpx.Request) -> bool:
    return request.url.path == LOGIN_PATH


# -- every public method that reads an answer, with the endpoint it calls -------------------

METHODS: dict[str, tuple[Callable[[MultimoClient], Any], str]] = {
    "get_simulation": (lambda c: c.get_simulation("sim_1"), "GET /api/simulation/sim_1"),
    "create_simulation": (
        lambda c: c.create_simulation(name="demo"),
        "POST /api/simulation/create",
    ),
    "prepare_status": (
        lambda c: c.prepare_status("sim_1", "task_1"),
        "POST /api/simulation/prepare/status",
    ),
    "prepare": (lambda c: c.prepare("sim_1"), "POST /api/simulation/prepare"),
    "run_status": (lambda c: c.run_status("sim_1"), "GET /api/simulation/sim_1/run-status"),
    "start": (lambda c: c.start("sim_1", max_rounds=3), "POST /api/simulation/start"),
    "generate_report": (lambda c: c.generate_report("sim_1"), "POST /api/report/generate"),
    "report_generation_status": (
        lambda c: c.report_generation_status("sim_1"),
        "POST /api/report/generate/status",
    ),
    "get_report": (lambda c: c.get_report("rep_1"), "GET /api/report/rep_1"),
    "list_reports": (lambda c: c.list_reports("sim_1"), "GET /api/report/list"),
}

# What a method that returns hands back (the property test checks it).
RETURNS: dict[str, Callable[[Any], bool]] = {
    "get_simulation": lambda v: isinstance(v, SimulationInfo),
    "create_simulation": lambda v: isinstance(v, str) and bool(v),
    "prepare_status": lambda v: isinstance(v, PrepareStatus),
    "prepare": lambda v: isinstance(v, PrepareAccepted),
    "run_status": lambda v: isinstance(v, RunStatus),
    "start": lambda v: isinstance(v, StartAccepted),
    "generate_report": lambda v: isinstance(v, ReportAccepted),
    "report_generation_status": lambda v: v is None or isinstance(v, ReportTaskStatus),
    "get_report": lambda v: isinstance(v, Report),
    "list_reports": lambda v: isinstance(v, list) and all(isinstance(r, Report) for r in v),
    "find_completed_report": lambda v: v is None or isinstance(v, Report),
    "stop": lambda v: v is None,
}
ALL_METHODS: dict[str, Callable[[MultimoClient], Any]] = {
    **{name: call for name, (call, _) in METHODS.items()},
    "find_completed_report": lambda c: c.find_completed_report("sim_1"),
    "stop": lambda c: c.stop("sim_1"),
}


def envelope(data: Any) -> bytes:
    return json.dumps({"success": True, "data": data}).encode()


# An object every model refuses: each model's first own field has the wrong type, and the
# list endpoint's report too. (pydantic 2 never turns a number into a string.)
WRONG_TYPES = {
    "simulation_id": 5,
    "task_id": 5,
    "report_id": 5,
    "status": 5,
    "runner_status": 5,
    "progress": "lots",
    "already_prepared": {},
    "reports": [{"report_id": 5}],
}

MALFORMED: dict[str, tuple[bytes, str]] = {
    "not-json": (b"all good, trust me", "text/plain"),
    "truncated-json": (
        b'{"success": true, "data": {"simulation_id": "sim_1", "sta',
        "application/json",
    ),
    "html-from-proxy": (
        b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>"
        + b"<h1>Bad Gateway</h1><p>The proxy server received an invalid response.</p>" * 20
        + b"</body></html>",
        "text/html",
    ),
    "empty-body": (b"", "application/json"),
    "blank-body": (b"  \r\n\t ", "application/json"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00", "image/png"),
    "control-characters": (b"\x00\x1b[31mboom\x07\n\tmore\x7f", "text/plain"),
    "absurd-nesting": (b"[" * 100_000, "application/json"),
    "absurd-number": (b'{"data": {"progress": 1' + b"0" * 5000 + b"}}", "application/json"),
    "top-level-string": (b'"ok"', "application/json"),
    "top-level-number": (b"42", "application/json"),
    "top-level-true": (b"true", "application/json"),
    "top-level-list-of-numbers": (b"[1, 2, 3]", "application/json"),
    "data-list-of-strings": (envelope(["sim_1", "ready"]), "application/json"),
    "data-string": (envelope("ready"), "application/json"),
    "data-number": (envelope(3.5), "application/json"),
    "data-false": (envelope(False), "application/json"),
    "data-wrong-field-types": (envelope(WRONG_TYPES), "application/json"),
    "data-list-of-wrong-objects": (envelope([WRONG_TYPES]), "application/json"),
    "data-long-wrong-object": (envelope({**WRONG_TYPES, "pad": "x" * 5000}), "application/json"),
}

# Shapes only the list endpoint reads: elsewhere an unknown `reports` key is ignored.
MALFORMED_REPORT_LISTS: dict[str, bytes] = {
    "reports-string": envelope({"reports": "none"}),
    "reports-object": envelope({"reports": {"report_id": "rep_1"}}),
    "reports-number": envelope({"reports": 0}),
    "reports-true": envelope({"reports": True}),
    "reports-of-numbers": envelope({"reports": [1, 2]}),
    "reports-of-lists": envelope({"reports": [["rep_1"]]}),
    "reports-one-bad-among-good": envelope(
        {"reports": [{"report_id": "rep_1"}, {"report_id": None}]}
    ),
    "report-without-id": envelope([{"status": "completed"}]),
}


def assert_protocol_error(error: BaseException, endpoint: str) -> BackendProtocolError:
    """The one shape every unreadable answer takes."""
    assert type(error) is BackendProtocolError, repr(error)
    assert isinstance(error, BackendUnavailable)  # what the step retry rule retries
    assert error.status_code == 502 and error.error_code == "BACKEND_PROTOCOL"
    assert error.endpoint == endpoint
    message = str(error)
    assert message == error.message
    assert message.startswith(f"{endpoint}: the backend answered "), message
    assert "\n" not in message and "\r" not in message, message
    # Never a pydantic dump ("1 validation error for ...", "For further information ...").
    assert "validation error" not in message and "errors.pydantic.dev" not in message, message
    assert error.__cause__ is None
    assert len(error.excerpt) <= 120, error.excerpt
    assert error.excerpt.isprintable(), repr(error.excerpt)
    if error.excerpt:
        assert message.endswith(error.excerpt)
    assert PASSWORD not in message and TOKEN not in message
    return error


def serve_once(body: bytes, content_type: str, seen: list[str]) -> Handler:
    """A backend that logs in fine and answers `body` to everything else."""

    def handler(request: httpx.Request) -> httpx.Response:
        if is_login(request):
            return ok({"token": TOKEN})
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})

    return handler


# -- unreadable 2xx answers ------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", list(MALFORMED))
def test_unreadable_answer_is_a_protocol_error(case: str, method: str) -> None:
    body, content_type = MALFORMED[case]
    call, endpoint = METHODS[method]
    seen: list[str] = []
    client = make_client(serve_once(body, content_type, seen), email=EMAIL, password=PASSWORD)

    with pytest.raises(AutopilotError) as info:
        call(client)

    assert_protocol_error(info.value, endpoint)
    assert seen == [endpoint]  # asked once: a protocol error is retried by the steps, not here
    assert endpoint in str(info.value)


@pytest.mark.parametrize("case", list(MALFORMED_REPORT_LISTS))
def test_report_list_that_is_not_a_list_of_reports_is_a_protocol_error(case: str) -> None:
    seen: list[str] = []
    client = make_client(serve_once(MALFORMED_REPORT_LISTS[case], "application/json", seen))

    with pytest.raises(AutopilotError) as info:
        client.list_reports("sim_1")
    assert_protocol_error(info.value, "GET /api/report/list")
    with pytest.raises(BackendProtocolError):
        client.find_completed_report("sim_1")


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"reports": None},
        [],
        {"reports": []},
    ],
    ids=["null", "empty-object", "reports-null", "empty-list", "reports-empty"],
)
def test_report_list_without_reports_is_empty(data: Any) -> None:
    client = make_client(lambda r: ok(data))
    assert client.list_reports("sim_1") == []


def test_report_list_reads_the_list_or_the_object_holding_it() -> None:
    reports = [{"report_id": "rep_2", "status": "completed"}, {"report_id": "rep_1"}]
    for data in (reports, {"reports": reports}):
        client = make_client(answering(data))
        assert [r.report_id for r in client.list_reports("sim_1")] == ["rep_2", "rep_1"]


def test_excerpt_is_a_short_printable_cut_of_the_answer() -> None:
    body = ("<html>\n<body>\tUpstream\x00timed\x1b out " + "x" * 500 + "</body></html>").encode()
    client = make_client(lambda r: httpx.Response(200, content=body))

    with pytest.raises(BackendProtocolError) as info:
        client.run_status("sim_1")

    error = assert_protocol_error(info.value, "GET /api/simulation/sim_1/run-status")
    assert "not JSON" in str(error)
    assert len(error.excerpt) == 120 and error.excerpt.endswith("…")
    assert error.excerpt.startswith("<html> <body> Upstream timed out xxx"), error.excerpt


def test_empty_body_says_so_without_excerpt() -> None:
    client = make_client(lambda r: httpx.Response(200, content=b""))
    with pytest.raises(BackendProtocolError) as info:
        client.get_simulation("sim_1")
    error = assert_protocol_error(info.value, "GET /api/simulation/sim_1")
    assert "empty body" in str(error) and error.excerpt == ""


def test_wrong_field_names_the_field_not_the_pydantic_dump() -> None:
    client = make_client(lambda r: ok({"runner_status": "running", "current_round": "three"}))
    with pytest.raises(BackendProtocolError) as info:
        client.run_status("sim_1")
    error = assert_protocol_error(info.value, "GET /api/simulation/sim_1/run-status")
    assert "'current_round'" in str(error)
    assert '"three"' in error.excerpt


def test_ids_in_the_path_stay_one_segment_in_the_endpoint() -> None:
    seen: list[str] = []
    client = make_client(serve_once(b"nope", "text/plain", seen))
    with pytest.raises(BackendProtocolError) as info:
        client.get_report("../simulation/sim 1?x=1")
    assert_protocol_error(info.value, "GET /api/report/..%2Fsimulation%2Fsim%201%3Fx%3D1")
    assert len(seen) == 1 and seen[0].startswith("GET /api/report/")


def test_a_readable_answer_still_reads() -> None:
    client = make_client(lambda r: ok({"status": "ready", "extra": [1, 2]}))
    info = client.get_simulation("sim_1")
    assert info.simulation_id == "sim_1" and info.is_prepared


# -- property: whatever JSON comes back, only our own errors leave the client -----------------

FIELD_NAMES = sorted(
    {"success", "data", "error", "message", "reports", "token", *WRONG_TYPES}
    | set(RunStatus.model_fields)
    | set(PrepareStatus.model_fields)
    | set(Report.model_fields)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    json_values,  # the body itself
    st.builds(lambda data: {"success": True, "data": data}, json_values),  # the envelope's data
    st.builds(  # the envelope with odd neighbours
        lambda success, data, extra: {**extra, "success": success, "data": data},
        json_values,
        json_values,
        st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=3),
    ),
)


def check_only_our_errors(method: str, client: MultimoClient) -> None:
    try:
        result = ALL_METHODS[method](client)
    except AutopilotError as error:
        if isinstance(error, BackendProtocolError):
            assert len(error.excerpt) <= 120 and error.excerpt.isprintable()
            assert error.endpoint and str(error).startswith(f"{error.endpoint}: ")
    else:
        assert RETURNS[method](result), f"{method} returned {result!r}"


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=bodies, method=st.sampled_from(sorted(ALL_METHODS)))
def test_any_json_answer_returns_or_raises_our_error(body: Any, method: str) -> None:
    content = json.dumps(body).encode()  # NaN and Infinity included, as Python's json reads them
    with make_client(lambda r: httpx.Response(200, content=content), token=TOKEN) as client:
        check_only_our_errors(method, client)


@settings(max_examples=50, deadline=None, database=None)
@given(login_body=bodies, method=st.sampled_from(sorted(METHODS)))
def test_any_json_login_answer_logs_in_or_raises_our_error(login_body: Any, method: str) -> None:
    TOKENS.clear()  # per example: hypothesis runs every example inside one test
    login_content = json.dumps(login_body).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if is_login(request):
            return httpx.Response(200, content=login_content)
        return ok({"simulation_id": "sim_1", "report_id": "rep_1", "reports": []})

    with make_client(handler, email=EMAIL, password=PASSWORD) as client:
        try:
            ALL_METHODS[method](client)
        except AutopilotError as error:
            if isinstance(error, BackendProtocolError):
                assert error.endpoint == f"POST {LOGIN_PATH}" and error.excerpt == ""
    TOKENS.clear()


# -- secrets ----------------------------------------------------------------------------------


def echoing_proxy(answer: Callable[[httpx.Request], str]) -> tuple[Handler, list[str]]:
    """A backend that logs in fine, behind a proxy answering 200 with text of its own."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if is_login(request):
            return ok({"token": TOKEN})
        seen.append(request.headers.get("Authorization", ""))
        return httpx.Response(200, text=answer(request), headers={"Content-Type": "text/html"})

    return handler, seen


def test_echoed_bearer_token_and_password_are_masked() -> None:
    handler, seen = echoing_proxy(
        lambda r: f"<pre>debug: {r.headers['Authorization']} password={PASSWORD}</pre>"
    )
    client = make_client(handler, email=EMAIL, password=PASSWORD)

    with pytest.raises(BackendProtocolError) as info:
        client.get_simulation("sim_1")

    error = assert_protocol_error(info.value, "GET /api/simulation/sim_1")
    assert seen == [f"Bearer {TOKEN}"]  # the proxy really did see (and echo) the token
    assert error.excerpt == "<pre>debug: Bearer *** password=***</pre>"
    for text in (str(error), repr(error), error.excerpt):
        assert TOKEN not in text and PASSWORD not in text


@pytest.mark.parametrize("status", [400, 403, 404, 409, 502, 503])
def test_error_answers_echoing_secrets_are_masked(status: int) -> None:
    # Error pages are read for their text too (error_text): a proxy echoing the request there
    # must not put the token into an exception that reaches a flow run's state and the shim.
    def handler(request: httpx.Request) -> httpx.Response:
        if is_login(request):
            return ok({"token": TOKEN})
        echoed = f"{request.headers['Authorization']} password={PASSWORD}"
        return httpx.Response(status, text=f"<html>{echoed}</html>")

    client = make_client(handler, email=EMAIL, password=PASSWORD)
    with pytest.raises(AutopilotError) as info:
        client.get_simulation("sim_1")
    assert "Bearer ***" in str(info.value), info.value
    assert TOKEN not in str(info.value) and PASSWORD not in str(info.value)


@pytest.mark.parametrize("status", [400, 500])
def test_a_failed_login_echoing_the_request_does_not_show_the_password(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=f"<html>bad request: {request.content.decode()}</html>")

    client = make_client(handler, email=EMAIL, password=PASSWORD)
    with pytest.raises(AutopilotError) as info:
        client.get_simulation("sim_1")
    assert PASSWORD not in str(info.value) and "***" in str(info.value), info.value


def test_a_login_answered_5xx_is_an_outage_not_refused_credentials() -> None:
    # During a backend restart the login answers 503: ridden out like any outage.
    client = make_client(lambda request: httpx.Response(503), email=EMAIL, password=PASSWORD)
    with pytest.raises(BackendUnavailable) as info:
        client.get_simulation("sim_1")
    assert not isinstance(info.value, BackendAuthError)


def test_a_secret_inside_another_is_masked_whole() -> None:
    handler, _ = echoing_proxy(lambda r: f"<html>{r.headers['Authorization']}</html>")
    client = make_client(handler, email=EMAIL, password="abc")
    TOKENS.put((BASE_URL, EMAIL), "XYZabcXYZ")
    with pytest.raises(BackendProtocolError) as info:
        client.get_simulation("sim_1")
    assert info.value.excerpt == "<html>Bearer ***</html>", info.value.excerpt


def test_a_secret_at_the_cut_is_masked_before_cutting() -> None:
    # Unmasked, the cut at 120 characters would leave the token's first characters.
    handler, _ = echoing_proxy(lambda r: "x" * 100 + r.headers["Authorization"] + "y" * 50)
    client = make_client(handler, email=EMAIL, password=PASSWORD)

    with pytest.raises(BackendProtocolError) as info:
        client.run_status("sim_1")

    error = assert_protocol_error(info.value, "GET /api/simulation/sim_1/run-status")
    assert "Bearer ***" in error.excerpt and len(error.excerpt) == 120
    assert TOKEN[:4] not in error.excerpt.replace("Bearer ***", "")


@pytest.mark.parametrize("ascii_only", [True, False], ids=["ascii-escaped", "utf8"])
def test_a_secret_escaped_inside_json_is_masked(ascii_only: bool) -> None:
    password = 'pä"ss\\wörd/42'
    echo = {"success": True, "data": {"simulation_id": 7, "you_sent": password}}
    content = json.dumps(echo, ensure_ascii=ascii_only).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if is_login(request):
            return ok({"token": TOKEN})
        return httpx.Response(200, content=content)

    client = make_client(handler, email=EMAIL, password=password)
    with pytest.raises(BackendProtocolError) as info:
        client.get_simulation("sim_1")

    error = assert_protocol_error(info.value, "GET /api/simulation/sim_1")
    assert '"you_sent": "***"' in error.excerpt, error.excerpt
    for form in (password, json.dumps(password)[1:-1], json.dumps(password, ensure_ascii=False)):
        assert form not in str(error)


def test_truncated_json_echoing_an_escaped_secret_is_masked() -> None:
    password = "naïve\tsecret"
    content = ('{"data": {"echo": ' + json.dumps(password)).encode()  # cut mid-object

    def handler(request: httpx.Request) -> httpx.Response:
        if is_login(request):
            return ok({"token": TOKEN})
        return httpx.Response(200, content=content)

    client = make_client(handler, email=EMAIL, password=password)
    with pytest.raises(BackendProtocolError) as info:
        client.prepare("sim_1")
    error = assert_protocol_error(info.value, "POST /api/simulation/prepare")
    assert error.excerpt == '{"data": {"echo": "***"'
    assert "secret" not in str(error) and "ve" not in str(error)


MALFORMED_LOGINS: dict[str, bytes] = {
    "html-echoing-the-request": b"<html>bad gateway; you sent: %b</html>",
    "truncated-json-with-the-token": b'{"success": true, "data": {"token": "' + TOKEN.encode(),
    "empty-body": b"",
    "token-of-wrong-type": json.dumps({"success": True, "data": {"token": [TOKEN]}}).encode(),
    "data-is-a-string": envelope(TOKEN),
    "data-is-a-list": envelope([TOKEN, PASSWORD]),
    "body-is-a-string": json.dumps(TOKEN).encode(),
}


@pytest.mark.parametrize("case", list(MALFORMED_LOGINS))
def test_malformed_login_answer_is_a_protocol_error_without_excerpt(case: str) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if is_login(request):
            body = MALFORMED_LOGINS[case]
            if b"%b" in body:
                body = body.replace(b"%b", request.content)  # holds the password
            return httpx.Response(200, content=body)
        return ok({"status": "ready"})

    client = make_client(handler, email=EMAIL, password=PASSWORD)
    with pytest.raises(AutopilotError) as info:
        client.get_simulation("sim_1")

    error = assert_protocol_error(info.value, f"POST {LOGIN_PATH}")
    assert error.excerpt == ""
    assert "not shown" in str(error)
    for text in (str(error), repr(error)):
        assert PASSWORD not in text and TOKEN not in text
    assert calls == [LOGIN_PATH]  # no call went out without a token
    assert TOKENS.get((BASE_URL, EMAIL)) is None


def test_login_answer_without_token_is_an_auth_error() -> None:
    client = make_client(
        lambda r: ok({"user": EMAIL}) if is_login(r) else ok({}), email=EMAIL, password=PASSWORD
    )
    with pytest.raises(BackendAuthError):
        client.get_simulation("sim_1")


# -- one login per process and (base URL, email) ----------------------------------------------


class Backend:
    """A fake multimo with a token per login; `dead` tokens are refused (a restart)."""

    def __init__(self, *, refuse_all: bool = False) -> None:
        self.lock = threading.Lock()
        self.logins: list[dict[str, Any]] = []
        self.calls: list[str | None] = []
        self.dead: set[str] = set()
        self.refuse_all = refuse_all
        self.on_login: Callable[[], None] = lambda: None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if is_login(request):
            self.on_login()
            with self.lock:
                self.logins.append(json.loads(request.content))
                given = f"tok-{len(self.logins)}"
            return ok({"token": given})
        auth = request.headers.get("Authorization")
        with self.lock:
            self.calls.append(auth)
        token = auth.removeprefix("Bearer ") if auth else None
        if self.refuse_all or token is None or token in self.dead:
            return httpx.Response(401, json={"success": False, "message": "Invalid token"})
        return ok({"runner_status": "running", "current_round": 2, "total_rounds": 5})

    def restart(self) -> None:
        """Every token given so far dies."""
        with self.lock:
            self.dead.update(f"tok-{n}" for n in range(1, len(self.logins) + 1))


def test_two_clients_on_one_backend_and_email_log_in_once() -> None:
    backend = Backend()
    first = make_client(backend, email=EMAIL, password=PASSWORD)
    second = make_client(backend, base_url=BASE_URL + "/", email=EMAIL, password=PASSWORD)

    first.run_status("sim_1")
    second.run_status("sim_1")
    first.run_status("sim_1")

    assert len(backend.logins) == 1
    assert backend.logins[0] == {"email": EMAIL, "password": PASSWORD}
    assert backend.calls == ["Bearer tok-1"] * 3
    assert TOKENS.get((BASE_URL, EMAIL)) == "tok-1"


def test_another_email_or_backend_logs_in_on_its_own() -> None:
    backend = Backend()
    make_client(backend, email=EMAIL, password=PASSWORD).run_status("sim_1")
    make_client(backend, email="other@example.test", password=PASSWORD).run_status("sim_1")
    make_client(backend, base_url="http://other.test", email=EMAIL, password=PASSWORD).run_status(
        "sim_1"
    )
    assert len(backend.logins) == 3
    assert backend.calls == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]


def test_cleared_cache_logs_in_again() -> None:
    backend = Backend()
    make_client(backend, email=EMAIL, password=PASSWORD).run_status("sim_1")
    TOKENS.clear()
    make_client(backend, email=EMAIL, password=PASSWORD).run_status("sim_1")
    assert len(backend.logins) == 2


def test_401_logs_in_again_once_then_retries() -> None:
    backend = Backend()
    client = make_client(backend, email=EMAIL, password=PASSWORD)
    client.run_status("sim_1")
    backend.restart()

    status = client.run_status("sim_1")

    assert status.current_round == 2
    assert len(backend.logins) == 2
    assert backend.calls == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert TOKENS.get((BASE_URL, EMAIL)) == "tok-2"


def test_401_takes_the_token_another_client_renewed_without_logging_in() -> None:
    backend = Backend()
    first = make_client(backend, email=EMAIL, password=PASSWORD)
    second = make_client(backend, email=EMAIL, password=PASSWORD)
    first.run_status("sim_1")
    second.run_status("sim_1")  # both hold tok-1 now
    backend.restart()

    first.run_status("sim_1")  # 401, logs in: tok-2
    backend.calls.clear()
    second.run_status("sim_1")  # 401 with tok-1, takes tok-2 from the cache

    assert len(backend.logins) == 2
    assert backend.calls == ["Bearer tok-1", "Bearer tok-2"]


def test_401_right_after_a_fresh_login_is_an_auth_error() -> None:
    backend = Backend()
    make_client(backend, email=EMAIL, password=PASSWORD).run_status("sim_1")  # caches tok-1
    backend.refuse_all = True
    backend.calls.clear()
    client = make_client(backend, email=EMAIL, password=PASSWORD)

    with pytest.raises(BackendAuthError) as info:
        client.run_status("sim_1")

    assert info.value.backend_status == 401
    assert "Invalid token" in str(info.value) and PASSWORD not in str(info.value)
    assert len(backend.logins) == 2  # the cached token, then exactly one fresh login
    assert backend.calls == ["Bearer tok-1", "Bearer tok-2"]


def test_refused_credentials_log_in_at_most_once_per_call() -> None:
    backend = Backend(refuse_all=True)
    client = make_client(backend, email=EMAIL, password=PASSWORD)

    for _ in range(3):
        with pytest.raises(BackendAuthError):
            client.run_status("sim_1")

    # The first call logs in for its missing token and once more on its 401; every later call
    # logs in once on its 401, never in a loop.
    assert len(backend.logins) == 4
    assert len(backend.calls) == 6


def test_401_without_credentials_is_an_auth_error_without_login() -> None:
    backend = Backend(refuse_all=True)
    client = make_client(backend, token="tok-given")
    with pytest.raises(BackendAuthError):
        client.run_status("sim_1")
    assert backend.logins == [] and backend.calls == ["Bearer tok-given"]


THREADS = 8


def hold_logins_open(backend: Backend) -> threading.Barrier:
    """Make a login wait for every thread to reach the login too (up to a short timeout).

    With the per-key login lock only one thread ever gets there, so the barrier breaks and
    that login goes on; without it all of them would get there and all would log in.
    """
    arrivals = threading.Barrier(THREADS)

    def on_login() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            arrivals.wait(timeout=0.5)

    backend.on_login = on_login
    return arrivals


def run_in_threads(clients: list[MultimoClient]) -> list[RunStatus]:
    start = threading.Barrier(len(clients))

    def call(client: MultimoClient) -> RunStatus:
        start.wait(timeout=10)
        return client.run_status("sim_1")

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(call, clients, timeout=30))


def test_concurrent_clients_without_a_token_log_in_once() -> None:
    backend = Backend()
    hold_logins_open(backend)
    clients = [make_client(backend, email=EMAIL, password=PASSWORD) for _ in range(THREADS)]

    results = run_in_threads(clients)

    assert [r.current_round for r in results] == [2] * THREADS
    assert len(backend.logins) == 1
    assert backend.calls == ["Bearer tok-1"] * THREADS


def test_concurrent_clients_holding_a_dead_token_log_in_again_once() -> None:
    backend = Backend()
    clients = [make_client(backend, email=EMAIL, password=PASSWORD) for _ in range(THREADS)]
    for client in clients:
        client.run_status("sim_1")
    assert len(backend.logins) == 1
    backend.restart()
    backend.calls.clear()
    hold_logins_open(backend)

    results = run_in_threads(clients)

    assert [r.current_round for r in results] == [2] * THREADS
    assert len(backend.logins) == 2
    assert sorted(c or "" for c in backend.calls) == sorted(
        ["Bearer tok-1"] * THREADS + ["Bearer tok-2"] * THREADS
    )
