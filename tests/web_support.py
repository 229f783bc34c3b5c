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
