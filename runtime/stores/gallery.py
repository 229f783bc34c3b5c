"""The built-in store: a folder with SQLite for what is known of each photo and shard files for the
patch grids (int8 codes with a float16 scale per photo) and their first-stage vectors.

    gallery.sqlite       tables meta, shards, photos (WAL mode)
    shards/00001.i8      a row is one photo's grid flattened to (h*w, D), int8 codes + 128 (uint8);
                         all rows of a shard share one grid shape
    shards/00001.scale   row for row, the grid's scale (1,), float16 (scoring/quantize.py)
    shards/00001.pool    row for row, the photo's pooled vector (1, D), float16
    shards/00001.ci8     row for row, its first-stage centroids (C, D) as codes (scoring/first_stage.py)
    shards/00001.cscale  row for row, a scale per centroid (C,), float16

A shard written before format 4 holds float16 files instead (.f16, .pool, .cent: shard_files.py), until
the upgrade rewrites it; a search reads either, quantizing a float16 shard's rows as it reads them with
the same function, so a photo scores the same in both.

The database side lives in catalogue.py, the file side in shard_files.py. Beneath Gallery lies
gallery_files.py (GalleryFiles): the folder's connection, its shard files' layout, its shard listing
and the write transaction, whose first of a session recovers after a killed writer. The jobs run on
those GalleryFiles: what a search reads (a snapshot of the shards and the pooled -> centroid first
stage) in gallery_view.py over gallery_snapshot.py, which assoc.runtime.search ranks through, as it
ranks every store; compaction in gallery_compaction.py and the format upgrades in gallery_upgrade.py.
This module is the Gallery that builds on them and holds them to one write order: opening, records,
adding and removing, and checking.

Each photo's row carries a checksum of its bytes in all of its shard's files (row_checksums); every row whose
grid is read for a search is verified first, and a mismatch is a GalleryDamagedError naming the photo,
never a silently different answer. `check` verifies every row (and the database's own integrity).

Format 2 added the first-stage files and the checksums, format 3 each photo's date taken (the
photos table's `taken`, Unix seconds, for date filters; NULL until an index run reads it), format 4
the int8 layout (each shard's `layout`); an older gallery is upgraded in place the first time it is
opened with write access (gallery_upgrade.py), and a format 2 or 3 gallery (or one whose upgrade was
cut short) that cannot be written is searched as it is, its dates unknown in format 2, with a warning
line saying how to upgrade it. What a search reads of the database, and when, is
gallery_snapshot.py's: a filter (assoc.runtime.search.filters) picks rows by every row's path and
date, a search without one reads paths only for the photos it scores exactly.

Crash safety rests on one write order, always inside SQLite's write lock (BEGIN IMMEDIATE): grid
and first-stage bytes go to the shard files at their committed end and are fsynced, and only then are
the rows that point at them committed. A kill at any moment leaves committed rows pointing at written
bytes; what a killed writer left past a shard's committed end is overwritten by the next write and
truncated by the first write of the next session (GalleryFiles.writing), which also deletes shard
files that no committed row names. Because bytes are only written under the write lock, that cleanup
never races another writer. Shard files shorter than their committed rows (truncated or deleted by
something else) lose the photos whose bytes are gone: records() stops listing them at once, so the
next index run encodes them again, and its first write drops their rows.

Replaced and removed photos leave dead rows behind; gallery_compaction.py gives their bytes back.

Readers (another process searching during an index run) see committed rows only; they notice other
connections' commits through PRAGMA data_version and reload their view of the shards.

A Gallery may be used from several threads one call at a time: its caller serialises the calls
(assoc.api.Searcher does).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np

from ..encoding.bundle import FirstStageConfig
from ..errors import DatabaseDamagedError, GalleryDamagedError, GalleryError, NoGalleryError
from ..scoring.first_stage import PhotoVectors
from ..scoring.quantize import as_scored, dequantize_grids, dequantize_vectors
from ..search.filters import PhotoFilter
from .base import CheckReport, DamagedPhoto, PhotoRecord, checked_vectors
from .catalogue import (
    CELL_INDEX,
    DB_NAME,
    FORMAT_VERSION,
    UPGRADABLE_VERSIONS,
    check_meta,
    connect,
    create_catalogue,
    initialise,
    is_blank,
    locked,
    path_of,
    reduction_of,
    sql_path,
    sqlite_error,
    translated_errors,
)
from .gallery_cells import Cells, lacks_cell_index, load_cells, nearest_cells, needs_partition, partition
from .gallery_compaction import compact_shards, maybe_compact
from .gallery_files import GalleryFiles, Shard
from .gallery_snapshot import Part, current, layer_maps, parts
from .gallery_upgrade import upgrade
from .gallery_view import GalleryView
from .shard_files import (
    CODES_SUFFIX,
    GRID_SUFFIX,
    LAYER_SUFFIXES,
    LAYOUT_FLOAT16,
    LAYOUT_INT8,
    POOL_SUFFIX,
    SHARD_DIR,
    gather_rows,
    layer_rows,
    row_checksums,
    write_at,
)

MAX_SHARD_BYTES = 256 << 20  # a new shard file is started past this size


T = TypeVar("T")
P = ParamSpec("P")


def _guarded(method: Callable[Concatenate[Gallery, P], T]) -> Callable[Concatenate[Gallery, P], T]:
    """A public method that writes, its errors translated (translated_errors)."""

    @functools.wraps(method)
    def guarded(self: Gallery, *args: P.args, **kwargs: P.kwargs) -> T:
        with translated_errors(self.folder, reading=False):
            return method(self, *args, **kwargs)

    return guarded


def _guarded_read(method: Callable[Concatenate[Gallery, P], T]) -> Callable[Concatenate[Gallery, P], T]:
    """A public method that reads, its errors translated (translated_errors)."""

    @functools.wraps(method)
    def guarded(self: Gallery, *args: P.args, **kwargs: P.kwargs) -> T:
        with translated_errors(self.folder):
            return method(self, *args, **kwargs)

    return guarded


class Gallery(GalleryFiles):
    """A gallery folder for one model bundle; implements assoc.runtime.stores.base.Store."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, bundle_id: str, embed_dim: int) -> None:
        """Use Gallery.open."""
        super().__init__(folder, conn, embed_dim)
        self.bundle_id = bundle_id

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        folder: str | Path,
        bundle_id: str | None = None,
        embed_dim: int | None = None,
        create: bool = True,
        first_stage: FirstStageConfig | None = None,
    ) -> Gallery:
        """Open (or, with create and a bundle_id and embed_dim, start) the gallery in `folder`.

        bundle_id and embed_dim, when given, must match those the gallery was made with; leave them
        out to open a gallery whatever model made it (to describe it, say). first_stage is the
        bundle's (default: FirstStageConfig()): a new gallery stores its reduction; searches use its
        shortlist and candidates. A format 1 gallery is upgraded here (it needs write access).
        """
        folder = Path(folder).expanduser()
        db = folder / DB_NAME
        if folder.exists() and not folder.is_dir():
            raise GalleryError(f"gallery {folder} is a file, not a folder")
        can_create = create and bundle_id is not None and embed_dim is not None
        if not db.is_file():
            grids = [path for suffix in (CODES_SUFFIX, GRID_SUFFIX) for path in (folder / SHARD_DIR).glob("*" + suffix)]
            if grids:  # grids without the rows naming them
                raise DatabaseDamagedError(folder, f"its database {DB_NAME} is missing; only its shard files are there")
            if not can_create:
                raise NoGalleryError(f"no gallery at {folder} (nothing indexed there yet)")
            create_catalogue(folder, bundle_id, embed_dim, first_stage or FirstStageConfig())
        read_only = not (os.access(folder, os.W_OK) and os.access(db, os.W_OK))
        try:
            conn = connect(db, read_only)
        except sqlite3.Error as exc:
            raise sqlite_error(folder, exc) from None
        try:
            if not read_only:
                if can_create:
                    # Blank: killed before its first commit, or another process is making it right now
                    # (the database file exists before its schema does). create_catalogue holds this
                    # lock while it initialises, so the check waits for it rather than racing it.
                    with locked(folder):
                        if is_blank(conn):
                            initialise(conn, bundle_id, embed_dim, first_stage)
                (folder / SHARD_DIR).mkdir(exist_ok=True)
                conn.execute("PRAGMA synchronous=FULL")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
                raise GalleryError(f"{db} is not a readable assoc gallery (another program's database?)")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            gallery = cls(folder, conn, *check_meta(folder, meta, bundle_id, embed_dim))
        except sqlite3.Error as exc:
            conn.close()
            raise sqlite_error(folder, exc) from None
        except (ValueError, TypeError) as exc:  # meta values of the wrong kind
            conn.close()
            raise GalleryDamagedError(folder, f"its settings cannot be read ({exc})") from None
        except GalleryError:
            conn.close()
            raise
        except OSError as exc:  # the shards folder cannot be made
            conn.close()
            raise GalleryError(f"cannot open gallery {folder}: {exc.strerror or exc}") from None
        gallery.read_only = read_only
        try:
            gallery._adopt(meta, first_stage)
        except BaseException:
            gallery.close()
            raise
        return gallery

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    @_guarded_read
    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]

    @_guarded_read
    def records(self) -> dict[str, PhotoRecord]:
        """Every photo whose bytes are all on disk (one whose shard file was cut short is left out, so
        that an index run encodes it again)."""
        missing = self._missing()
        rows = self.db.execute(
            f"SELECT path, size, mtime_ns, content_hash, grid_h, grid_w, width, height, {self.taken_column} FROM photos"
        )
        records = (
            PhotoRecord(path_of(path), size, mtime, digest, (gh, gw), width, height, taken)
            for path, size, mtime, digest, gh, gw, width, height, taken in rows
        )
        return {r.path: r for r in records if r.path not in missing}

    @_guarded_read
    def record(self, path: str) -> PhotoRecord | None:
        row = self.db.execute(
            f"SELECT size, mtime_ns, content_hash, grid_h, grid_w, width, height, {self.taken_column} FROM photos"
            " WHERE path = ?",
            (sql_path(path),),
        ).fetchone()
        if row is None:
            return None
        size, mtime, digest, gh, gw, width, height, taken = row
        return PhotoRecord(path, size, mtime, digest, (gh, gw), width, height, taken)

    @_guarded_read
    def find_by_hash(self, content_hash: str) -> str | None:
        """Through the hash index, and a stat of the shard files of the photos found: a web app asks this
        for every thumbnail, so it never looks at the whole gallery."""
        rows = self.db.execute(
            f"SELECT p.path, p.row, s.id, s.grid_h, s.grid_w, s.rows, {self.layout_column} FROM photos p"
            " JOIN shards s ON s.id = p.shard WHERE p.content_hash = ? ORDER BY p.path",
            (content_hash,),
        ).fetchall()
        for path, row, shard, gh, gw, committed, layout in rows:
            if row < self.whole_rows([Shard(shard, (gh, gw), committed, 0, layout)])[shard]:
                return path_of(path)
        return None

    @_guarded_read
    def get_grid(self, path: str) -> np.ndarray | None:
        vectors = self.get_vectors(path)
        return None if vectors is None else as_scored(vectors.grid)

    def get_vectors(self, path: str) -> PhotoVectors | None:
        """A photo's stored vectors: the grid and centroids float32 as dequantized from their codes
        (float16 as stored, in a shard not yet upgraded), the pooled vector float16."""

        def read() -> PhotoVectors | None:
            row = self.db.execute(
                f"SELECT p.shard, p.row, p.grid_h, p.grid_w, p.checksum, {self.layout_column} FROM photos p"
                " JOIN shards s ON s.id = p.shard WHERE p.path = ?",
                (sql_path(path),),
            ).fetchone()
            if row is None:
                return None
            shard, index, gh, gw, checksum, layout = row
            blocks = []
            for layer in self.layers((gh, gw), layout):
                count = int(np.prod(layer.shape))
                flat = np.fromfile(
                    self.layer_path(shard, layer.suffix), dtype=layer.dtype, count=count, offset=index * layer.row_bytes
                )
                if flat.size != count:
                    raise GalleryDamagedError(self.folder, f"shard {shard} is too short for {path}")
                blocks.append(flat.reshape(1, *layer.shape))
            self.verify(blocks, np.array([checksum], np.int64), [path])
            if layout == LAYOUT_FLOAT16:
                grid, pooled, centroids = (block[0] for block in blocks)
            else:
                codes, scales, pooled, centroid_codes, centroid_scales = blocks
                grid = dequantize_grids(codes, scales[:, 0])[0]
                pooled, centroids = pooled[0], dequantize_vectors(centroid_codes, centroid_scales)[0]
            return PhotoVectors(grid.reshape(gh, gw, self.embed_dim), pooled[0], centroids)

        return self._retrying(read)

    @_guarded_read
    def open_view(self, where: PhotoFilter | None = None) -> GalleryView:
        """A snapshot of the committed photos for one search (assoc.runtime.search.pipeline), of those
        that meet `where` when it is given (its rows picked from the snapshot's paths and dates)."""
        view = self._retrying(lambda: GalleryView(self, current(self), where))
        if isinstance(damaged := view.snapshot.cells, GalleryDamagedError):
            said = f"{damaged}: every photo's pooled vector is read instead; `assoc check --repair` mends them"
            warnings.warn(said, stacklevel=2)
        return view

    @_guarded_read
    def check(self, repair: bool = False) -> CheckReport:
        """Verify every photo's stored bytes (shard file sizes, checksums, finite values); with repair,
        drop the rows of damaged photos so that the next index run encodes them again. The database
        itself is checked first (SQLite's integrity check): damage there is a DatabaseDamagedError,
        which dropping photos cannot mend."""
        found = [row[0] for row in self.db.execute("PRAGMA integrity_check").fetchall()]
        if found != ["ok"]:
            more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
            raise DatabaseDamagedError(self.folder, f"SQLite's integrity check says: {found[0]}{more}")
        damaged = [DamagedPhoto(p, f"its bytes are missing from shard {s}") for p, s in self._missing().items()]
        missing = {d.path for d in damaged}
        try:
            cells, cells_problem = load_cells(self), None
        except GalleryDamagedError as exc:
            cells, cells_problem = None, exc.detail
        misplaced = 0

        def mapped() -> list[tuple[Part, dict[str, np.memmap]]]:
            return [(part, layer_maps(self, part.shard, tolerant=True)) for part in parts(self, labels=True)]

        for part, layers in self._retrying(mapped):
            assert part.labels is not None
            step = self.step(part.shard.grid, part.shard.layout)
            for start in range(0, len(part.rows), step):
                rows = part.rows[start : start + step]
                paths = part.labels.paths[start : start + len(rows)]
                present = rows < min((mm.shape[0] for mm in layers.values()), default=0)
                blocks = [gather_rows(mm, rows[present]) for mm in layers.values()]
                sums = row_checksums(blocks)
                values = [
                    b.reshape(len(b), int(np.prod(b.shape[1:]))) for b in blocks if b.dtype.kind == "f"
                ]  # not codes
                finite = np.logical_and.reduce([np.isfinite(b).all(axis=1) for b in values])
                stored = part.sums[start : start + len(rows)][present]
                if cells is not None:
                    pooled = gather_rows(layers[POOL_SUFFIX], rows[present])[:, 0]
                    placed = part.cells[start : start + len(rows)][present]
                    misplaced += int((nearest_cells(pooled, cells) != placed).sum())
                kept = [path for path, here in zip(paths, present, strict=True) if here]
                for path, ok_sum, ok_values in zip(kept, sums == stored, finite, strict=True):
                    if path in missing:
                        continue
                    if not ok_sum:
                        damaged.append(DamagedPhoto(path, "its stored bytes do not match their checksum"))
                    elif not ok_values:
                        damaged.append(DamagedPhoto(path, "its stored values are not all finite numbers"))
        if misplaced:
            cells_problem = f"{misplaced} photos are not in the cell their pooled vector falls in"
        photos = len(self)
        if not repair:
            return CheckReport(photos, damaged, 0, cells_problem)
        if damaged:
            with self.writing():
                self.db.executemany("DELETE FROM photos WHERE path = ?", [(sql_path(d.path),) for d in damaged])
        if cells_problem is not None:
            self.partition()
        return CheckReport(photos, damaged, len(damaged), cells_problem, cells_problem is not None)

    def size_on_disk(self) -> int:
        """Bytes taken by the database (with its WAL) and the shard files."""
        files = [self.folder / (DB_NAME + suffix) for suffix in ("", "-wal", "-shm")]
        files += (f for f in (self.folder / SHARD_DIR).iterdir() if f.suffix in LAYER_SUFFIXES)
        return sum(f.stat().st_size for f in files if f.is_file())

    # ------------------------------------------------------------------ writing

    @_guarded
    def add(self, items: list[tuple[PhotoRecord, PhotoVectors | np.ndarray]]) -> None:
        """Insert or replace photos; durable on return (bytes fsynced, then rows committed).

        Each photo comes with its PhotoVectors (made where it was encoded), or a bare (h, w, D) grid that
        stands for a photo of a bundle without a global output (its vectors are made here, alike)."""
        if not items:
            return
        by_grid: dict[tuple[int, int], list[tuple[PhotoRecord, PhotoVectors]]] = {}
        for record, vectors in items:
            vectors = checked_vectors(record, vectors, self.embed_dim, self.first_stage)
            by_grid.setdefault(vectors.grid.shape[:2], []).append((record, vectors))
        with self.writing():
            cells = self._usable_cells()
            for grid_shape, group in by_grid.items():
                places = self._append(grid_shape, [v for _, v in group])
                found = nearest_cells(np.stack([v.pooled for _, v in group]), cells) if cells else [-1] * len(group)
                self.db.executemany(
                    "INSERT OR REPLACE INTO photos (path, size, mtime_ns, content_hash, grid_h, grid_w, width,"
                    " height, shard, row, checksum, taken, cell) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (sql_path(r.path), r.size, r.mtime_ns, r.content_hash, *grid_shape, r.width, r.height)
                        + (*place, r.taken, None if cell < 0 else int(cell))
                        for (r, _), place, cell in zip(group, places, found, strict=True)
                    ],
                )
        maybe_compact(self)
        self._maybe_partition()

    @_guarded
    def set_dates(self, dates: dict[str, int]) -> None:
        """Record photos' dates taken in one commit (rows only: no shard byte changes)."""
        if not dates:
            return
        with self.writing():
            self.db.executemany(
                "UPDATE photos SET taken = ? WHERE path = ?", [(int(t), sql_path(p)) for p, t in dates.items()]
            )

    @_guarded
    def remove(self, paths: list[str]) -> None:
        if not paths:
            return
        with self.writing():
            self.db.executemany("DELETE FROM photos WHERE path = ?", [(sql_path(p),) for p in paths])
        maybe_compact(self)

    @_guarded
    def partition(self) -> int:
        """Make the first stage's cells from the photos stored now and put each photo in its cell
        (gallery_cells.py), in one transaction; returns how many cells there are."""
        with self.writing():
            return len(partition(self))

    def cells(self) -> Cells | None:
        """The first stage's cells as stored, or None before the gallery was partitioned; cells whose
        bytes do not match their checksum are a GalleryDamagedError."""
        return load_cells(self)

    @_guarded
    def compact(self) -> int:
        """Rewrite every shard that holds dead rows; returns the bytes given back (gallery_compaction)."""
        return compact_shards(self)

    # ------------------------------------------------------------------ internals

    def _usable_cells(self) -> Cells | None:
        """Inside writing: the cells new photos are put in; none where they are damaged (those photos
        are then read by every search until `check --repair` partitions again)."""
        try:
            return load_cells(self)
        except GalleryDamagedError:
            return None

    def _maybe_partition(self) -> None:
        """Partition once the gallery is large enough, and again each time it has grown REGROWTH-fold."""
        if needs_partition(len(self), self._usable_cells(), self.first_stage.cells_from):
            self.partition()

    def _missing(self) -> dict[str, int]:
        """Photos whose rows lie past the bytes their shard files hold, with their shard."""
        rows = self.db.execute(f"SELECT id, grid_h, grid_w, rows, {self.layout_column} FROM shards s")  # not live
        shards = [Shard(i, (gh, gw), n, 0, layout) for i, gh, gw, n, layout in rows]
        short = [(s.id, n) for s in shards if (n := self.whole_rows([s])[s.id]) < s.rows]
        out: dict[str, int] = {}
        for shard, whole in short:
            rows = self.db.execute("SELECT path FROM photos WHERE shard = ? AND row >= ?", (shard, whole))
            out.update((path_of(path), shard) for (path,) in rows)
        return out

    def _append(self, grid: tuple[int, int], photos: list[PhotoVectors]) -> list[tuple[int, int, int]]:
        """Write photos' grids and first-stage vectors after the committed rows of this shape's newest
        shard; returns each photo's (shard, row, checksum)."""
        per_shard = max(1, MAX_SHARD_BYTES // self.row_bytes(grid))
        row = self.db.execute(  # never a shard of an older layout (its upgrade was cut short)
            f"SELECT id, rows FROM shards s WHERE grid_h = ? AND grid_w = ? AND {self.layout_column} = ?"
            " ORDER BY id DESC LIMIT 1",
            (*grid, LAYOUT_INT8),
        ).fetchone()
        shard, used = row if row is not None else (None, per_shard)
        layers = layer_rows(photos)
        sums = row_checksums(layers)
        places: list[tuple[int, int, int]] = []
        while len(places) < len(photos):
            if used >= per_shard:
                shard, used = self.new_shard(grid), 0
            done, take = len(places), min(len(photos) - len(places), per_shard - used)
            for layer, data in zip(self.layers(grid), layers, strict=True):
                write_at(self.layer_path(shard, layer.suffix), used * layer.row_bytes, data[done : done + take])
            self.db.execute("UPDATE shards SET rows = ? WHERE id = ?", (used + take, shard))
            places += [(shard, used + j, int(sums[done + j])) for j in range(take)]
            used += take
        return places

    @_guarded
    def _adopt(self, meta: dict[str, str], given: FirstStageConfig | None) -> None:
        """Take the first-stage reduction the gallery stores (a format 1 gallery: the given one, which
        it is upgraded to) and the search settings of the given config."""
        stored = meta.get("first_stage")
        try:
            reduction = reduction_of(stored) if stored else (given or FirstStageConfig())
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryDamagedError(self.folder, f"its first-stage settings cannot be read ({exc})") from None
        search = given or reduction
        self.first_stage = replace(search, vectors=reduction.vectors, iterations=reduction.iterations)
        version = meta["format_version"]
        if version == str(FORMAT_VERSION) and not self.read_only and lacks_cell_index(self):
            with self.writing():  # partitioned before the index existed; read as it is without write access
                self.db.execute(CELL_INDEX)
        unfinished = version == str(FORMAT_VERSION) and self._older_shards()
        if version not in UPGRADABLE_VERSIONS and not unfinished:
            return
        if not self.read_only:
            upgrade(self, version)
            return
        how = f"it is upgraded to {FORMAT_VERSION} in place the first time it is opened with permission to write to it"
        if version == "1":
            raise GalleryError(f"gallery {self.folder} has format version {version}; {how}")
        if version == "2":
            self.taken_column = "NULL"  # searched as it is: every date unknown
        said = (
            "was partly upgraded (some of its shards are still float16)"
            if unfinished
            else f"has format version {version}"
        )
        warnings.warn(f"gallery {self.folder} {said}: it is searched as it is; {how}", stacklevel=2)

    def _older_shards(self) -> bool:
        """Whether some shard still has a layout before format 4's (an upgrade cut short)."""
        found = self.db.execute(f"SELECT 1 FROM shards s WHERE {self.layout_column} != ? LIMIT 1", (LAYOUT_INT8,))
        return found.fetchone() is not None

    def _retrying(self, read: Callable[[], T]) -> T:
        """Run a read again if a compaction in another process deleted a shard file under it."""
        for _ in range(3):
            try:
                return read()
            except FileNotFoundError as exc:
                self.snapshot = None
                missing = exc.filename
        raise GalleryDamagedError(self.folder, f"{missing} is missing")
