"""The built-in gallery's folder as the layer beneath Gallery: its SQLite connection, the layout of
its shard files (paths, layers of a grid shape, row bytes, the rows of one search chunk, checksum
verification), its shard listing, and the write transaction, whose first of a session cleans up
after killed writers.

Gallery (gallery.py) builds on GalleryFiles and holds everything to one write order; the jobs it
runs on the folder (gallery_view.py, gallery_compaction.py, gallery_upgrade.py) take a GalleryFiles
and reach no higher.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoding.bundle import FirstStageConfig
from ..errors import GalleryDamagedError, GalleryError, GalleryReadOnlyError
from .shard_files import (
    LAYOUT_FLOAT16,
    LAYOUT_INT8,
    SEARCH_CHUNK_BYTES,
    SHARD_DIR,
    Layer,
    fsync_dir,
    row_checksums,
    shard_layers,
    unlink_quietly,
)


@dataclass(frozen=True)
class Shard:
    id: int
    grid: tuple[int, int]
    rows: int  # committed rows
    live: int  # rows that a photo points at
    layout: int = LAYOUT_INT8  # shard_files.LAYOUT_*: which files hold its rows


class GalleryFiles:
    """A gallery folder's connection and shard files, beneath Gallery."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, embed_dim: int) -> None:
        self.folder = folder
        self.embed_dim = embed_dim
        self._conn: sqlite3.Connection | None = conn
        self._cleaned = False
        self.read_only = False  # set by Gallery.open: a gallery this process may search but not change
        self.first_stage = FirstStageConfig()  # set by Gallery.open: the reduction stored, the search's candidates
        self.taken_column = "taken"  # the photos' dates as SQL; set to NULL by Gallery.open for format 2
        # What a search reads (gallery_snapshot.py): a write drops it, another connection's commit
        # shows in PRAGMA data_version. maps: each (shard, suffix) file's map.
        self.snapshot: object | None = None  # a gallery_snapshot.Snapshot (this layer only drops it)
        self.maps: dict[tuple[int, str], np.memmap] = {}

    def close(self) -> None:
        self.maps.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"gallery {self.folder} is closed")
        return self._conn

    # ------------------------------------------------------------------ shard files

    def layer_path(self, shard: int, suffix: str) -> Path:
        return self.folder / SHARD_DIR / f"{shard:05d}{suffix}"

    def layers(self, grid: tuple[int, int], layout: int = LAYOUT_INT8) -> tuple[Layer, ...]:
        """The files of a shard of this grid shape and layout, the grid's first (shard_files.shard_layers)."""
        return shard_layers(layout, grid[0] * grid[1], self.first_stage.vectors, self.embed_dim)

    def row_bytes(self, grid: tuple[int, int], layout: int = LAYOUT_INT8) -> int:
        """Bytes of one row of the grid's file (what a search's chunk and a shard's size are counted in)."""
        return self.layers(grid, layout)[0].row_bytes

    def step(self, grid: tuple[int, int], layout: int = LAYOUT_INT8) -> int:
        """Rows of this grid shape scored in one chunk."""
        return max(1, SEARCH_CHUNK_BYTES // self.row_bytes(grid, layout))

    def verify(self, blocks: list[np.ndarray], sums: np.ndarray, paths: list[str]) -> None:
        """Raise GalleryDamagedError naming the first photo whose rows (in blocks) do not match its checksum."""
        bad = np.flatnonzero(row_checksums(blocks) != sums)
        if len(bad):
            raise GalleryDamagedError(
                self.folder, f"the stored data of {paths[bad[0]]} does not match its checksum ({len(bad)} photos)"
            )

    def shards(self) -> list[Shard]:
        rows = self.db.execute(
            f"SELECT s.id, s.grid_h, s.grid_w, s.rows, COUNT(p.path), {self.layout_column} FROM shards s"
            " LEFT JOIN photos p ON p.shard = s.id GROUP BY s.id ORDER BY s.id"
        )
        return [Shard(i, (gh, gw), n, live, layout) for i, gh, gw, n, live, layout in rows]

    @property
    def layout_column(self) -> str:
        """The shards' layout as SQL: their column, or the float16 layout before format 4 added it."""
        found = self.db.execute("SELECT 1 FROM pragma_table_info('shards') WHERE name = 'layout'").fetchone()
        return "s.layout" if found else str(LAYOUT_FLOAT16)

    @property
    def cell_column(self) -> str:
        """The photos' cells as SQL: their column, or NULL before format 5 added it (read as it is, a
        gallery without cells: every pooled vector is read)."""
        found = self.db.execute("SELECT 1 FROM pragma_table_info('photos') WHERE name = 'cell'").fetchone()
        return "p.cell" if found else "NULL"

    def whole_rows(self, shards: Iterable[Shard]) -> dict[int, int]:
        """Rows of each shard whose bytes are all on disk, in every one of its files (a stat per file)."""
        out = {}
        for shard in shards:
            whole = shard.rows
            for layer in self.layers(shard.grid, shard.layout):
                path = self.layer_path(shard.id, layer.suffix)
                size = path.stat().st_size if path.is_file() else 0
                whole = min(whole, size // layer.row_bytes)
            out[shard.id] = whole
        return out

    # ------------------------------------------------------------------ writing

    @contextmanager
    def writing(self, upgrading: bool = False) -> Iterator[None]:
        """A write transaction under SQLite's write lock; grid bytes are written only inside one.
        The first of a session cleans up after killed writers, except the format upgrade's (the files
        it cleans up are made by the upgrade)."""
        if self.read_only:
            raise GalleryReadOnlyError(self.folder)
        self.db.execute("BEGIN IMMEDIATE")
        self.snapshot = None
        try:
            if not self._cleaned and not upgrading:
                self._drop_orphans()
            yield
        except BaseException:
            with suppress(sqlite3.Error):  # a failed rollback leaves the transaction to SQLite's recovery
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self._cleaned = self._cleaned or not upgrading

    def _drop_orphans(self) -> None:
        """Delete shard files no row names, drop the photos whose bytes a shard file lost (and its
        rows past them), and truncate bytes past each shard's committed end."""
        shards = {s.id: s for s in self.shards()}
        for path in (self.folder / SHARD_DIR).iterdir():
            shard = shards.get(int(path.stem)) if path.stem.isdigit() else None
            if shard is None or path.suffix not in {layer.suffix for layer in self.layers(shard.grid, shard.layout)}:
                unlink_quietly(path)
        whole = self.whole_rows(shards.values())
        for shard in shards.values():
            rows = min(shard.rows, whole[shard.id])
            if rows < shard.rows:
                self.db.execute("DELETE FROM photos WHERE shard = ? AND row >= ?", (shard.id, rows))
                self.db.execute("UPDATE shards SET rows = ? WHERE id = ?", (rows, shard.id))
            for layer in self.layers(shard.grid, shard.layout):
                path = self.layer_path(shard.id, layer.suffix)
                expected = rows * layer.row_bytes
                if not path.is_file():  # deleted: made again, empty (its photos were dropped above)
                    path.touch()
                if path.stat().st_size != expected:
                    with suppress(OSError):  # mapped by another process on Windows: the bytes stay harmless
                        os.truncate(path, expected)

    def new_shard(self, grid: tuple[int, int]) -> int:
        """A new shard of this grid shape in format 4's layout, its files empty (inside writing)."""
        shard = self.db.execute(
            "INSERT INTO shards (grid_h, grid_w, rows, layout) VALUES (?, ?, 0, ?)", (*grid, LAYOUT_INT8)
        ).lastrowid
        for layer in self.layers(grid):
            self.layer_path(shard, layer.suffix).write_bytes(b"")  # truncates what a killed writer left under this id
        fsync_dir(self.folder / SHARD_DIR)
        return shard
