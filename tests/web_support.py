"""Helpers for the web app's tests: a real `assoc serve` process, plain HTTP requests, headless Chromium."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cli_support import assoc_command

URL_LINE = re.compile(r"^open (http://\S+)$")
START_TIMEOUT_S = 180  # the model loads before the address is printed; the test machine's cores are shared
CHROMIUM_MISSING = (
    "headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; "
    "scripts/test.sh installs them where apt-get exists)"
)


class Server:
    """`assoc serve ARGS --port 0` in a subprocess; .url is the address it printed (with its token, if any)."""

    def __init__(self, *args: str | Path, cache: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSOC_")}
        env["XDG_CACHE_HOME"] = str(cache)  # thumbnails of stores with no folder of their own
        self.process = subprocess.Popen(
            [*assoc_command(), "serve", "--port", "0", *(str(a) for a in args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # drained with stdout, so a chatty server never blocks on a full pipe
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        found: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(found,), daemon=True).start()
        try:
            url = found.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            url = None
        if url is None:
            self.stop()
            pytest.fail(f"assoc serve did not start:\n{''.join(self.lines)}")
        self.url = url
        self.base = re.sub(r"/\?.*$", "", url).rstrip("/")

    def _read(self, found: queue.Queue[str | None]) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = URL_LINE.match(line.strip())
            if match:
                found.put(match.group(1))
        found.put(None)

    def stop(self) -> int:
        """SIGTERM (what a service manager sends), then the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one real HTTP request; redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=120) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def get_json(url: str, **kwargs: Any) -> Any:
    status, _, body = request(url, **kwargs)
    assert status == 200, (status, body)
    return json.loads(body)


def chromium() -> Any:
    """A headless Chromium under Selenium, or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("Selenium is not installed (pip install 'assoc[test]')")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(CHROMIUM_MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


class LocalServer:
    """An ASGI app under a real uvicorn on a free loopback port, in a thread of this process, so that a
    test can look inside the app's objects (its caches) while it serves plain HTTP and a browser."""

    def __init__(self, app: Any) -> None:
        import socket
        import time

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                pytest.fail("uvicorn did not start in this process")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=20)
        self._socket.close()


def memory_mb(pid: int, field: str) -> int:
    """A process's VmRSS or VmHWM (its peak resident size) in MiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) >> 10
    raise KeyError(field)


def reset_peak_memory(pid: int) -> int:
    """Start VmHWM again from the process's present size (Linux: clear_refs 5); that size in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_mb(pid, "VmRSS")


def wait(browser: Any, condition: Any, timeout: float = 60) -> Any:
    """What condition(browser) gives once it is truthy (Selenium's wait), within timeout seconds."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)
