"""The built-in gallery's catalogue: the SQLite database of what is known of each photo.

Its schema and format version, how it is created (atomically, under a lock on the folder), opened
(read-only where the folder cannot be written), and how SQLite's errors become typed errors. Paths
that are not valid UTF-8 are stored as their raw bytes (sql_path / path_of).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..encoding.bundle import FirstStageConfig
from ..errors import (
    DatabaseDamagedError,
    DiskFullError,
    GalleryBusyError,
    GalleryDamagedError,
    GalleryError,
    GalleryNotEmptyError,
    GalleryReadOnlyError,
    ModelMismatchError,
)
from .shard_files import NO_ROOM, SHARD_DIR, fsync_dir

FORMAT = "assoc-gallery"
FORMAT_VERSION = 5
# Upgraded in place on the first writable open (gallery_upgrade.py); a format 2, 3 or 4 gallery that cannot
# be written is searched as it is (a format 2 one with its photos' dates unknown; before 5, without cells).
UPGRADABLE_VERSIONS = ("1", "2", "3", "4")
DB_NAME = "gallery.sqlite"
BUSY_TIMEOUT_S = 60.0
CELLS_TABLE = (
    "CREATE TABLE IF NOT EXISTS cells (photos INTEGER NOT NULL, centroids BLOB NOT NULL, sha256 TEXT NOT NULL)"
)
# What a partitioned gallery's search reads its probed cells' rows through (gallery_snapshot.py), made
# by its first partition (and by the first writable open of a gallery partitioned before it existed).
CELL_INDEX = "CREATE INDEX IF NOT EXISTS photos_cell ON photos (cell, shard, row, checksum)"
_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE shards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grid_h INTEGER NOT NULL,
    grid_w INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    layout INTEGER NOT NULL  -- shard_files.LAYOUT_*: which files hold its rows
);
CREATE TABLE photos (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    grid_h INTEGER NOT NULL,
    grid_w INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    row INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    taken INTEGER,
    cell INTEGER  -- gallery_cells.py: the first stage's cell of its pooled vector (NULL: none yet)
);
{CELLS_TABLE};
CREATE INDEX photos_hash ON photos (content_hash);
CREATE INDEX photos_place ON photos (shard, row);
"""


try:
    import fcntl
except ImportError:  # Windows: creating one gallery from two processes at once is not guarded there
    fcntl = None  # type: ignore[assignment]


def sqlite_error(folder: Path, exc: sqlite3.Error) -> GalleryError:
    """One of SQLite's errors as the typed error a caller can act on; whatever is not about access,
    room or locks means the database file is damaged."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
    if code == sqlite3.SQLITE_FULL:
        return DiskFullError(str(folder))
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return GalleryBusyError(folder)
    if code == sqlite3.SQLITE_READONLY:
        return GalleryReadOnlyError(folder)
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return GalleryError(f"cannot open gallery {folder} ({exc})")
    if code == sqlite3.SQLITE_IOERR:
        return GalleryError(f"gallery {folder}: the disk failed a read or a write ({exc})")
    return DatabaseDamagedError(folder, f"its database cannot be read ({exc})")


def create_catalogue(folder: Path, bundle_id: str, embed_dim: int, first_stage: FirstStageConfig) -> None:
    """Make a new gallery in `folder` (made if missing; if it exists it must be empty).

    Two processes that start the same new gallery at once take turns on a lock held on the folder
    itself: the first makes the database, the second finds it made and opens it.
    """
    db = folder / DB_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with locked(folder):
            if db.is_file():
                return
            if any(folder.iterdir()):
                raise GalleryNotEmptyError(folder)
            conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                initialise(conn, bundle_id, embed_dim, first_stage)
            finally:
                conn.close()
            (folder / SHARD_DIR).mkdir(exist_ok=True)
            fsync_dir(folder)
    except sqlite3.Error as exc:
        raise sqlite_error(folder, exc) from None
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise DiskFullError(str(folder)) from None
        raise GalleryError(f"cannot create a gallery in {folder}: {exc.strerror or exc}") from None


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder between processes (flock on the folder; none where there is none)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with suppress(OSError):  # a file system without flock (some network shares): go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def connect(db: Path, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode; read-only for a gallery this process cannot write.

    SQLite opens a WAL database in a folder it cannot write only while its -shm file exists (a writer
    has it open). Without one, no writer is connected and every commit is in the database file, so it
    is read as immutable; unless a writer was killed on a disk since made read-only and left commits in
    the -wal file, which only a writable open can replay: that is an error, not a stale answer.
    """
    if not read_only:
        return sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    uri = db.absolute().as_uri()
    conn = sqlite3.connect(
        f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF != sqlite3.SQLITE_CANTOPEN:
            raise
    wal = db.with_name(db.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise GalleryError(
            f"gallery {db.parent} is read-only and holds commits in {wal.name} that only a writable open can"
            " replay: open it once where it can be written"
        )
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def is_blank(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0


def initialise(
    conn: sqlite3.Connection, bundle_id: str, embed_dim: int, first_stage: FirstStageConfig | None = None
) -> None:
    """Write the schema and the meta rows into a blank database, in WAL mode, in one transaction."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("format", FORMAT),
                ("format_version", str(FORMAT_VERSION)),
                ("bundle_id", bundle_id),
                ("embed_dim", str(embed_dim)),
                ("dtype", "int8"),
                ("first_stage", reduction_json(first_stage or FirstStageConfig())),
            ],
        )
    conn.execute("COMMIT")


def check_meta(folder: Path, meta: dict[str, str], bundle_id: str | None, embed_dim: int | None) -> tuple[str, int]:
    if meta.get("format") != FORMAT or "bundle_id" not in meta or "embed_dim" not in meta:
        raise GalleryError(f"{folder} is not an assoc gallery")
    if meta.get("format_version") not in (str(FORMAT_VERSION), *UPGRADABLE_VERSIONS):
        raise GalleryError(
            f"gallery {folder} has format version {meta.get('format_version')}; this assoc reads {FORMAT_VERSION}"
        )
    stored_id, stored_dim = meta["bundle_id"], int(meta["embed_dim"])
    if bundle_id is not None and bundle_id != stored_id:
        raise ModelMismatchError(str(folder), stored_id, bundle_id)
    if embed_dim is not None and embed_dim != stored_dim:
        raise GalleryError(f"gallery {folder} holds {stored_dim}-d vectors, the model gives {embed_dim}-d")
    return stored_id, stored_dim


def sql_path(path: str) -> str | bytes:
    """A path as SQLite stores it: text, or the raw bytes (a BLOB) of a name that is not valid UTF-8.

    os.fsdecode turns such a name into a str with lone surrogates, which SQLite's text cannot hold;
    its bytes can, and a lookup by the same path binds the same bytes, so it finds the row again.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def path_of(stored: str | bytes) -> str:
    """The path a row holds, as sql_path stored it."""
    if isinstance(stored, bytes):
        return os.fsdecode(stored)
    if not isinstance(stored, str):
        raise ValueError(f"a photo's path is stored as {type(stored).__name__}")
    return stored


def reduction_json(config: FirstStageConfig) -> str:
    return json.dumps({"vectors": config.vectors, "iterations": config.iterations})


def reduction_of(stored: str) -> FirstStageConfig:
    raw = json.loads(stored)
    return FirstStageConfig(vectors=int(raw["vectors"]), iterations=int(raw["iterations"]))


@contextmanager
def translated_errors(folder: Path, reading: bool = True) -> Iterator[None]:
    """SQLite errors and disk-full errors become typed errors naming the gallery; when reading, stored
    values that make no sense (a grid of a damaged shape, a row past a shard's end) are a
    GalleryDamagedError rather than whatever numpy raises about them."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise sqlite_error(folder, exc) from None
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise DiskFullError(str(folder)) from None
        raise
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError) as exc:
        if not reading:
            raise
        raise GalleryDamagedError(folder, f"a stored value makes no sense ({type(exc).__name__}: {exc})") from None
