"""A process standing by with assoc's command-line code and its libraries loaded (`assoc standby`).

A cold `assoc query` spends most of its time loading code: the interpreter, numpy, ONNX Runtime, Typer
and assoc's own modules (bench/cold_query.py). This process loads them once (PRELOAD) and then, for
each command a client sends (assoc.cli.standby_link), forks: the child takes the client's stdin,
stdout and stderr, working folder, environment, umask and arguments, runs the CLI's own main() as a
fresh process would, and ends; the server sends the child's exit code back. Every command therefore
runs in a process of its own, from the same code, reading the gallery, the bundle and the settings as
they are at that moment; only imports are shared, copy-on-write.

It serves only while the code it loaded is the code installed (stamp): after an upgrade it answers
"stale" and leaves, and the client runs the command itself. It leaves after `idle` seconds without a
command, on SIGTERM, and on a "stop" request. It is single-threaded (fork with other threads running
is unsafe): one selector over the socket and a process fd per running child.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
from contextlib import suppress
from pathlib import Path

from . import quick_exit, standby_link
from .standby_link import (
    HELLO,
    MAX_REQUEST,
    SERVED,
    connect,
    peer_uid,
    private_folder,
    read_messages,
    send_message,
    socket_path,
)

IDLE_SECONDS = 900.0  # leave after this long without a command
# Loaded before the first fork: what the served commands import on their way (a module missing here only
# costs its import in each child).
PRELOAD = (
    "assoc.cli.app",
    "assoc.api.searcher",
    "assoc.runtime.encoding.encoders",
    "assoc.runtime.encoding.tokenizer",
    "assoc.runtime.stores.gallery",
    "assoc.runtime.stores.gallery_view",
    "assoc.runtime.scoring.scan",
    "assoc.runtime.search.pipeline",
    "assoc.api.json_text",
    "onnxruntime",
    "tokenizers",
    "sqlite3",
    "platformdirs",
    "PIL.Image",
)
_ACCEPT, _CHILD, _SIGNAL = "accept", "child", "signal"
FORWARDED = {getattr(signal, name) for name in standby_link.FORWARDED}


def preload() -> None:
    from .app import COMMANDS, _load, before_loading

    before_loading(next(iter(SERVED)))  # numpy's BLAS as a short command loads it (one thread)
    for name in PRELOAD:
        with suppress(ImportError):  # an optional library that is not installed
            importlib.import_module(name)
    for command in SERVED:
        _load(COMMANDS[command], {})


def stamp() -> dict[str, tuple[int, int]]:
    """(mtime, size) of the file of every module loaded: what must not change while this process serves."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            with suppress(OSError):
                st = os.stat(path)
                files[path] = (st.st_mtime_ns, st.st_size)
    return files


def unchanged(loaded: dict[str, tuple[int, int]]) -> bool:
    for path, (mtime, size) in loaded.items():
        try:
            st = os.stat(path)
        except OSError:
            return False
        if (st.st_mtime_ns, st.st_size) != (mtime, size):
            return False
    return True


class Server:
    def __init__(self, path: Path, idle: float) -> None:
        self.path, self.idle = path, idle
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with suppress(FileNotFoundError):
            path.unlink()  # a server that is gone left it (the caller found nobody listening)
        self.listener.bind(str(path))
        self.inode = os.stat(path).st_ino
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, (_ACCEPT, None))
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        # SIGTERM wakes the selector through this pair (a handler alone would leave it waiting)
        self.wake, self.woken = socket.socketpair()
        for end in (self.wake, self.woken):
            end.setblocking(False)
        self.selector.register(self.woken, selectors.EVENT_READ, (_SIGNAL, None))
        self.terminated = False
        self.served = 0
        self.loaded = stamp()
        self.leaving = False
        self.last = time.monotonic()

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake.fileno())
        signal.signal(signal.SIGTERM, self._terminate)
        while not (self.leaving and not self.children):
            timeout = None if self.children else max(0.0, self.last + self.idle - time.monotonic())
            events = self.selector.select(timeout)
            if not events and not self.children and time.monotonic() >= self.last + self.idle:
                self.leave()
            for key, _ in events:
                kind, data = key.data
                if kind == _ACCEPT:
                    self.accept()
                elif kind == _SIGNAL:
                    with suppress(BlockingIOError):
                        self.woken.recv(4096)
                    if self.terminated:
                        self.leave()
                else:
                    self.reap(key.fd, *data)
        self.close()

    def _terminate(self, *_: object) -> None:
        self.terminated = True

    def leave(self) -> None:
        """Take no more commands; the loop ends once the running ones have."""
        if not self.leaving:
            self.leaving = True
            self.selector.unregister(self.listener)
            self.listener.close()
            with suppress(OSError):
                if os.stat(self.path).st_ino == self.inode:  # not a newer server's socket
                    self.path.unlink()

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self.wake.close()
        self.woken.close()

    def inherited(self) -> list[int]:
        """The fds a child must not keep: the server's own and the other clients'."""
        own = [self.wake.fileno(), self.woken.fileno(), self.selector.fileno()]
        listener = [] if self.leaving else [self.listener.fileno()]
        return own + listener + [fd for pidfd, (_, conn) in self.children.items() for fd in (pidfd, conn.fileno())]

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        fds: list[int] = []
        try:
            conn.setblocking(True)
            conn.settimeout(5)
            if peer_uid(conn) != os.getuid():
                conn.close()
                return
            hello, fds, _, _ = socket.recv_fds(conn, len(HELLO), 3)
            request = next(read_messages(conn, MAX_REQUEST), None) if hello == HELLO else None
            if not isinstance(request, dict):
                raise ValueError("not a request")
            self.last = time.monotonic()
            self.answer(conn, request, fds)
        except (OSError, ValueError):
            conn.close()
        finally:
            for fd in fds:
                with suppress(OSError):
                    os.close(fd)

    def answer(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        what = request.get("do")
        if what == "status":
            send_message(conn, {"pid": os.getpid(), "served": self.served, "idle": self.idle, "socket": str(self.path)})
            conn.close()
        elif what == "stop":
            send_message(conn, {"stopping": os.getpid()})
            conn.close()
            self.leave()
        elif what == "run" and len(fds) == 3 and not self.leaving:
            if not unchanged(self.loaded):
                send_message(conn, {"stale": True})
                conn.close()
                self.leave()
                return
            # Blocked across the fork: a signal the client passes on before the child has set its own
            # handlers waits for them, instead of meeting the server's.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
            pid = os.fork()
            if pid == 0:
                run_child(request, fds, [*self.inherited(), conn.fileno()], mask)  # never returns
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.served += 1
            pidfd = os.pidfd_open(pid)  # watched before anything else can fail: every child is reaped
            self.children[pidfd] = (pid, conn)
            self.selector.register(pidfd, selectors.EVENT_READ, (_CHILD, (pid, conn)))
            with suppress(OSError):  # a client gone already; its command still runs to its end
                send_message(conn, {"pid": pid})
        else:
            conn.close()

    def reap(self, pidfd: int, pid: int, conn: socket.socket) -> None:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        del self.children[pidfd]
        with suppress(OSError):  # the client may have gone
            send_message(conn, {"exit": code if code >= 0 else 128 - code})
        conn.close()
        self.last = time.monotonic()


def run_child(request: dict, fds: list[int], inherited: list[int], mask: set[signal.Signals]) -> None:
    """In the forked child: become the client's command, run it, end (never returns). mask: the signal
    mask to go back to once the child's handlers are those of a fresh process."""
    code: object = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in inherited:
            os.close(fd)
        for signum in FORWARDED:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _fresh_streams()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(int(request["umask"]))
        sys.argv = list(request["argv"])
        quick_exit.act_as_the_command()
        from .app import main

        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # from here on a signal reaches the command
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    except BaseException as exc:  # noqa: BLE001 - as an uncaught exception ends a fresh process
        import traceback

        traceback.print_exc()
        if isinstance(exc, KeyboardInterrupt):  # Python then ends by the signal itself
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    quick_exit.leave_now(code, join_others=True)
    os._exit(120)  # leave_now returned: flushing failed, for which Python's own exit gives 120


def _fresh_streams() -> None:
    """sys.stdin, stdout and stderr over fds 0-2 as a fresh interpreter makes them: line-buffered output
    where it is a terminal (stderr always), the encoding and error handlers this process started with."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        old = getattr(sys, name)
        stream = open(  # noqa: SIM115 - the process's own stream, never closed
            fd,
            "r" if fd == 0 else "w",
            encoding=old.encoding,
            errors=old.errors,
            closefd=False,
            newline=None if fd == 0 else "\n",
        )
        if fd:
            stream.reconfigure(line_buffering=fd == 2 or os.isatty(fd))
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def serve(idle: float = IDLE_SECONDS) -> None:
    """Load, listen on this key's socket, serve until idle, stopped or stale; return at once where
    another server already listens there."""
    folder = private_folder(create=True)
    probe = connect(folder, timeout=5)
    if probe is not None:
        probe.close()
        return
    path = Path(socket_path(folder))
    preload()
    gc.collect()
    gc.freeze()  # what is loaded stays out of every child's collections (and its pages shared)
    Server(path, idle).run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="assoc standby (server)")
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS)
    serve(parser.parse_args().idle)


if __name__ == "__main__":
    main()
