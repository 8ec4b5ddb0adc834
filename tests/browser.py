"""Headless Chromium driven over the DevTools protocol: open a page, wait for what it shows,
click, take screenshots. Debian's `chromium` package is the browser (nothing is downloaded at
run time); `websockets`, which Prefect installs, carries the protocol."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.helpers import wait_until


def chromium_path() -> str | None:
    """The browser to drive: $AUTOPILOT_CHROMIUM, else Debian's `chromium` on the PATH."""
    return os.environ.get("AUTOPILOT_CHROMIUM") or shutil.which("chromium")


class Page:
    """One tab. `evaluate` runs JavaScript and returns its (JSON) value."""

    def __init__(self, socket: ClientConnection, shots: Path) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.shots = shots

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; only our answer ends the wait
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """The page's text once every needle is in it."""

        def shown() -> str | None:
            text = self.text()
            return text if all(needle in text for needle in needles) else None

        return self._waiting(shown, timeout, f"the page to show {needles}")

    def wait_for(self, expression: str, timeout: float = 60, message: str = "") -> Any:
        """The value of `expression` once it is truthy."""
        return self._waiting(lambda: self.evaluate(expression), timeout, message or expression)

    def _waiting(self, predicate: Callable[[], Any], timeout: float, message: str) -> Any:
        """`wait_until`; on a timeout, a screenshot and the page's text say what it showed."""
        try:
            return wait_until(predicate, timeout=timeout, interval=0.25, message=message)
        except TimeoutError as exc:
            shot = self.screenshot(f"timeout-{next(self._ids)}")
            text = self.text()[-1500:]
            raise TimeoutError(f"{exc}; screenshot {shot}; page text: {text!r}") from None

    def click_text(self, selector: str, text: str) -> None:
        """Click the innermost `selector` element whose text is `text` (trimmed)."""
        clicked = self.wait_for(
            f"""(() => {{
                const says = e => e.innerText && e.innerText.trim() === {json.dumps(text)};
                const hits = [...document.querySelectorAll({json.dumps(selector)})].filter(says);
                const inner = hits.find(e => !hits.some(o => o !== e && e.contains(o)));
                if (!inner) return false;
                inner.click();
                return true;
            }})()""",
            message=f"a {selector} saying {text!r}",
        )
        assert clicked

    def open_tab(self, name: str, *needles: str, tries: int = 3) -> str:
        """Click the tab called `name` until the page shows `needles` (a click that lands while
        the page is still wiring its handlers is lost); the page's text."""
        for attempt in range(tries):
            self.click_text("*", name)
            try:
                return str(self.wait_for_text(*needles, timeout=20))
            except TimeoutError:
                if attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")

    def scroll_to_text(self, text: str) -> None:
        """Scroll the innermost element saying `text` into the middle of the view."""
        self.evaluate(
            f"""(() => {{
                const hits = [...document.querySelectorAll('*')]
                    .filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)});
                const inner = hits.find(e => !hits.some(o => o !== e && e.contains(o)));
                if (inner) inner.scrollIntoView({{block: 'center'}});
            }})()"""
        )

    def screenshot(self, name: str) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = self.shots / f"{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path


@contextmanager
def chromium(shots: Path, width: int = 1400, height: int = 1200) -> Iterator[Page]:
    """A headless Chromium with one page; stopped (with its profile removed) on exit."""
    executable = chromium_path()
    assert executable, "no chromium: apt-get install -y chromium (or set AUTOPILOT_CHROMIUM)"
    shots.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="autopilot-chromium-"))
    process = subprocess.Popen(
        [
            executable, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        port = wait_until(lambda: port_file.is_file() and port_file.read_text().split()[0],
                          timeout=60, message="chromium's DevTools port")  # fmt: skip
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        (tab,) = [t for t in targets if t["type"] == "page"][:1]
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket, shots)
            page.call("Page.enable")
            page.call("Runtime.enable")
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        shutil.rmtree(profile, ignore_errors=True)
