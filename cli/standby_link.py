"""Where a standing-by assoc process listens, and how a command asks it to run (`assoc standby`).

Only the standard library is imported here: this runs before anything else in the `assoc` command
(assoc.cli.launcher), and it must cost less than the imports it saves.

The wire, over a Unix socket: the client sends one line, "assoc-standby 1", with its stdin, stdout and
stderr attached (SCM_RIGHTS), then one JSON line (what to do; for "run": argv, cwd, environment and
umask). The server answers JSON lines: {"pid": N} once the command runs in process N (a fork of the
server, writing to the client's own stdout and stderr), then {"exit": CODE}; or {"stale": true} where
it can no longer run the command as the installed code would (the client then runs it itself).

A server only ever serves its own user: the folder is private (0700, owned by the user, checked before
every use), and each side checks the other's uid on the socket (SO_PEERCRED). Its name is a hash of
what decides the code and the libraries a fresh process would load (IMPORT_ENVIRONMENT, the Python and
the package folder), so a client that would load something else never finds it.
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from typing import TYPE_CHECKING

from ..runtime import TELEMETRY_SWITCH  # the package's import also sets its default, as a fresh process does
from .quick_exit import QUICK_EXIT

if TYPE_CHECKING:  # socket, json and struct load only where a server may listen (run_served)
    import socket

HELLO = b"assoc-standby 1\n"
SERVED = QUICK_EXIT  # the short commands that only read
DISABLE = "ASSOC_STANDBY"  # "0" in the environment: never use a standing-by process
# What a fresh process reads from its environment before any command runs: a standing-by process
# that loaded its libraries under other values would not answer as a fresh one does.
IMPORT_ENVIRONMENT = (
    TELEMETRY_SWITCH,
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "PYTHONHASHSEED",
    "PYTHONPATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
)
MAX_REQUEST = 4 << 20  # bytes of one request line (argv and environment)
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")  # signals the client passes on to the command it waits for


class StandbyLost(Exception):
    """The standing-by process closed the connection before the command it ran ended."""


class StandbyUnsafe(Exception):
    """The socket's folder is not this user's alone: nothing is sent to or served from it."""


def socket_folder() -> str:
    """$XDG_RUNTIME_DIR/assoc where the session has one, else a per-user folder in the temp folder.
    (Paths are strings here: pathlib is not loaded on the way to a served command.)"""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "assoc")
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"assoc-{os.getuid()}")


def private_folder(create: bool = False) -> str:
    """The socket folder, made if asked; StandbyUnsafe unless it is a real folder of this user's that
    nobody else can enter."""
    folder = socket_folder()
    if create:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if not os.path.isdir(folder) or os.path.islink(folder) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StandbyUnsafe(f"{folder} is not a private folder of this user's")
    return folder


def server_key() -> str:
    """What a standing-by process must share with a client to answer for it (see the module doc)."""
    import hashlib

    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    fields = [sys.executable, package, sys.version, *(f"{k}={os.environ.get(k)}" for k in IMPORT_ENVIRONMENT)]
    return hashlib.sha256("\0".join(fields).encode()).hexdigest()[:16]


def socket_path(folder: str) -> str:
    return os.path.join(folder, f"{server_key()}.sock")


def peer_uid(sock: socket.socket) -> int:
    import socket
    import struct

    pid_uid_gid = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", pid_uid_gid)[1]


def supported() -> bool:
    """Unix sockets that pass file descriptors and tell their peer's uid, fork and process fds: Linux."""
    import socket

    needs = ((socket, "SO_PEERCRED"), (socket, "send_fds"), (os, "fork"), (os, "pidfd_open"))
    return all(hasattr(module, name) for module, name in needs)


def connect(folder: str, timeout: float | None = None) -> socket.socket | None:
    """A connection to this key's standing-by process, or None where none listens (or another user does)."""
    import socket

    path = socket_path(folder)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        if peer_uid(sock) == os.getuid():
            return sock
    except OSError:
        pass
    sock.close()
    return None


def send_request(sock: socket.socket, request: dict, fds: list[int]) -> None:
    import socket

    socket.send_fds(sock, [HELLO], fds)
    send_message(sock, request)


def send_message(sock: socket.socket, message: dict) -> None:
    """One JSON line: every message either side sends after the hello."""
    import json

    sock.sendall(json.dumps(message).encode() + b"\n")


def read_messages(sock: socket.socket, limit: int | None = None):  # noqa: ANN201 - a generator of dicts
    """The other side's JSON lines, as they come, until it closes the connection; ValueError for a line
    longer than limit bytes."""
    import json

    buffered = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            yield json.loads(line)
        if limit is not None and len(buffered) > limit:
            raise ValueError(f"a message longer than {limit} bytes")


def ask(control: str) -> dict | None:
    """A control request ("status" or "stop") to this key's standing-by process; None if none listens."""
    try:
        sock = connect(private_folder(), timeout=10)
    except (OSError, StandbyUnsafe):
        return None
    if sock is None:
        return None
    with sock:
        try:
            send_request(sock, {"do": control}, [])
            return next(read_messages(sock), None)
        except (OSError, ValueError):
            return None


def run_served(argv: list[str]) -> int | None:
    """Run `assoc ARGV` in a standing-by process where one answers for this client: its exit code, the
    command's output written to this process's own stdout and stderr. None where none can (no server,
    not a served command, ASSOC_STANDBY=0, a stale server): the caller then runs the command itself.
    StandbyLost where the server goes away while the command runs."""
    if not argv or argv[0] not in SERVED or os.environ.get(DISABLE) == "0":
        return None
    if not os.path.isdir(socket_folder()) or not supported():  # one stat where standby was never used
        return None
    try:
        sock = connect(private_folder())
    except (OSError, StandbyUnsafe):
        return None
    if sock is None:
        return None
    with sock, _Relay() as relay:
        umask = os.umask(0o22)
        os.umask(umask)
        try:
            request = {"do": "run", "argv": [sys.argv[0], *argv], "cwd": os.getcwd(), "env": dict(os.environ)}
            send_request(sock, request | {"umask": umask}, [0, 1, 2])
            messages = read_messages(sock)
            first = next(messages, None)
        except (OSError, ValueError):
            return None
        if not first or "pid" not in first:
            return None  # stale, or it went away before running anything: run here
        relay.to(int(first["pid"]))
        try:
            for message in messages:
                if "exit" in message:
                    return int(message["exit"])
        except (OSError, ValueError):
            pass
        raise StandbyLost("the standing-by assoc process went away before the command ended")


class _Relay:
    """While a command is asked for and runs elsewhere, Ctrl-C and termination go on to it, as they
    would reach it run here; one that comes before its process is known waits for it, and where the
    command then runs here after all, it reaches this process once the relay is gone."""

    def __init__(self) -> None:
        import signal

        self.signal, self.pid, self.pending = signal, None, []
        self.kept = {getattr(signal, name): signal.getsignal(getattr(signal, name)) for name in FORWARDED}

    def __enter__(self) -> _Relay:
        for signum in self.kept:
            self.signal.signal(signum, self._caught)
        return self

    def _caught(self, signum: int, _frame: object) -> None:
        if self.pid is None:
            self.pending.append(signum)
        else:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def to(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._caught(signum, None)
        self.pending.clear()

    def __exit__(self, *_: object) -> None:
        for signum, handler in self.kept.items():
            self.signal.signal(signum, handler)
        for signum in self.pending:  # caught while asking, for a command that runs here
            os.kill(os.getpid(), signum)
