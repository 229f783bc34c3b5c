"""The built-in gallery's format upgrades, in place:

    1 -> 2   first-stage files and per-row checksums, derived from the stored grids (one transaction)
    2 -> 3   a column for each photo's date taken (NULL: unknown, read by the next index run)
    3 -> 4   int8 grids and centroids (shard_files.LAYOUT_INT8): first the shards' `layout` column
             (every shard float16) and format version 4, in one transaction; then shard by shard, each
             in its own transaction, its rows quantized into a new shard's files, fsynced, and its
             photos pointed at them (gallery_compaction.replace_shard); the old files are deleted
             after each commit.
    4 -> 5   the first stage's cells (gallery_cells.py): the photos' `cell` column (NULL) and the empty
             `cells` table, in one transaction; a gallery large enough is partitioned by its next write

A kill leaves the format before the step (steps 1-3 and 4 -> 5), or a format 4 gallery some of whose shards are
still float16: it opens and searches as it is (a search quantizes those rows as it reads them, as the
upgrade stores them, so they score alike), the next writable open finishes the upgrade, and the first
write of a session deletes whatever files a killed step left that no shard names.

Run by Gallery.open on an older gallery opened with write access, one step after another, on its
GalleryFiles (gallery_files.py).
"""

from __future__ import annotations

import numpy as np

from ..scoring.first_stage import PhotoVectors, photo_vectors
from .catalogue import CELLS_TABLE, reduction_json
from .gallery_compaction import replace_shard
from .gallery_files import GalleryFiles
from .shard_files import (
    DTYPE,
    LAYOUT_FLOAT16,
    LAYOUT_INT8,
    SHARD_DIR,
    fsync_dir,
    row_checksums,
    unlink_quietly,
    write_at,
)


def upgrade(files: GalleryFiles, version: str) -> None:
    """Every step from `version` to the present format (and the rest of a 3 -> 4 step cut short)."""
    if version == "1":
        upgrade_format_1(files)
    upgrade_format_2(files)
    upgrade_format_3(files)
    upgrade_format_4(files)


def upgrade_format_4(files: GalleryFiles) -> None:
    """Format 4 -> 5: the cells' column and table, empty (nothing is read or rewritten)."""
    with files.writing(upgrading=True):
        if _version(files) != "4":
            return  # another process upgraded it first
        if files.cell_column == "NULL":
            files.db.execute("ALTER TABLE photos ADD COLUMN cell INTEGER")
        files.db.execute(CELLS_TABLE)
        files.db.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', '5')")


def upgrade_format_3(files: GalleryFiles) -> None:
    """Format 3 -> 4 (the module docstring), or what a killed one left undone."""
    with files.writing(upgrading=True):
        if _version(files) == "3":
            if files.layout_column == str(LAYOUT_FLOAT16):  # no column yet: every shard is float16
                files.db.execute(f"ALTER TABLE shards ADD COLUMN layout INTEGER NOT NULL DEFAULT {LAYOUT_FLOAT16}")
            files.db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [("format_version", "4"), ("dtype", "int8")]
            )
    files.maps.clear()  # Windows cannot delete a file that is still mapped
    for old in [s.id for s in files.shards() if s.layout != LAYOUT_INT8]:
        with files.writing(upgrading=True):
            shard = next((s for s in files.shards() if s.id == old and s.layout != LAYOUT_INT8), None)
            if shard is None:
                continue  # another process upgraded it first
            gone = replace_shard(files, shard)
            fsync_dir(files.folder / SHARD_DIR)
        for path in gone:
            unlink_quietly(path)


def upgrade_format_2(files: GalleryFiles) -> None:
    """Format 2 -> 3: the dates column, empty (an ALTER TABLE: nothing is read or rewritten)."""
    with files.writing(upgrading=True):
        if _version(files) != "2":
            return  # another process upgraded it first
        files.db.execute("ALTER TABLE photos ADD COLUMN taken INTEGER")
        files.db.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', '3')")


def _version(files: GalleryFiles) -> str:
    return files.db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]


def upgrade_format_1(files: GalleryFiles) -> None:
    """Format 1 -> 2 in one transaction: derive every row's first-stage vectors from its stored grid
    into new float16 files, checksum each row. Rows whose grid bytes are gone are dropped (indexed
    again by the next run). A kill leaves format 1 (the new files are rewritten by the next attempt)."""
    with files.writing(upgrading=True):
        if _version(files) != "1":
            return  # another process upgraded it first
        files.db.execute("ALTER TABLE photos ADD COLUMN checksum INTEGER NOT NULL DEFAULT 0")
        for shard in files.shards():
            grid, *first_stage = files.layers(shard.grid, LAYOUT_FLOAT16)
            path = files.layer_path(shard.id, grid.suffix)
            rows = min(shard.rows, (path.stat().st_size if path.is_file() else 0) // grid.row_bytes)
            files.db.execute("DELETE FROM photos WHERE shard = ? AND row >= ?", (shard.id, rows))
            files.db.execute("UPDATE shards SET rows = ? WHERE id = ?", (rows, shard.id))
            for layer in first_stage:
                files.layer_path(shard.id, layer.suffix).write_bytes(b"")
            if not rows:
                continue
            grids = np.memmap(path, dtype=DTYPE, mode="r", shape=(rows, *shard.grid, files.embed_dim))
            step = files.step(shard.grid, LAYOUT_FLOAT16)
            for start in range(0, rows, step):
                layers = _float16_rows(photo_vectors(np.asarray(grids[start : start + step]), files.first_stage))
                for layer, data in list(zip(files.layers(shard.grid, LAYOUT_FLOAT16), layers, strict=True))[1:]:
                    write_at(files.layer_path(shard.id, layer.suffix), start * layer.row_bytes, data)
                files.db.executemany(
                    "UPDATE photos SET checksum = ? WHERE shard = ? AND row = ?",
                    [(int(c), shard.id, start + j) for j, c in enumerate(row_checksums(layers))],
                )
            del grids
        fsync_dir(files.folder / SHARD_DIR)
        files.db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("format_version", "2"), ("first_stage", reduction_json(files.first_stage))],
        )


def _float16_rows(photos: list[PhotoVectors]) -> list[np.ndarray]:
    """Photos' vectors as the rows of a float16 shard's files (grid, pooled, centroids), as format 2 kept them."""
    grids = np.stack([p.grid for p in photos])
    n, h, w, d = grids.shape
    pooled = np.stack([p.pooled for p in photos])[:, None]
    centroids = np.stack([p.centroids for p in photos])
    return [grids.reshape(n, h * w, d).astype(DTYPE), pooled.astype(DTYPE), centroids.astype(DTYPE)]
