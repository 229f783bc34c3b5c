"""File names on their way out: escaped for a terminal, exact for scripts.

File names are bytes; os.fsdecode keeps a byte that is not UTF-8 as a lone surrogate (U+DC80-U+DCFF).
A table or a message shows such bytes and control characters as escapes, so a name can neither break
the output nor drive the terminal; --json (assoc.api.json_text) and --paths-only give back the very name.
"""

from __future__ import annotations

import os
import re

import typer

# What a terminal must not be sent raw from a file name: C0 and C1 control characters (ESC sequences can
# retitle or clear the terminal), bidi controls (which reorder what is shown), and the lone surrogates
# that stand for bytes of a name that is not valid UTF-8.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def shown(text: str) -> str:
    """Text (a file name, a message holding one) as a terminal may print it: unshowable characters become
    escapes, \\xNN for a control character or a byte that is not UTF-8 (os.fsdecode keeps such a byte
    as a lone surrogate), \\uNNNN for the rest. For people only: --json and --paths-only stay exact."""
    return _UNSHOWABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def echo_paths(paths: list[str], null: bool) -> None:
    """File names on stdout as their raw bytes, each ended by a newline or (null) a NUL."""
    end = b"\0" if null else b"\n"
    typer.echo(b"".join(os.fsencode(path) + end for path in paths), nl=False)
