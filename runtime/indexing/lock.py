"""One index run at a time per built-in gallery.

Two runs on one gallery at once would both encode every new photo (and store it twice, until
compaction). An index run holds an exclusive advisory lock (flock) on LOCK_NAME inside the gallery
folder from its walk to its last removal; a second run fails at once with a GalleryIndexingError
naming the first run's process id, which the lock file holds while the lock is held. The kernel
drops the lock when its holder exits in any way (kill -9 included), so a stale lock is never left.

Searches and `check` take no part: readers see committed rows only. A Qdrant store needs none (its
local mode locks its own folder; a server orders its own writes). Where there is no fcntl (Windows),
a file system without flock or a gallery that cannot be written (the store then refuses to change),
the run goes on unlocked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import GalleryIndexingError
from ..stores.base import Store

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "index.lock"


@contextmanager
def index_lock(store: Store) -> Iterator[None]:
    """Hold the store's index lock for the body of the with-block (see the module docstring)."""
    from ..stores.gallery import Gallery

    folder = store.folder if isinstance(store, Gallery) else None
    if fcntl is None or folder is None:
        yield
        return
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # read-only or not ours: nothing can be written, and the store says so
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GalleryIndexingError(Path(folder), _holder(fd)) from None
        except OSError:  # no flock on this file system (some network shares): unlocked, as before
            pass
        else:
            with suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with suppress(OSError):
                os.ftruncate(fd, 0)  # no stale pid once the lock is released
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> int | None:
    """The pid the lock holder wrote, or None (not yet written, or unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
