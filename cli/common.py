"""Options and output helpers that several commands share.

stdout carries results (tables, JSON, paths, pictures); progress and notes go to stderr, so
`assoc query --json ... | jq` and `assoc index ... > log` both do what one expects. Output that stdout
cannot take is never a traceback: a character its encoding lacks is escaped (\\xe9, as tables escape
odd names; JSON keeps its own \\u00e9), a failed write (a full disk, `> /dev/full`) is one error line,
and a reader that went away (`| head -1`) ends the command quietly.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any

import typer

from ..api.json_text import dumps
from ..runtime.errors import AssocError

if TYPE_CHECKING:  # rich, numpy and Pillow load only for output drawn for people (not --json)
    import numpy as np
    from PIL import Image
    from rich.console import Console, Group

PICTURE_CELLS = 48  # terminal columns of one heatmap picture (narrower if the terminal is)


class OutputError(AssocError):
    """stdout cannot take what a command writes (a full disk, a device error)."""


class _GuardedStdout(io.FileIO):
    """stdout's file descriptor under sys.stdout (guard_stdout): a write that fails raises OutputError, or
    for a reader that went away the BrokenPipeError Typer ends quietly; after either, whatever is still
    buffered is dropped, so that leaving the program does not fail a second time."""

    broken = False

    def write(self, data: Any) -> int:
        if self.broken:
            return len(memoryview(data).cast("B"))
        try:
            return super().write(data)
        except OSError as exc:
            self.broken = True
            if exc.errno == errno.EPIPE:
                raise
            raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None


def guard_stdout() -> None:
    """Put the process's stdout under _GuardedStdout, with characters its encoding lacks written as
    backslash escapes (as a table shows an odd name) instead of failing; the same encoding and buffering."""
    old = sys.stdout
    if not isinstance(old, io.TextIOWrapper) or isinstance(getattr(old, "buffer", None), _GuardedStdout):
        return
    try:
        fd = old.fileno()
        old.flush()
    except (OSError, ValueError):  # no real file behind it (an embedding, a test runner)
        return
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_GuardedStdout(fd, "w", closefd=False)),
        encoding=old.encoding,
        errors="backslashreplace",
        line_buffering=old.line_buffering,
        write_through=old.write_through,
    )


def out_console() -> Console:
    """Results go to stdout; made per call so a test runner's captured stdout is the one written to.

    FORCE_COLOR draws for a terminal into a pipe or file; there rich would take the colour depth from
    COLORTERM/TERM, which are the terminal's business (often 16 colours: grey pictures), so a forced
    console draws in truecolour unless COLORTERM/TERM name a depth themselves."""
    from rich.console import Console

    forced = bool(os.environ.get("FORCE_COLOR")) and not os.environ.get("NO_COLOR") and not _isatty(sys.stdout)
    named = os.environ.get("COLORTERM") or re.search(r"-(256|16)colou?r$", os.environ.get("TERM", ""))
    return Console(highlight=False, color_system="truecolor" if forced and not named else "auto")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def echo_json(value: Any) -> None:
    """JSON on stdout, naming every file exactly (see assoc.api.json_text); a character stdout's encoding
    (PYTHONIOENCODING=ascii, say) lacks is written as JSON's own \\uXXXX escape, so the text stays JSON."""
    text = dumps(value)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = _NOT_ASCII.sub(lambda m: json.dumps(m.group())[1:-1], text)  # only inside JSON strings
    typer.echo(text)


_NOT_ASCII = re.compile(r"[^\x00-\x7f]")


def heatmap_picture(photo: Image.Image, grid_map: np.ndarray, caption: str, console: Console) -> Group:
    """A photo with a heatmap blended over it, drawn for this terminal, with a caption underneath."""
    from rich.console import Group
    from rich.text import Text

    from ..api.render import overlay
    from .terminal import render

    width = max(8, min(PICTURE_CELLS, console.width - 2))
    return Group(render(overlay(photo, grid_map), width), Text(caption, style="bold"))
