"""Kills the Ray processes a driver started, once the driver is gone; run as a script by cluster.py.

A local Ray instance (`ray.init(address="local")`) gives its head processes a parent-death signal,
but the agents the raylet starts outlive a driver killed with SIGKILL (they wait on the GCS, which
died with it). So the driver starts this watchdog, in a session of its own, with a pipe on its
stdin, and marks the environment of the processes it starts with VARIABLE=TOKEN. The instance's
processes are known by that mark, or by files they hold open in its session folder (Ray's agents
retitle themselves over their environment, but keep their logs there):

- "session DIR" lines: the instance's session folder, sent once `ray.init` returns. Until one comes,
  the watchdog reads it from the command line of a marked process (the GCS and the raylet name it),
  so a driver killed while Ray starts is covered too.
- "done" and then the end of the pipe: the driver shut Ray down itself; nothing to do.
- the end of the pipe alone: the driver died (the kernel closed its end, kill -9 included); every
  process of this user that bears the mark, or that is a Ray process holding a file open in the
  session folder, is killed, over and over until none is left for a moment (at most SWEEP_S
  seconds). No other process is touched.

Standard library only, and run with -I -S: it imports neither assoc nor Ray. Linux only (/proc).

    python -I -S watchdog.py VARIABLE TOKEN
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import time

DONE = "done"
SESSION = "session "
SWEEP_S = 20.0  # sweep at most this long after the driver died
QUIET_SWEEPS = 5  # stop after this many sweeps in a row that find nothing
SWEEP_PAUSE_S = 0.2
LOOK_S = 0.25  # while no session folder is known, look for one this often
_SESSION_DIR = re.compile(r"(/[^\s=]*/session_[^/\s]+)")


def main(argv: list[str]) -> int:
    variable, token = argv[1], argv[2]
    marker = f"{variable}={token}".encode()
    sessions: set[str] = set()
    pending = b""
    stdin = sys.stdin.buffer.fileno()
    while True:  # until the end of the pipe
        ready, _, _ = select.select([stdin], [], [], None if sessions else LOOK_S)
        if not ready:
            sessions |= _sessions_of(marked(marker))
            continue
        chunk = os.read(stdin, 4096)
        pending += chunk if chunk else b"\n"  # the end of the pipe ends the last line too
        *lines, pending = pending.split(b"\n")
        for line in (raw.decode(errors="replace").strip() for raw in lines):
            if line == DONE:
                return 0
            if line.startswith(SESSION):
                sessions.add(line[len(SESSION) :])
        if not chunk:
            break
    sessions |= _sessions_of(marked(marker))  # what still runs may say more
    deadline = time.monotonic() + SWEEP_S
    quiet = 0
    while quiet < QUIET_SWEEPS and time.monotonic() < deadline:
        found = (set(marked(marker)) | set(holding(sessions))) - {os.getpid()}
        for pid in found:
            with contextlib.suppress(OSError):  # gone meanwhile
                os.kill(pid, signal.SIGKILL)
        quiet = 0 if found else quiet + 1
        time.sleep(SWEEP_PAUSE_S)
    return 0


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:  # gone, or another user's
        return b""


def marked(marker: bytes) -> list[int]:
    """Processes whose environment holds `marker` (VARIABLE=TOKEN); a zombie's reads as empty."""
    return [pid for pid in _pids() if marker in _read(f"/proc/{pid}/environ").split(b"\0")]


def _sessions_of(pids: list[int]) -> set[str]:
    """Ray session folders named on these processes' command lines."""
    found = set()
    for pid in pids:
        for arg in _read(f"/proc/{pid}/cmdline").decode(errors="replace").split("\0"):
            found.update(_SESSION_DIR.findall(arg))
    return found


def holding(sessions: set[str]) -> list[int]:
    """Ray processes (by their command line) with a file open in one of these session folders."""
    if not sessions:
        return []
    prefixes = tuple(folder.rstrip("/") + "/" for folder in sessions)
    found = []
    for pid in _pids():
        if not _is_ray(_read(f"/proc/{pid}/cmdline").decode(errors="replace").split("\0")):
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefixes):
                found.append(pid)
                break
    return found


def _is_ray(argv: list[str]) -> bool:
    """Whether a command line is a Ray process: a retitled one ("ray::IDLE"), a Ray program, or Python
    running one (not, say, a `less` of a Ray log file)."""
    first = argv[0] if argv else ""
    if first.startswith("ray::") or "/ray/" in first:
        return True
    return os.path.basename(first).startswith("python") and any("/ray/" in arg for arg in argv[1:3])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
