"""Headless Chromium driven over the Chrome DevTools Protocol (tests only).

`Browser(...)` starts the Debian `chromium` with a fresh profile, no sandbox, GPU, background
networking, component updates, sync or QUIC, and a DevTools port chosen by Chromium; `page`
methods run CDP commands on its first tab while every event (console, log, network) is recorded
in `events`, so a test can assert on console errors and network requests after the fact.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
         "--remote-allow-origins=*", "--remote-debugging-port=0", "--window-size=1400,1000")


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class Browser:
    """One headless Chromium process and a CDP session on its first page."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0) -> None:
        import websocket

        self.timeout = timeout
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}",
                                         "about:blank"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        endpoint: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            for line in self.process.stderr:
                self.stderr.append(line)
                if "DevTools listening on" in line:
                    endpoint.append(line.split("DevTools listening on", 1)[1].strip())
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout) or not endpoint:
            self.close()
            raise RuntimeError("chromium did not open a DevTools port:\n" + "".join(self.stderr))
        port = endpoint[0].split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout,
                                                  suppress_origin=True)
        self.events: list[dict] = []
        self._next_id = 0
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        """Run one CDP command and return its result; events meanwhile go to `events`."""
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"CDP {method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for_event(self, method: str, timeout: float | None = None) -> dict:
        """Block until an event `method` arrives (or was already recorded since the last call)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message
        raise TimeoutError(f"no {method} event within the timeout")

    def navigate(self, url: str) -> None:
        """Open `url` and wait for its load event."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """Value of a JS expression in the page (promises awaited); JS exceptions raise."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """PNG of the viewport (or of the whole page)."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP, failed loads)."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description")))
                                       for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(str(params["exceptionDetails"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        return errors

    def requested_urls(self) -> list[str]:
        """Every URL the page requested since the last navigation (CDP Network events)."""
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
