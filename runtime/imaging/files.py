"""Opening a file named like a photo without trusting it to be one: a named pipe would block a read
forever and a device such as /dev/zero would never end, so only regular files are ever read."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """A photo's name on something that is not a regular file (a pipe, a device, a socket)."""


def kind_of(mode: int) -> str:
    """What a file system entry that is not a regular file is, in words ("a named pipe"), from its st_mode."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "an unknown kind of file"


def open_regular(path: str | Path) -> BinaryIO:
    """Open a file for reading only if it is a regular file (after following links).

    The open never blocks (a named pipe with no writer blocks a plain open), and anything but a
    regular file is refused before any read: a folder with IsADirectoryError, the rest with
    NotRegularFileError, whose message says what it is.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"not a regular file ({kind_of(mode)})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
