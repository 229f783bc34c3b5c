"""Finding the photos under the files and folders a user names.

- Symbolic links to folders are followed, but every real folder is entered once (keyed by st_dev and
  st_ino), so link loops end and a folder linked twice is not indexed twice.
- Paths are absolute but not resolved: a photo keeps the path the user reaches it by (through a
  symlinked folder, say), which is the path a search shows and the path the next run compares with.
- Hidden entries (dot-names) and the metadata folders that NAS systems and OSes scatter through a
  library are skipped; `exclude` globs skip more. These rules apply below the named paths, never to a
  path the user named.
- assoc's own folders are never photos: a gallery (a folder holding a gallery database, with its
  shards and thumbnails) is not entered, nor assoc's per-user cache folder (the web app's thumbnails
  for other stores), wherever they sit; a named folder that is a gallery is skipped with that reason.
- Nothing here raises for a bad entry: an unreadable folder, a broken link or a missing root is
  recorded in `skipped` with a reason, and the walk goes on.
- A named folder with nothing visible in it (no entry but dot-names) is listed in `empty`: that is what
  an unmounted mount point or a disconnected share looks like, and the indexer keeps its photos.
- A RAW file (images.RAW_SUFFIXES) with a photo of another kind and the same name beside it (IMG_1.CR2
  and IMG_1.JPG, as cameras shooting RAW+JPEG write them) is left out, as rclip does: the JPEG is the
  photo as developed, and indexing both would list every such photo twice. Like the rules above, this
  applies below the named paths only.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..imaging.files import kind_of
from ..imaging.images import PHOTO_SUFFIXES, RAW_SUFFIXES
from ..stores.catalogue import DB_NAME

GALLERY_REASON = "an assoc gallery: its files are not photos"

# Compared case-insensitively with a folder's name.
METADATA_FOLDERS = frozenset(
    name.casefold()
    for name in (
        "@eaDir",  # Synology thumbnails and metadata
        "#recycle",  # Synology recycle bin
        "#snapshot",  # Synology snapshots
        "@Recycle",  # QNAP recycle bin
        "@Recently-Snapshot",  # QNAP snapshots
        ".@__thumb",  # QNAP thumbnails
        ".AppleDouble",
        ".Spotlight-V100",
        ".fseventsd",
        ".Trashes",
        "$RECYCLE.BIN",
        "System Volume Information",
        "__MACOSX",  # left by unzipping archives made on macOS
        ".thumbnails",
        "lost+found",
    )
)


@dataclass(frozen=True)
class PhotoFile:
    """A photo file found by the walk, with the stat fields the indexer compares."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    files: list[PhotoFile] = field(default_factory=list)  # sorted by path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    folders: list[str] = field(default_factory=list)  # the named folders that were walked
    empty: list[str] = field(default_factory=list)  # the named folders holding nothing visible

    def covers(self, path: str) -> bool:
        """Whether the walk looked where `path` is, so its absence means the photo is gone.

        False under a named path that was missing or under a folder that could not be read, so a
        photo is never forgotten because a disk was unmounted or a folder was briefly locked.
        """
        skipped = [p for p, _ in self.skipped]
        return any(_inside(path, f) for f in self.folders) and not any(path == p or _inside(path, p) for p in skipped)

    def empty_folder_of(self, path: str) -> str | None:
        """The named folder in `empty` that `path` lies under, if any."""
        return next((folder for folder in self.empty if _inside(path, folder)), None)


def walk(paths: Iterable[str | Path], exclude: Sequence[str] = (), include_hidden: bool = False) -> WalkResult:
    """All photo files (by suffix, case-insensitively) under `paths`, sorted by path."""
    result = WalkResult()
    found: dict[str, PhotoFile] = {}
    visited: set[tuple[int, int]] = set(_own_folders())  # taken as entered already: never walked
    for raw in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(raw)))
        try:
            st = os.stat(path)
        except OSError as exc:
            result.skipped.append((path, _reason(exc, path)))
            continue
        if stat.S_ISDIR(st.st_mode):
            result.folders.append(path)
            if _looks_empty(path):
                result.empty.append(path)
            _walk_folder(path, exclude, include_hidden, visited, found, result.skipped)
        elif not stat.S_ISREG(st.st_mode):
            result.skipped.append((path, _not_a_file(path)))
        elif not _is_photo_name(path):
            result.skipped.append((path, "not a photo file type"))
        else:
            found[path] = PhotoFile(path, st.st_size, st.st_mtime_ns)
    result.files = [found[p] for p in sorted(found)]
    return result


def _walk_folder(
    root: str,
    exclude: Sequence[str],
    include_hidden: bool,
    visited: set[tuple[int, int]],
    found: dict[str, PhotoFile],
    skipped: list[tuple[str, str]],
) -> None:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)  # a full stat: os.scandir leaves st_ino at 0 on Windows
            key = (st.st_dev, st.st_ino)
            if key in visited:
                continue
            visited.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append((folder, _reason(exc, folder)))
            continue
        if any(entry.name == DB_NAME and _is_file(entry) for entry in entries):  # a gallery: assoc's own files
            if folder == root:
                skipped.append((folder, GALLERY_REASON))
            continue
        subfolders = []
        developed = _developed_stems(entries, exclude, include_hidden)
        for entry in entries:
            if _ignored(entry.name, entry.path, exclude, include_hidden):
                continue
            if _is_raw_name(entry.name) and os.path.splitext(entry.name)[0] in developed:
                continue
            try:
                if entry.is_dir():
                    if entry.name.casefold() not in METADATA_FOLDERS:
                        subfolders.append(entry.path)
                    continue
                if not _is_photo_name(entry.name):
                    continue
                if not entry.is_file():
                    skipped.append((entry.path, _not_a_file(entry.path)))
                    continue
                st = entry.stat()
            except OSError as exc:
                if _is_photo_name(entry.name):
                    skipped.append((entry.path, _reason(exc, entry.path)))
                continue
            found[entry.path] = PhotoFile(entry.path, st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subfolders))


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _own_folders() -> list[tuple[int, int]]:
    """(st_dev, st_ino) of assoc's per-user cache folder, where it exists."""
    try:
        from platformdirs import user_cache_dir

        st = os.stat(user_cache_dir("assoc"))
    except (ImportError, OSError):
        return []
    return [(st.st_dev, st.st_ino)] if stat.S_ISDIR(st.st_mode) else []


def _looks_empty(folder: str) -> bool:
    """Whether a folder lists no entry but dot-names; a folder that cannot be listed is not empty (the
    walk records it in `skipped`, which already keeps its photos)."""
    try:
        with os.scandir(folder) as it:
            return all(entry.name.startswith(".") for entry in it)
    except OSError:
        return False


def _ignored(name: str, path: str, exclude: Sequence[str], include_hidden: bool) -> bool:
    if name.startswith(".") and not include_hidden:
        return True
    return any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(path, pat) for pat in exclude)


def _is_photo_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in PHOTO_SUFFIXES


def _is_raw_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in RAW_SUFFIXES


def _developed_stems(entries: list[os.DirEntry], exclude: Sequence[str], include_hidden: bool) -> set[str]:
    """The names (without suffix) of the photos in one folder that are not RAW files, where the walk
    takes them: a RAW file named like one of them is left out."""
    return {
        os.path.splitext(entry.name)[0]
        for entry in entries
        if _is_photo_name(entry.name)
        and not _is_raw_name(entry.name)
        and not _ignored(entry.name, entry.path, exclude, include_hidden)
        and _is_file(entry)
    }


def _inside(path: str, folder: str) -> bool:
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return path.startswith(prefix)


def _not_a_file(path: str) -> str:
    """Why an entry named like a photo is not read: what it is (a pipe, a device, through a link or not),
    or why it cannot be looked at (a broken link, a link loop)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _reason(exc, path)
    kind = kind_of(mode)
    return f"not a regular file (a link to {kind})" if os.path.islink(path) else f"not a regular file ({kind})"


def _reason(exc: OSError, path: str) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if isinstance(exc, FileNotFoundError):
        return "broken link" if os.path.islink(path) else "no such file or folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)
