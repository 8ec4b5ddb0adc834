"""The shim as a server: liveness, OpenAPI docs, and the bearer token when one is set."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import uvicorn

from autopilot.web.app import MAX_BODY_BYTES, ShimApp
from tests.api.shim import ENDPOINTS, NO_STATE_KEYS, PREFIX, expect_failure, expect_ok, unknown_id
from tests.conftest import SESSION_DIR
from tests.helpers import free_port, stop_process, wait_until
from tests.stack_fixtures import start_shim

TOKEN = "secret"
JSON = {"content-type": "application/json"}


def test_healthz_answers(shim_url: str):
    response = httpx.get(f"{shim_url}/healthz", timeout=30)

    data = expect_ok(response)
    assert data["status"] == "ok"
    assert set(data["status_cache"]) == {"healthy", "hits", "loads"}


def test_docs_and_openapi_list_the_seven_endpoints(shim_url: str):
    docs = httpx.get(f"{shim_url}/docs", timeout=30)
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]

    schema = httpx.get(f"{shim_url}/openapi.json", timeout=30)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for endpoint in ENDPOINTS:
        assert "post" in paths[f"{PREFIX}/{endpoint}"], endpoint
    assert {p for p in paths if p.startswith(PREFIX)} == {f"{PREFIX}/{e}" for e in ENDPOINTS}


@pytest.fixture(scope="module")
def token_shim(shim_url: str, simulator: tuple[str, Path]) -> Iterator[str]:
    """A second shim over the same stack, with AUTOPILOT_API_TOKEN set (one per module)."""
    env = {
        **os.environ,
        "AUTOPILOT_BACKEND_URL": simulator[0],
        "AUTOPILOT_API_TOKEN": TOKEN,
    }
    proc, url = start_shim(env, SESSION_DIR / f"shim-token-{uuid4().hex[:8]}.log")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "longer", "no-scheme", "basic", "empty"],
)
def test_a_token_protected_shim_refuses_without_the_right_token(token_shim: str, headers):
    with httpx.Client(base_url=token_shim, timeout=60, headers=headers) as client:
        for endpoint in ENDPOINTS:
            response = client.post(
                f"{PREFIX}/{endpoint}", json={"simulation_id": unknown_id(), "mode": "auto"}
            )
            expect_failure(response, 401, "UNAUTHORIZED")
        # Bad input does not get past the token check either.
        expect_failure(client.post(f"{PREFIX}/status", json={}), 401, "UNAUTHORIZED")


def test_a_token_protected_shim_answers_with_the_right_token(token_shim: str):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=token_shim, timeout=60, headers=auth) as client:
        sim = unknown_id()
        data = expect_ok(client.post(f"{PREFIX}/status", json={"simulation_id": sim}))
        assert set(data) == NO_STATE_KEYS and data["simulation_id"] == sim

        expect_failure(client.post(f"{PREFIX}/status", json={}), 400, "MISSING_SIMULATION_ID")
    # Liveness stays open: a supervisor probes it without the token.
    assert httpx.get(f"{token_shim}/healthz", timeout=30).status_code == 200


# -- the guard: the token before the body, and a cap on the body --------------------------------


def raw_exchange(url: str, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """Send a hand-made request (only `head` and `body`, nothing more) and read the answer:
    (status, body). The request may announce more body than it sends: the guard must answer
    without waiting for it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def announce(path: str, length: int, token: str | None = None) -> str:
    auth = f"Authorization: Bearer {token}\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"{auth}Content-Length: {length}\n"
    )


def test_the_token_is_checked_before_the_body_is_read(token_shim: str):
    # 200 MB announced, none sent: an answer at all shows the body was never waited for.
    status, body = raw_exchange(token_shim, announce(f"{PREFIX}/status", 200_000_000))
    assert status == 401
    assert json.loads(body)["error_code"] == "UNAUTHORIZED"


def test_a_body_announced_over_the_limit_is_refused_unread(token_shim: str):
    status, body = raw_exchange(token_shim, announce(f"{PREFIX}/start", 200_000_000, TOKEN))
    assert status == 413
    answer = json.loads(body)
    assert answer["success"] is False and answer["error_code"] == "BODY_TOO_LARGE", answer


def padded(size: int) -> bytes:
    """A valid status request of exactly `size` bytes (padding in an ignored field)."""
    skeleton = json.dumps({"simulation_id": unknown_id(), "pad": ""})
    return skeleton.replace('"pad": ""', f'"pad": "{"x" * (size - len(skeleton))}"').encode()


def test_a_body_at_the_limit_is_served_and_one_byte_more_is_413(shim_url: str):
    with httpx.Client(base_url=shim_url, timeout=60) as client:
        at_limit = padded(MAX_BODY_BYTES)
        assert len(at_limit) == MAX_BODY_BYTES
        expect_ok(client.post(f"{PREFIX}/status", content=at_limit, headers=JSON))

        over = padded(MAX_BODY_BYTES + 1)
        response = client.post(f"{PREFIX}/status", content=over, headers=JSON)
        expect_failure(response, 413, "BODY_TOO_LARGE")


def chunks_of(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_is_counted_as_it_arrives(shim_url: str):
    # No Content-Length: the guard counts the chunks and stops reading past the limit.
    with httpx.Client(base_url=shim_url, timeout=60) as client:
        small = client.post(f"{PREFIX}/status", content=chunks_of(padded(4000)), headers=JSON)
        assert small.request.headers.get("transfer-encoding") == "chunked"
        expect_ok(small)

        big = client.post(
            f"{PREFIX}/status", content=chunks_of(padded(4 * MAX_BODY_BYTES)), headers=JSON
        )
        expect_failure(big, 413, "BODY_TOO_LARGE")


def test_a_wrong_method_says_which_one_is_allowed(shim_url: str):
    response = httpx.get(f"{shim_url}{PREFIX}/status", timeout=30)
    expect_failure(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"
    assert "allowed: POST" in response.json()["error"]


# -- start-up: an empty token is a misconfiguration ----------------------------------------------


@pytest.mark.parametrize("token", ["", "   "], ids=["empty", "blank"])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_an_empty_token_is_refused_at_start_up(token: str, host: str):
    env = {
        **os.environ,
        "AUTOPILOT_API_TOKEN": token,
        "AUTOPILOT_API_HOST": host,
        "AUTOPILOT_API_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from autopilot.cli import main; main()", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    said = " ".join((done.stdout + done.stderr).split())
    assert "EMPTY_TOKEN" in said and "AUTOPILOT_API_TOKEN is set but empty" in said, said
    assert "Traceback" not in said


# -- the safety net: nothing leaves the shim without the envelope --------------------------------


class EscapesEverything(BaseException):
    """Stands for Prefect's `Pause`/`Abort`: not an `Exception`, so no handler sees it."""


@pytest.fixture
def escaping_shim() -> Iterator[str]:
    """A shim application (the real ShimApp and its layers) with one extra route that lets a
    BaseException escape, served by uvicorn on a loopback port."""
    app = ShimApp()

    @app.post("/escape")
    async def escape() -> None:
        raise EscapesEverything("not for the client")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=30, interval=0.05, message="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_base_exception_becomes_the_internal_envelope(escaping_shim: str):
    response = httpx.post(f"{escaping_shim}/escape", timeout=30)
    body = expect_failure(response, 500, "INTERNAL")
    assert "not for the client" not in response.text
    assert body["error"] == "internal error; see the shim's log"
