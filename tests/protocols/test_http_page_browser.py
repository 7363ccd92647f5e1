"""The setup page in a real browser: headless Chromium (Debian's
`chromium` package) driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on fds 3 and 4), at a
phone's screen size, in English and in Chinese.

Skipped when chromium is not installed; CI installs it (apt-get install
chromium).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.protocols.test_http_autoconfig import expose_bound_ports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium is not installed (apt-get install chromium)")

PHONE = {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True}


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, profile_dir: Path):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4; move
        # our ends out of the way first so dup2 cannot clobber them.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def wire_fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=wire_fds)
        os.close(child_in)
        os.close(child_out)
        self.writer = to_browser_w
        self.reader = from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        self.user_agent = self.call("Browser.getVersion", _browser=True)["userAgent"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reader], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.reader, 1 << 16)
            if not chunk:
                raise ConnectionError("chromium exited")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, _browser: bool = False, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session and not _browser:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (it must be on screen)."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        self.click(selector)
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        import base64

        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", _browser=True)
        except (ConnectionError, TimeoutError, RuntimeError):
            pass
        os.close(self.writer)
        os.close(self.reader)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


@pytest.fixture
def web(server: RunningServer) -> RunningServer:
    expose_bound_ports(server)
    return server


# Everything the tests look at, measured by the browser after layout.
INSPECT = """(() => {
  const rect = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, width: r.width, height: r.height}; };
  const text = (sel) => { const el = document.querySelector(sel); return el ? el.innerText : null; };
  return {
    lang: document.documentElement.lang,
    title: document.title,
    h1: text('h1'),
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    input: rect(document.getElementById('email')),
    inputValue: document.getElementById('email').value,
    button: rect(document.querySelector('button')),
    buttonText: text('button'),
    fontSize: parseFloat(getComputedStyle(document.body).fontSize),
    profileHref: document.getElementById('profile') ? document.getElementById('profile').href : null,
    profile: rect(document.getElementById('profile')),
    outlook: text('#outlook'),
    error: text('#error'),
    rows: [...document.querySelectorAll('#settings tr[data-listener]')].map(
      tr => [tr.dataset.listener, ...[...tr.cells].map(td => td.innerText)]),
    table: rect(document.getElementById('settings')),
    username: text('#username'),
    languageLink: text('#language'),
    scripts: document.scripts.length,
    // Line boxes of the port and security cells: more than one means wrapped.
    cellLines: Math.max(0, ...[...document.querySelectorAll('#settings td')].slice(0).filter(
      (td, i) => i % 4 >= 2).map(td => { const r = document.createRange(); r.selectNodeContents(td);
      return r.getClientRects().length; })),
  };
})()"""


def _fits_the_phone(page: dict[str, Any]) -> None:
    width = page["innerWidth"]
    assert width == PHONE["width"]
    assert page["scrollWidth"] <= width, "the page scrolls sideways on a phone"
    for name in ("input", "button", "table"):
        box = page[name]
        assert box["left"] >= 0 and box["right"] <= width, f"{name} is cut off: {box}"
    assert page["input"]["height"] >= 32 and page["button"]["height"] >= 32  # big enough to tap
    assert page["fontSize"] >= 14
    assert page["cellLines"] == 1, "a port or security cell wraps"


@pytest.mark.parametrize("accept_language, lang, texts", [
    ("en-US,en;q=0.9", "en", {"title": "Set up your mail", "button": "Continue",
                              "settings": "Server settings", "download": "Download the profile",
                              "other": "中文"}),
    ("zh-CN,zh;q=0.9,en;q=0.5", "zh-CN", {"title": "设置邮箱", "button": "继续", "settings": "服务器设置",
                                          "download": "下载描述文件", "other": "English"}),
])
def test_phone_user_gets_the_profile_link_in_their_language(
        web: RunningServer, browser: Browser, tmp_path: Path, accept_language: str, lang: str,
        texts: dict[str, str]) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", **PHONE)
    browser.call("Emulation.setUserAgentOverride", userAgent=browser.user_agent,
                 acceptLanguage=accept_language)
    base = f"http://127.0.0.1:{web.port('http')}"
    browser.load(base + "/")
    page = browser.evaluate(INSPECT)
    assert page["lang"] == lang
    assert page["title"] == page["h1"] == texts["title"]
    assert page["buttonText"] == texts["button"]
    assert page["languageLink"] == texts["other"]
    assert page["profileHref"] is None and page["error"] is None
    assert page["scripts"] == 0
    _fits_the_phone(page)
    # The table lists every advertised server with the server's real ports.
    assert {row[0]: int(row[3]) for row in page["rows"]} == {
        name: web.port(name) for name in ("imaps", "imap", "pop3s", "pop3", "submissions", "submission")
        if name in web.service.listeners}
    assert all(row[2] == "mail.example.com" for row in page["rows"])

    # Type the address and press the button, as a user would.
    browser.type_into("#email", "Alice@Example.com")
    browser.events.clear()
    browser.click("button")
    browser.wait_for_event("Page.loadEventFired")
    page = browser.evaluate(INSPECT)
    browser.screenshot(tmp_path / f"page-{lang}.png")
    assert page["lang"] == lang  # the language survives the form
    assert page["inputValue"] == "alice@example.com"
    assert page["profileHref"] == base + "/mobileconfig?email=alice@example.com"
    assert page["username"] == "alice@example.com"
    assert "alice@example.com" in page["outlook"]
    assert texts["download"] in browser.evaluate("document.body.innerText")
    _fits_the_phone(page)
    assert page["profile"]["right"] <= PHONE["width"]


def test_unhosted_and_invalid_addresses_show_an_error(web: RunningServer, browser: Browser) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", **PHONE)
    browser.call("Emulation.setUserAgentOverride", userAgent=browser.user_agent, acceptLanguage="zh-CN")
    base = f"http://127.0.0.1:{web.port('http')}"
    browser.load(base + "/?email=someone%40other.org")
    page = browser.evaluate(INSPECT)
    assert page["error"] == "本服务器不托管 other.org 的邮件。"
    assert page["profileHref"] is None
    browser.call("Emulation.setUserAgentOverride", userAgent=browser.user_agent, acceptLanguage="en")
    browser.load(base + "/?email=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    page = browser.evaluate(INSPECT)
    assert page["error"] == "This is not a valid email address."
    assert page["inputValue"] == '"><img src=x onerror=alert(1)>'  # shown as text, not markup
    assert browser.evaluate("document.images.length") == 0


def test_language_link_switches_language(web: RunningServer, browser: Browser) -> None:
    browser.call("Emulation.setUserAgentOverride", userAgent=browser.user_agent, acceptLanguage="en")
    browser.load(f"http://127.0.0.1:{web.port('http')}/?email=alice@example.com")
    browser.events.clear()
    browser.click("#language")
    browser.wait_for_event("Page.loadEventFired")
    page = browser.evaluate(INSPECT)
    assert page["lang"] == "zh-CN" and page["h1"] == "设置邮箱"
    assert page["profileHref"].endswith("/mobileconfig?email=alice@example.com")
