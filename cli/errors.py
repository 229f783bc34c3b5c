"""From the API's typed errors to the CLI's one line: the message, then which flag or command helps."""

from __future__ import annotations

from ..runtime.errors import (
    AssocError,
    DeviceError,
    GalleryDamagedError,
    GalleryNotEmptyError,
    ModelMismatchError,
    NoGalleryError,
    StoreConfigError,
)

_HINTS: list[tuple[type[AssocError], str]] = [
    (GalleryNotEmptyError, "give --gallery a new or empty folder"),
    (ModelMismatchError, "use another --gallery for this model, or index your photos again into a new one"),
    (GalleryDamagedError, "run `assoc check --repair`, or index into a new --gallery"),
    (NoGalleryError, "index some photos into it first, or name another with --gallery / --collection"),
    (StoreConfigError, "with --store qdrant give --qdrant-url URL (or ASSOC_QDRANT_URL) or --qdrant-path DIR"),
    (DeviceError, "choose another --device (auto uses an accelerator only when it starts)"),
]


def one_line(exc: AssocError) -> str:
    """The message on exactly one line, with the CLI's advice for its kind of error."""
    message = " ".join(str(exc).split())
    for kind, hint in _HINTS:
        if isinstance(exc, kind):
            return f"{message}; {hint}"
    return message
