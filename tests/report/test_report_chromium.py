"""The HTML report rendered by a real browser: headless Chromium takes a screenshot and
reports every console error, uncaught exception and failed resource load.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: file
descriptors 3 and 4, NUL-separated JSON), so no port, no websocket library and no network are
involved. Skips, saying why, where the ``chromium`` binary is absent (Debian package
``chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.plot_lakes import shared_lake

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium); "
           "the HTML report is not rendered in a browser here")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--remote-debugging-pipe"]


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, *, timeout: float = 60.0) -> None:
        self.profile = tempfile.mkdtemp(prefix="hubscan-chromium-")
        self.timeout = timeout
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3, writes replies on fd 4
            # Move both ends above 3/4 first (either may *be* 3 or 4), then dup2 down:
            # dup2 makes inheritable copies (os.pipe's own fds close on exec).
            hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        # close_fds=False: subprocess would otherwise close the fds 3/4 made after fork.
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=child_fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, *, session: str | None = None) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method and (session is None or e.get("sessionId") == session):
                return self.events.pop(i)
        while True:
            e = self._read()
            self.events.append(e)
            if e.get("method") == method and (session is None or e.get("sessionId") == session):
                return self.events.pop()

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError("Chromium did not answer on the DevTools pipe")
            ready, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def render(html_path: Path, screenshot: Path, *, width: int = 1280) -> list[str]:
    """Open ``html_path`` in headless Chromium, save a full-page PNG, return every problem
    the page reported: console errors/asserts, uncaught exceptions, failed loads, log errors."""
    dt = DevTools(CHROMIUM)
    try:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.send(f"{domain}.enable", session=sid)
        dt.send("Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=sid)
        dt.send("Page.navigate", {"url": html_path.resolve().as_uri()}, session=sid)
        dt.wait_event("Page.loadEventFired", session=sid)
        # Layout settled; images decoded (a broken data: image fails its load → Network event).
        dt.send("Runtime.evaluate", {"expression": "document.fonts.ready.then(() => 1)",
                                     "awaitPromise": True}, session=sid)
        shot = dt.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                       session=sid)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        broken = dt.send("Runtime.evaluate", {
            "expression": "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length",
            "returnByValue": True}, session=sid)["result"]["value"]
        problems = [] if not broken else [f"{broken} image(s) failed to decode"]
        for e in dt.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                problems.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                       for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                problems.append("exception: " + p["exceptionDetails"].get("text", "")
                                + str(p["exceptionDetails"].get("exception", {}).get("description", "")))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                problems.append("log: " + p["entry"].get("text", ""))
            elif m == "Network.loadingFailed":
                problems.append("load failed: " + p.get("errorText", ""))
        return problems
    finally:
        dt.close()


# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lake():
    return shared_lake()


def test_report_renders_in_chromium_without_console_errors(lake, tmp_path):
    from PIL import Image

    from hubscan.report import write_report

    html = write_report(lake, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    problems = render(html, shot)
    assert problems == []
    img = Image.open(shot)
    img.load()
    w, h = img.size
    assert w == 1280 and h > 3000, (w, h)  # the whole page: many sections and figures
    # Not a blank page: the header is dark, the body light, the figures in between colourful.
    small = img.convert("RGB").resize((64, max(1, h // 20)))
    colours = {small.getpixel((x, y)) for x in range(0, 64, 4) for y in range(0, small.size[1], 4)}
    assert len(colours) > 50
    assert img.convert("L").getpixel((20, 20)) < 80  # the header band
    keep = os.environ.get("HUBSCAN_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_the_probe_sees_console_errors_and_broken_images(tmp_path):
    """The detector itself can fail: a page with a script error and a broken image."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><h1>bad</h1>'
                    '<img src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom"); undefinedFunction();</script></body></html>')
    problems = render(page, tmp_path / "bad.png")
    text = "\n".join(problems)
    assert "boom" in text
    assert "undefinedFunction" in text
    assert "image" in text
