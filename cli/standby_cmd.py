"""`assoc standby`: keep a process standing by with assoc loaded, so that `query`, `localize` and `info`
start in a fraction of the time (assoc.cli.standby_server; the client side is assoc.cli.standby_link).

It serves this user only, leaves after --idle seconds without a command, and leaves by itself when assoc
or a library it loaded is upgraded. ASSOC_STANDBY=0 in a command's environment runs it without.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ..runtime.errors import AssocError
from .common import echo_json
from .options import JsonOpt
from .standby_link import StandbyUnsafe, ask, private_folder, socket_path, supported
from .standby_server import IDLE_SECONDS

START_SECONDS = 60.0  # how long starting may take (loading the libraries on busy cores)


def standby(
    stop: Annotated[bool, typer.Option("--stop", help="Ask the standing-by process to leave.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Say whether one stands by, and what it served.")] = False,
    idle: Annotated[
        float, typer.Option("--idle", min=1.0, help="Seconds without a command after which it leaves.")
    ] = IDLE_SECONDS,
    as_json: JsonOpt = False,
) -> None:
    """Keep a process standing by with assoc loaded: `query`, `localize` and `info` then start in half the time."""
    if not supported():
        raise AssocError("assoc standby needs Linux (Unix sockets that pass files, and process fds)")
    facts = ask("status")
    if stop:
        stopped = ask("stop") if facts else None
        line = "stopped" if stopped else "none was standing by"
        _report({"stopped": stopped["stopping"] if stopped else None}, as_json, line)
    elif status:
        _report({"standing_by": facts}, as_json, _described(facts) if facts else "none is standing by")
    elif facts:
        _report({"standing_by": facts}, as_json, f"already {_described(facts)}")
    else:
        _report({"standing_by": _start(idle)}, as_json, None)


def _start(idle: float) -> dict:
    try:
        folder = private_folder(create=True)
    except (OSError, StandbyUnsafe) as exc:
        raise AssocError(f"cannot stand by: {exc}") from None
    log = Path(socket_path(folder)).with_suffix(".log")  # what a server that failed to start said
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "assoc.cli.standby_server", "--idle", str(idle)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        facts = ask("status")
        if facts:
            return facts
        if process.poll() is not None:
            said = log.read_text(errors="replace").strip().splitlines()
            raise AssocError(f"the standing-by process could not start: {said[-1] if said else 'no reason given'}")
        time.sleep(0.05)
    process.terminate()
    raise AssocError(f"the standing-by process did not start listening within {START_SECONDS:.0f} s")


def _described(facts: dict) -> str:
    served, idle = facts["served"], facts["idle"]
    return f"standing by: process {facts['pid']}, {served} commands served, leaves after {idle:.0f} s idle"


def _report(facts: dict, as_json: bool, line: str | None) -> None:
    if as_json:
        echo_json(facts)
    else:
        typer.echo(line or _described(facts["standing_by"]))


def register(app: typer.Typer) -> None:
    app.command()(standby)
