"""Joining a Ray cluster for one run, or starting a local one.

An address is what `ray.init` takes: "auto" (the cluster this node belongs to, started with
`ray start`), "HOST:PORT" of a head node, or "ray://HOST:PORT" (Ray Client). LOCAL starts a Ray
instance on this machine for the run and stops it afterwards. When the calling process has already
initialised Ray (a notebook, a test), that cluster is used as it is and left running.

A LOCAL instance dies with the process that started it, however it ends: on Linux a watchdog
(watchdog.py) kills every process of that instance (known by a mark in their environment and by the
files they hold in its session folder) if this one dies without shutting it down (kill -9), where
Ray's own fate-sharing leaves its agent processes running.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import ray
import ray.data

from ..runtime.errors import AssocError

LOCAL = "local"
PROBE_TIMEOUT_S = 10
WATCHDOG_WAIT_S = 5  # how long a run's end waits for its watchdog to exit (it exits at once when told)
_DONE = b"done\n"  # watchdog.DONE: Ray was shut down by the driver
_SESSION = "session "  # watchdog.SESSION: the instance's session folder follows


@contextmanager
def connect(address: str = LOCAL) -> Iterator[None]:
    """Ray, initialised for the body of the with-block: joined at `address`, or local (LOCAL)."""
    if ray.is_initialized():
        _quiet()
        yield
        return
    if address not in (LOCAL, "auto"):
        _probe(address)
    # Ray's C++ side writes warnings to stderr (they stay in its session logs); the caller's stderr
    # gets one line per problem from assoc instead.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    options = {"log_to_driver": False, "logging_level": logging.ERROR}
    watchdog = _Watchdog.start() if address == LOCAL else None
    try:
        if watchdog is not None:
            with watchdog.marking():
                context = ray.init(address="local", include_dashboard=False, **options)  # new, even with RAY_ADDRESS
            watchdog.tell_session(context.address_info.get("session_dir"))
        else:
            ray.init(address=address, **options)
    except ConnectionError as exc:
        if watchdog is not None:
            watchdog.release(clean=False)
        if address == "auto":
            raise AssocError(
                "no running Ray cluster on this machine: start one with `ray start --head`, or give the head's "
                "HOST:PORT"
            ) from None
        raise AssocError(f"cannot join Ray at {address} ({_first_line(exc)})") from None
    except BaseException:
        if watchdog is not None:
            watchdog.release(clean=False)
        raise
    try:
        _quiet()
        yield
    finally:
        ray.shutdown()
        if watchdog is not None:
            watchdog.release(clean=True)


class _Watchdog:
    """The watchdog process of a LOCAL instance (see watchdog.py); None where it cannot run (not Linux)."""

    VARIABLE = "ASSOC_RAY_OWNER"

    def __init__(self, process: subprocess.Popen[bytes], token: str) -> None:
        self.process, self.token = process, token

    @classmethod
    def start(cls) -> _Watchdog | None:
        if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
            return None
        token = f"{os.getpid()}-{secrets.token_hex(8)}"
        script = Path(__file__).with_name("watchdog.py")
        environment = {k: v for k, v in os.environ.items() if k != cls.VARIABLE}
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(script), cls.VARIABLE, token],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not stopped by a Ctrl-C or a hangup meant for this process
                env=environment,
            )
        except OSError:  # no watchdog: Ray's own fate-sharing, as before
            return None
        return cls(process, token)

    @contextmanager
    def marking(self) -> Iterator[None]:
        """Every process started in the body (Ray's head, and through it its agents and workers)
        inherits the mark the watchdog looks for; this process's environment is restored after."""
        before = os.environ.get(self.VARIABLE)
        os.environ[self.VARIABLE] = self.token
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(self.VARIABLE, None)
            else:
                os.environ[self.VARIABLE] = before

    def tell_session(self, folder: str | None) -> None:
        """The instance's session folder: the watchdog knows its processes by the files they hold there."""
        stdin = self.process.stdin
        if folder and stdin is not None:
            with suppress(OSError):
                stdin.write(f"{_SESSION}{folder}\n".encode())
                stdin.flush()

    def release(self, clean: bool) -> None:
        """clean: Ray was shut down here, the watchdog only exits; otherwise it kills what is left."""
        stdin = self.process.stdin
        with suppress(OSError):
            if clean and stdin is not None:
                stdin.write(_DONE)
        with suppress(OSError):
            if stdin is not None:
                stdin.close()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=WATCHDOG_WAIT_S)


def check_address(address: str) -> None:
    """Refuse what cannot be a Ray address, before any work is done."""
    if address not in (LOCAL, "auto"):
        _host_port(address)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise AssocError(f"a Ray address is auto, local, HOST:PORT or ray://HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def _probe(address: str) -> None:
    """Fail fast where nothing listens: ray.init retries an unreachable head for minutes."""
    try:
        socket.create_connection(_host_port(address), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise AssocError(f"cannot reach Ray at {address} ({exc.strerror or exc})") from None


def _quiet() -> None:
    """The driver reports its own progress: no Ray Data progress bars or log lines."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    # A failure reaches the caller as one AssocError line; Ray Data would also log its stack traces.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
