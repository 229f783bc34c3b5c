"""The built-in store: a folder with SQLite for what is known of each photo and float16 shard files
for the patch grids, searched by exact MaxSim with numpy.

    gallery.sqlite      tables meta, shards, photos (WAL mode)
    shards/00001.f16    little-endian float16 rows; a row is one photo's grid flattened to (h*w, D);
                        all rows of a shard share one grid shape

Crash safety rests on one write order, always inside SQLite's write lock (BEGIN IMMEDIATE): grid
bytes go to the shard at its committed end and are fsynced, and only then are the rows that point at
them committed. A kill at any moment leaves committed rows pointing at written bytes; what a killed
writer left past a shard's committed end is overwritten by the next write and truncated by the first
write of the next session, which also deletes shard files that no committed row names. Because bytes
are only written under the write lock, that cleanup never races another writer.

Replaced and removed photos leave dead rows behind. When dead rows are over half of the shard bytes
and over COMPACT_MIN_BYTES, the shards that hold them are rewritten into new shard files and the
photos are repointed in one transaction; old files are deleted after the commit. Shard ids are never
reused, so a reader that still maps an old shard file never mistakes it for a new one.

Readers (another process searching during an index run) see committed rows only; they notice other
connections' commits through PRAGMA data_version and reload their view of the shards.

One Gallery object belongs to one thread.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import GalleryDamagedError, GalleryError, GalleryNotEmptyError, ModelMismatchError, NoGalleryError
from ..scoring.matchmap import score_grids
from .base import PhotoRecord, SearchHit

FORMAT = "assoc-gallery"
FORMAT_VERSION = 1
DB_NAME = "gallery.sqlite"
SHARD_DIR = "shards"
SHARD_SUFFIX = ".f16"
DTYPE = np.dtype("<f2")
# Every float16 bit pattern's float32 value, exactly as numpy casts it. A search gathers from this table
# into its float32 buffer: on x86, where numpy's float16 cast has no SIMD loop, that measured 2-3x faster.
_BITS = np.dtype("<u2")
_FLOAT32_OF = np.arange(1 << 16, dtype=_BITS).view(DTYPE).astype(np.float32)
MAX_SHARD_BYTES = 256 << 20  # a new shard file is started past this size
COMPACT_MIN_BYTES = 64 << 20  # dead bytes below this are never worth a rewrite
# The float32 work buffer of a search. Smaller converts faster (in cache) but calls BLAS more often,
# and a multithreaded BLAS call on a busy machine costs a scheduler wait; 16 MiB measured best of 2-64.
SEARCH_CHUNK_BYTES = 16 << 20
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE shards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grid_h INTEGER NOT NULL,
    grid_w INTEGER NOT NULL,
    rows INTEGER NOT NULL
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
    row INTEGER NOT NULL
);
CREATE INDEX photos_hash ON photos (content_hash);
CREATE INDEX photos_place ON photos (shard, row);
"""

T = TypeVar("T")


@dataclass(frozen=True)
class _Shard:
    id: int
    grid: tuple[int, int]
    rows: int  # committed rows
    live: int  # rows that a photo points at


@dataclass(frozen=True)
class _Part:
    """The live rows of one shard, in row order, as a search reads them."""

    shard: int
    grid: tuple[int, int]
    committed: int
    rows: np.ndarray
    paths: list[str]


class Gallery:
    """A gallery folder for one model bundle; implements assoc.runtime.store.Store."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, bundle_id: str, embed_dim: int) -> None:
        """Use Gallery.open."""
        self.folder = folder
        self.bundle_id = bundle_id
        self.embed_dim = embed_dim
        self._conn: sqlite3.Connection | None = conn
        self._parts: list[_Part] | None = None
        self._data_version = -1
        self._maps: dict[int, np.memmap] = {}
        self._cleaned = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        folder: str | Path,
        bundle_id: str | None = None,
        embed_dim: int | None = None,
        create: bool = True,
    ) -> Gallery:
        """Open (or, with create and a bundle_id and embed_dim, start) the gallery in `folder`.

        bundle_id and embed_dim, when given, must match those the gallery was made with; leave them
        out to open a gallery whatever model made it (to describe it, say).
        """
        folder = Path(folder).expanduser()
        db = folder / DB_NAME
        if folder.exists() and not folder.is_dir():
            raise GalleryError(f"gallery {folder} is a file, not a folder")
        can_create = create and bundle_id is not None and embed_dim is not None
        if not db.is_file():
            if not can_create:
                raise NoGalleryError(f"no gallery at {folder} (index some photos into it first)")
            _create(folder, bundle_id, embed_dim)
        read_only = not (os.access(folder, os.W_OK) and os.access(db, os.W_OK))
        try:
            conn = _connect(db, read_only)
        except sqlite3.Error as exc:
            raise _sqlite_error(folder, exc) from None
        try:
            if not read_only:
                if _is_blank(conn) and can_create:  # killed before its first commit
                    _initialise(conn, bundle_id, embed_dim)
                (folder / SHARD_DIR).mkdir(exist_ok=True)
                conn.execute("PRAGMA synchronous=FULL")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            gallery = cls(folder, conn, *_check_meta(folder, meta, bundle_id, embed_dim))
        except sqlite3.Error as exc:
            conn.close()
            raise _sqlite_error(folder, exc) from None
        except (ValueError, TypeError) as exc:  # meta values of the wrong kind
            conn.close()
            raise GalleryDamagedError(folder, f"its settings cannot be read ({exc})") from None
        except (GalleryError, OSError):
            conn.close()
            raise
        gallery.read_only = read_only
        return gallery

    def close(self) -> None:
        self._maps.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]

    def records(self) -> dict[str, PhotoRecord]:
        rows = self._db.execute("SELECT path, size, mtime_ns, content_hash, grid_h, grid_w, width, height FROM photos")
        return {
            _path_of(path): PhotoRecord(_path_of(path), size, mtime, digest, (gh, gw), width, height)
            for path, size, mtime, digest, gh, gw, width, height in rows
        }

    def record(self, path: str) -> PhotoRecord | None:
        row = self._db.execute(
            "SELECT size, mtime_ns, content_hash, grid_h, grid_w, width, height FROM photos WHERE path = ?",
            (_sql_path(path),),
        ).fetchone()
        if row is None:
            return None
        size, mtime, digest, gh, gw, width, height = row
        return PhotoRecord(path, size, mtime, digest, (gh, gw), width, height)

    def find_by_hash(self, content_hash: str) -> str | None:
        row = self._db.execute(
            "SELECT path FROM photos WHERE content_hash = ? ORDER BY path LIMIT 1", (content_hash,)
        ).fetchone()
        return None if row is None else _path_of(row[0])

    def get_grid(self, path: str) -> np.ndarray | None:
        def read() -> np.ndarray | None:
            row = self._db.execute(
                "SELECT shard, row, grid_h, grid_w FROM photos WHERE path = ?", (_sql_path(path),)
            ).fetchone()
            if row is None:
                return None
            shard, index, gh, gw = row
            count = gh * gw * self.embed_dim
            flat = np.fromfile(self._shard_path(shard), dtype=DTYPE, count=count, offset=index * count * DTYPE.itemsize)
            if flat.size != count:
                raise GalleryDamagedError(self.folder, f"shard {shard} is too short")
            return flat.reshape(gh, gw, self.embed_dim).astype(np.float32)

        return self._retrying(read)

    def search(
        self, query: np.ndarray, k: int = 10, min_score: float | None = None, kind: str = "misa"
    ) -> list[SearchHit]:
        """Exact MaxSim (or SISA/MIMA) of the query vectors (T, D) against every photo; best first.

        Grids are read from the memory-mapped shards and widened to float32 a chunk at a time into
        one work buffer of about SEARCH_CHUNK_BYTES, reused for every chunk, so memory stays bounded
        whatever the gallery's size and no chunk pays for a fresh allocation. Equal scores are ordered
        by path, so a search is deterministic.
        """
        query = np.asarray(query, dtype=np.float32)
        if query.ndim != 2 or query.shape[1] != self.embed_dim:
            raise GalleryError(
                f"query vectors of shape {query.shape} do not fit this gallery's dimension {self.embed_dim}"
            )
        if k <= 0:
            return []
        parts, maps = self._retrying(self._snapshot)
        cells = [mm.shape[1] * mm.shape[2] for mm in maps]  # values in one photo's grid
        steps = [max(1, SEARCH_CHUNK_BYTES // (4 * c)) for c in cells]
        work = np.empty(max((s * c for s, c in zip(steps, cells, strict=True)), default=0), np.float32)
        scores: list[np.ndarray] = []
        paths: list[str] = []
        for part, mm, step in zip(parts, maps, steps, strict=True):
            for start in range(0, len(part.rows), step):
                rows = part.rows[start : start + step]
                first, last = int(rows[0]), int(rows[-1])
                block = mm[first : last + 1] if last - first + 1 == len(rows) else mm[rows]
                grids = work[: block.size].reshape(block.shape)
                np.take(_FLOAT32_OF, block.view(_BITS), out=grids, mode="clip")  # every index is in range
                scores.append(score_grids(grids, query, kind))
            paths.extend(part.paths)
        if not paths:
            return []
        return _top_k(np.concatenate(scores), paths, k, min_score)

    def size_on_disk(self) -> int:
        """Bytes taken by the database (with its WAL) and the shard files."""
        files = [self.folder / (DB_NAME + suffix) for suffix in ("", "-wal", "-shm")]
        files += (self.folder / SHARD_DIR).glob("*" + SHARD_SUFFIX)
        return sum(f.stat().st_size for f in files if f.is_file())

    # ------------------------------------------------------------------ writing

    def add(self, items: list[tuple[PhotoRecord, np.ndarray]]) -> None:
        """Insert or replace photos; durable on return (bytes fsynced, then rows committed)."""
        if not items:
            return
        by_grid: dict[tuple[int, int], list[tuple[PhotoRecord, np.ndarray]]] = {}
        for record, grid in items:
            grid = np.asarray(grid)
            if grid.ndim != 3 or grid.shape[2] != self.embed_dim:
                raise ValueError(f"{record.path}: grid of shape {grid.shape} does not fit dimension {self.embed_dim}")
            if tuple(record.grid) != grid.shape[:2]:
                raise ValueError(f"{record.path}: record says grid {record.grid}, the array is {grid.shape[:2]}")
            by_grid.setdefault(grid.shape[:2], []).append((record, grid))
        with self._writing():
            for grid_shape, group in by_grid.items():
                places = self._append(grid_shape, np.stack([g for _, g in group]))
                self._db.executemany(
                    "INSERT OR REPLACE INTO photos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (_sql_path(r.path), r.size, r.mtime_ns, r.content_hash, *grid_shape, r.width, r.height, *place)
                        for (r, _), place in zip(group, places, strict=True)
                    ],
                )
        self._maybe_compact()

    def remove(self, paths: list[str]) -> None:
        if not paths:
            return
        with self._writing():
            self._db.executemany("DELETE FROM photos WHERE path = ?", [(_sql_path(p),) for p in paths])
        self._maybe_compact()

    def compact(self) -> int:
        """Rewrite every shard that holds dead rows; returns the bytes given back."""
        self._maps.clear()  # Windows cannot delete a file that is still mapped
        gone: list[Path] = []
        freed = 0
        with self._writing():
            for shard in self._shards():
                if shard.live == shard.rows:
                    continue
                freed += (shard.rows - shard.live) * self._row_bytes(shard.grid)
                if shard.live:
                    self._rewrite(shard)
                self._db.execute("DELETE FROM shards WHERE id = ?", (shard.id,))
                gone.append(self._shard_path(shard.id))
            _fsync_dir(self.folder / SHARD_DIR)
        for path in gone:
            _unlink_quietly(path)
        return freed

    # ------------------------------------------------------------------ internals

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"gallery {self.folder} is closed")
        return self._conn

    def _shard_path(self, shard: int) -> Path:
        return self.folder / SHARD_DIR / f"{shard:05d}{SHARD_SUFFIX}"

    def _row_bytes(self, grid: tuple[int, int]) -> int:
        return grid[0] * grid[1] * self.embed_dim * DTYPE.itemsize

    def _shards(self) -> list[_Shard]:
        rows = self._db.execute(
            "SELECT s.id, s.grid_h, s.grid_w, s.rows, COUNT(p.path) FROM shards s"
            " LEFT JOIN photos p ON p.shard = s.id GROUP BY s.id ORDER BY s.id"
        )
        return [_Shard(i, (gh, gw), n, live) for i, gh, gw, n, live in rows]

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write transaction under SQLite's write lock; grid bytes are written only inside one."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise GalleryError(f"gallery {self.folder} is busy ({exc}); is another assoc writing to it?") from None
        self._parts = None
        try:
            if not self._cleaned:
                self._drop_orphans()
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._cleaned = True

    def _drop_orphans(self) -> None:
        """Delete shard files no row names and truncate bytes past each shard's committed end."""
        shards = {s.id: s for s in self._shards()}
        for path in (self.folder / SHARD_DIR).glob("*" + SHARD_SUFFIX):
            if not path.stem.isdigit() or int(path.stem) not in shards:
                _unlink_quietly(path)
        for shard in shards.values():
            path = self._shard_path(shard.id)
            expected = shard.rows * self._row_bytes(shard.grid)
            actual = path.stat().st_size if path.is_file() else 0
            if actual < expected:
                raise GalleryDamagedError(
                    self.folder, f"{path.name} holds {actual} bytes, its rows need {expected}"
                )
            if actual > expected:
                with suppress(OSError):  # mapped by another process on Windows: the bytes stay harmless
                    os.truncate(path, expected)

    def _append(self, grid: tuple[int, int], grids: np.ndarray) -> list[tuple[int, int]]:
        """Write grids (N, h, w, D) after the committed rows of this shape's newest shard."""
        row_bytes = self._row_bytes(grid)
        per_shard = max(1, MAX_SHARD_BYTES // row_bytes)
        row = self._db.execute(
            "SELECT id, rows FROM shards WHERE grid_h = ? AND grid_w = ? ORDER BY id DESC LIMIT 1", grid
        ).fetchone()
        shard, used = row if row is not None else (None, per_shard)
        data = grids.astype(DTYPE).reshape(len(grids), -1)
        places: list[tuple[int, int]] = []
        while len(places) < len(data):
            if used >= per_shard:
                shard, used = self._new_shard(grid), 0
            take = min(len(data) - len(places), per_shard - used)
            _write_at(self._shard_path(shard), used * row_bytes, data[len(places) : len(places) + take])
            self._db.execute("UPDATE shards SET rows = ? WHERE id = ?", (used + take, shard))
            places += [(shard, used + j) for j in range(take)]
            used += take
        return places

    def _new_shard(self, grid: tuple[int, int]) -> int:
        shard = self._db.execute("INSERT INTO shards (grid_h, grid_w, rows) VALUES (?, ?, 0)", grid).lastrowid
        self._shard_path(shard).write_bytes(b"")  # truncates what a killed writer left under this id
        _fsync_dir(self.folder / SHARD_DIR)
        return shard

    def _rewrite(self, shard: _Shard) -> None:
        """Copy a shard's live rows, in order, into a new shard and point the photos at it."""
        live = self._db.execute("SELECT path, row FROM photos WHERE shard = ? ORDER BY row", (shard.id,)).fetchall()
        new = self._new_shard(shard.grid)
        row_bytes = self._row_bytes(shard.grid)
        source = np.memmap(self._shard_path(shard.id), dtype=DTYPE, mode="r", shape=(shard.rows, row_bytes // 2))
        step = max(1, SEARCH_CHUNK_BYTES // row_bytes)
        for start in range(0, len(live), step):
            rows = [r for _, r in live[start : start + step]]
            _write_at(self._shard_path(new), start * row_bytes, np.asarray(source[rows]))
        del source
        self._db.execute("UPDATE shards SET rows = ? WHERE id = ?", (len(live), new))
        self._db.executemany(
            "UPDATE photos SET shard = ?, row = ? WHERE path = ?",
            [(new, i, path) for i, (path, _) in enumerate(live)],
        )

    def _maybe_compact(self) -> None:
        shards = self._shards()
        total = sum(s.rows * self._row_bytes(s.grid) for s in shards)
        dead = sum((s.rows - s.live) * self._row_bytes(s.grid) for s in shards)
        if dead > COMPACT_MIN_BYTES and 2 * dead > total:
            self.compact()

    def _snapshot(self) -> tuple[list[_Part], list[np.memmap]]:
        """The live rows of every shard and a map of each shard, reloaded after any commit."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if self._parts is None or version != self._data_version:
            self._parts, self._data_version = self._load_parts(), version
            keep = {p.shard for p in self._parts}
            self._maps = {i: m for i, m in self._maps.items() if i in keep}
        maps = []
        for part in self._parts:
            mm = self._maps.get(part.shard)
            if mm is None or mm.shape[0] < part.committed:
                h, w = part.grid
                try:
                    mm = np.memmap(
                        self._shard_path(part.shard),
                        dtype=DTYPE,
                        mode="r",
                        shape=(part.committed, h * w, self.embed_dim),
                    )
                except ValueError:  # numpy's word for a file shorter than the map
                    raise GalleryDamagedError(self.folder, f"shard {part.shard} is shorter than its rows") from None
                self._maps[part.shard] = mm
            maps.append(mm)
        return self._parts, maps

    def _load_parts(self) -> list[_Part]:
        rows = self._db.execute(
            "SELECT p.shard, s.grid_h, s.grid_w, s.rows, p.row, p.path FROM photos p"
            " JOIN shards s ON s.id = p.shard ORDER BY p.shard, p.row"
        ).fetchall()
        parts: list[_Part] = []
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or rows[end][0] != rows[start][0]:
                shard, gh, gw, committed = rows[start][:4]
                chunk = rows[start:end]
                paths = [_path_of(r[5]) for r in chunk]
                parts.append(_Part(shard, (gh, gw), committed, np.array([r[4] for r in chunk]), paths))
                start = end
        return parts

    def _retrying(self, read: Callable[[], T]) -> T:
        """Run a read again if a compaction in another process deleted a shard file under it."""
        for _ in range(3):
            try:
                return read()
            except FileNotFoundError as exc:
                self._parts = None
                missing = exc.filename
        raise GalleryDamagedError(self.folder, f"{missing} is missing")


def _initialise(conn: sqlite3.Connection, bundle_id: str, embed_dim: int) -> None:
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
                ("dtype", "float16"),
            ],
        )
    conn.execute("COMMIT")


def _check_meta(folder: Path, meta: dict[str, str], bundle_id: str | None, embed_dim: int | None) -> tuple[str, int]:
    if meta.get("format") != FORMAT or "bundle_id" not in meta or "embed_dim" not in meta:
        raise GalleryError(f"{folder} is not an assoc gallery")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise GalleryError(
            f"gallery {folder} has format version {meta.get('format_version')}; this assoc reads {FORMAT_VERSION}"
        )
    stored_id, stored_dim = meta["bundle_id"], int(meta["embed_dim"])
    if bundle_id is not None and bundle_id != stored_id:
        raise ModelMismatchError(str(folder), stored_id, bundle_id)
    if embed_dim is not None and embed_dim != stored_dim:
        raise GalleryError(f"gallery {folder} holds {stored_dim}-d vectors, the model gives {embed_dim}-d")
    return stored_id, stored_dim


def _sql_path(path: str) -> str | bytes:
    """A path as SQLite stores it: text, or the raw bytes (a BLOB) of a name that is not valid UTF-8.

    os.fsdecode turns such a name into a str with lone surrogates, which SQLite's text cannot hold;
    its bytes can, and a lookup by the same path binds the same bytes, so it finds the row again.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _path_of(stored: str | bytes) -> str:
    """The path a row holds, as _sql_path stored it."""
    return os.fsdecode(stored) if isinstance(stored, bytes) else stored


def _top_k(scores: np.ndarray, paths: list[str], k: int, min_score: float | None) -> list[SearchHit]:
    """The k best (score, path), ties by path; every candidate tied with the k-th is kept until sorted."""
    keep = np.arange(len(scores)) if min_score is None else np.flatnonzero(scores >= min_score)
    if len(keep) > k:
        cut = len(keep) - k
        kth = np.partition(scores[keep], cut)[cut]
        keep = keep[scores[keep] >= kth]
    best = sorted(keep.tolist(), key=lambda i: (-scores[i], paths[i]))[:k]
    return [SearchHit(paths[i], float(scores[i])) for i in best]


def _write_at(path: Path, offset: int, data: np.ndarray) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.ascontiguousarray(data).tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable (POSIX; Windows cannot open a folder for this)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with suppress(OSError):  # already gone, or held open on Windows: harmless either way
        path.unlink()
