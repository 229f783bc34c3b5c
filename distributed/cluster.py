"""Joining a Ray cluster for one run, or starting a local one.

An address is what `ray.init` takes: "auto" (the cluster this node belongs to, started with
`ray start`), "HOST:PORT" of a head node, or "ray://HOST:PORT" (Ray Client). LOCAL starts a Ray
instance on this machine for the run and stops it afterwards. When the calling process has already
initialised Ray (a notebook, a test), that cluster is used as it is and left running.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import ray
import ray.data

from ..runtime.errors import AssocError

LOCAL = "local"
PROBE_TIMEOUT_S = 10


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
    try:
        if address == LOCAL:
            ray.init(address="local", include_dashboard=False, **options)  # new, even where RAY_ADDRESS is set
        else:
            ray.init(address=address, **options)
    except ConnectionError as exc:
        if address == "auto":
            raise AssocError(
                "no running Ray cluster on this machine: start one with `ray start --head`, or give the head's "
                "HOST:PORT"
            ) from None
        raise AssocError(f"cannot join Ray at {address} ({_first_line(exc)})") from None
    try:
        _quiet()
        yield
    finally:
        ray.shutdown()


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
