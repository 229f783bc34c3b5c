"""From the API's typed errors to the CLI's one line: the message, then which flag or command helps; and
the exit codes (README, Usage):

    0    done
    2    an error: one line on stderr, "assoc: error: ..." (also for a bad flag or argument)
    3    `assoc index` could index nothing: every photo it found was skipped (the reasons are listed)
    4    `assoc check` found damaged photos and did not repair them (without --repair)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

from typing import Any

from ..runtime.errors import (
    AssocError,
    BundleError,
    DatabaseDamagedError,
    DeviceError,
    DiskFullError,
    GalleryBusyError,
    GalleryDamagedError,
    GalleryNotEmptyError,
    GalleryReadOnlyError,
    ModelMismatchError,
    NoGalleryError,
    StoreConfigError,
)
from .names import shown

EXIT_ERROR = 2
EXIT_NOTHING_INDEXED = 3
EXIT_DAMAGED = 4
EXIT_INTERRUPTED = 130

_HINTS: list[tuple[type[AssocError], str]] = [
    (DiskFullError, "free some space (or give --gallery a folder on another disk) and run the same command again"),
    (GalleryReadOnlyError, "to index, give --gallery a folder you can write to"),
    (GalleryBusyError, "wait for the other `assoc index` to finish, then try again"),
    (BundleError, "name a complete bundle with --model (or ASSOC_MODEL), or leave both out for the shipped one"),
    (GalleryNotEmptyError, "give --gallery a new or empty folder"),
    (ModelMismatchError, "use another --gallery for this model, or index your photos again into a new one"),
    (DatabaseDamagedError, "index your photos into a new --gallery (`assoc check --repair` mends photos, not this)"),
    (GalleryDamagedError, "run `assoc check --repair`, or index into a new --gallery"),
    (NoGalleryError, "index some photos into it first, or name another with --gallery / --collection"),
    (StoreConfigError, "with --store qdrant give --qdrant-url URL (or ASSOC_QDRANT_URL) or --qdrant-path DIR"),
    (DeviceError, "choose another --device (auto uses an accelerator only when it starts)"),
]


def one_line(exc: AssocError) -> str:
    """The message on exactly one line, with the CLI's advice for its kind of error."""
    message = shown(" ".join(str(exc).split()))
    for kind, hint in _HINTS:
        if isinstance(exc, kind):
            return f"{message}; {hint}"
    return message


def usage_line(exc: Any) -> str:
    """A bad flag or argument (click's UsageError) on one line, pointing to the command's --help:
    "no such option: --frobnicate (see assoc query --help)"."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and not message[1:2].isupper():  # "No such option" but not "QUERY ..."
        message = message[0].lower() + message[1:]
    command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "assoc"
    return f"{shown(message)} (see {shown(command)} --help)"
