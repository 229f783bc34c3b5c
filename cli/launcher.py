"""The `assoc` console script: a command a standing-by process can run goes there (`assoc standby`,
assoc.cli.standby_link), every other command and every command without one runs here (assoc.cli.app).

Nothing but the standard library is imported before that choice, so a served query costs a fresh
interpreter and one connection, and the libraries stay loaded in the standing-by process.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from .standby_link import StandbyLost, run_served

    try:
        code = run_served(sys.argv[1:])
    except StandbyLost as exc:
        from .errors import EXIT_ERROR

        sys.stderr.write(f"assoc: error: {exc}\n")
        code = EXIT_ERROR
    if code is None:
        from .app import main as run_here

        run_here()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # nothing was loaded that needs Python's own shutdown
