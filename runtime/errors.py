"""Errors a caller can act on, each with a complete one-line message and the facts behind it.

Messages speak of things (a gallery, a photo, a device), never of one front end's vocabulary: the CLI
adds which flag to change (assoc.cli.errors), a web app or a script decides for itself.
"""

from __future__ import annotations

from pathlib import Path


class AssocError(Exception):
    """Base class for errors that carry a complete, user-facing one-line message."""


class BundleError(AssocError):
    """A model bundle is missing, malformed, or does not match its recorded hashes."""


class DeviceError(AssocError):
    """The asked-for ONNX Runtime device cannot be used."""

    def __init__(self, message: str, device: str) -> None:
        super().__init__(message)
        self.device = device


class ImageLoadError(AssocError):
    """A file could not be decoded as a usable photo."""


class GalleryError(AssocError):
    """A gallery cannot be opened or used as asked."""


class NoGalleryError(GalleryError):
    """A read-only command asked for a gallery or collection that does not exist (nothing indexed yet)."""


class GalleryNotEmptyError(GalleryError):
    """A new gallery was to be made in a folder that holds other things."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"{folder} is not an assoc gallery and is not empty")
        self.folder = folder


class ModelMismatchError(GalleryError):
    """A gallery was indexed with another model than the one asked to search it."""

    def __init__(self, folder: str, stored: str, wanted: str) -> None:
        super().__init__(f"gallery {folder} was indexed with model {stored}, not {wanted}")
        self.folder, self.stored, self.wanted = folder, stored, wanted


class GalleryDamagedError(GalleryError):
    """Stored data is missing or does not match what the gallery recorded of it."""

    def __init__(self, folder: Path, detail: str) -> None:
        super().__init__(f"gallery {folder} is damaged: {detail}")
        self.folder, self.detail = folder, detail


class DatabaseDamagedError(GalleryDamagedError):
    """The gallery's database itself is damaged (unreadable, or its tables and indexes disagree), not
    only some photos' stored bytes: dropping damaged photos cannot mend it; indexing into a new
    gallery can."""


class GalleryReadOnlyError(GalleryError):
    """A gallery that can be searched but not changed (a read-only disk, another user's folder)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"gallery {folder} is read-only: it can be searched, not changed")
        self.folder = folder


class GalleryBusyError(GalleryError):
    """Another process holds a gallery's write lock for longer than a writer waits."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"gallery {folder} is busy: another process is writing to it")
        self.folder = folder


class GalleryIndexingError(GalleryError):
    """Another process is indexing this gallery: one index run at a time (assoc.runtime.indexing.lock).

    pid is the other run's process id where it could be read."""

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        other = f"another process (pid {pid})" if pid else "another process"
        super().__init__(f"gallery {folder} is being indexed by {other}; wait for it or stop it")
        self.folder, self.pid = folder, pid


class DiskFullError(GalleryError):
    """The disk, quota or file size limit under a gallery left no room to store more.

    stored and total, when known, say how far an index run got: photos stored by this run, of the
    new and changed ones it set out to store. What was stored stays stored, and the gallery stays
    consistent, so indexing again once there is room goes on from there.
    """

    def __init__(self, where: str, stored: int | None = None, total: int | None = None) -> None:
        message = f"the disk holding gallery {where} is full"
        if stored is not None:
            message += (
                f": {stored} of {total} new or changed photos were stored before it filled; they stay"
                " indexed, and indexing again once there is room goes on from there"
            )
        super().__init__(message)
        self.where, self.stored, self.total = where, stored, total


class StoreConfigError(GalleryError):
    """A store description cannot name one store (for example Qdrant with neither a URL nor a folder)."""


class QueryError(AssocError):
    """A query cannot be run (empty text, unreadable query image, ...)."""
