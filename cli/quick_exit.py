"""Leaving a short command without Python's own shutdown.

At exit Python destroys every module and object one by one: after `assoc query` that is ONNX Runtime's
sessions, the tokenizers and the gallery's memory maps, ~75 ms of a cold query's ~500 on two busy cores
(and ~25 ms more where the command's searcher is freed on its way out). The installed `assoc` command
has nothing left to do by then, so after a command that only reads (QUICK_EXIT) it ends the process
itself (leave_now): the atexit handlers run and stdout and stderr are flushed, as at any exit, and the
operating system takes back the rest. Only the console script does this (is_the_command), and the child
of `assoc standby` that runs a command in its stead: `python -c`, a test or a program that calls
assoc.cli.app.main() goes on after it, and gets Python's own exit.
"""

from __future__ import annotations

import atexit
import os
import sys
from contextlib import suppress
from typing import Any

QUICK_EXIT = frozenset({"query", "localize", "info"})  # commands that only read
_ran: list[str] = []  # the command this process runs (note_command)
_kept: list[Any] = []  # objects left for the operating system to take back (keep_until_exit)
_acting: list[bool] = []  # a standing-by process's child runs the command in its stead (act_as_the_command)


def note_command(name: str | None) -> None:
    if name is not None:
        _ran.append(name)


def will_leave_now() -> bool:
    """Whether this process ends with leave_now: the console script, running a QUICK_EXIT command."""
    return bool(_ran) and _ran[-1] in QUICK_EXIT and is_the_command()


def is_the_command() -> bool:
    """Whether this process is the installed `assoc` command (its console script), after whose main()
    only sys.exit runs."""
    if _acting:
        return True
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    return script is not None and os.path.basename(script).split(".")[0].removesuffix("-script") == "assoc"


def act_as_the_command() -> None:
    """This process is a child of `assoc standby` that runs a client's command and then ends: it ends as
    the console script would (assoc.cli.standby_server)."""
    _acting.append(True)


def keep_until_exit(value: Any) -> None:
    """Where this process will end with leave_now, hold on to value so that it is not torn down on the
    way out (a searcher: its ONNX Runtime sessions); elsewhere nothing."""
    if will_leave_now():
        _kept.append(value)


def leave_now(code: object, *, join_others: bool = False) -> None:
    """End the process with this SystemExit code as Python would, without its shutdown. Returns, for
    Python's own exit, while another thread still runs (unless join_others: then it waits for them, as
    Python's exit would), or if flushing fails (Python reports that)."""
    import threading  # loaded by then; not on the way to a served command (assoc.cli.standby_link)

    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if join_others:
        for thread in others:
            thread.join()
    if any(t.is_alive() for t in others) or run_exit_handlers is None:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - whatever it is, Python's own exit reports it
        return
    run_exit_handlers()
    with suppress(Exception):  # what an exit handler wrote; it can no longer be reported
        sys.stdout.flush()
        sys.stderr.flush()
    if code is None or isinstance(code, int):
        os._exit(code or 0)
    sys.stderr.write(f"{code}\n")  # as Python prints an exit message
    sys.stderr.flush()
    os._exit(1)
