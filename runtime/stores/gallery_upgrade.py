"""The built-in gallery's format upgrades, in place, each in one transaction (a kill leaves the
format before it, which the next writable open upgrades again):

    1 -> 2   first-stage files and per-row checksums, derived from the stored grids
    2 -> 3   a column for each photo's date taken (NULL: unknown, read by the next index run)

Run by Gallery.open on an older gallery opened with write access, one step after another, on its
GalleryFiles (gallery_files.py).
"""

from __future__ import annotations

import numpy as np

from ..scoring.first_stage import photo_vectors
from .catalogue import reduction_json
from .gallery_files import GalleryFiles
from .shard_files import DTYPE, SHARD_DIR, fsync_dir, layer_rows, row_checksums, write_at


def upgrade(files: GalleryFiles, version: str) -> None:
    """Every step from `version` to the present format."""
    if version == "1":
        upgrade_format_1(files)
    upgrade_format_2(files)


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
    into new files, checksum each row. Rows whose grid bytes are gone are dropped (indexed again
    by the next run). A kill leaves format 1 (the new files are rewritten by the next attempt)."""
    with files.writing(upgrading=True):
        if _version(files) != "1":
            return  # another process upgraded it first
        files.db.execute("ALTER TABLE photos ADD COLUMN checksum INTEGER NOT NULL DEFAULT 0")
        for shard in files.shards():
            path = files.shard_path(shard.id)
            rows = min(shard.rows, (path.stat().st_size if path.is_file() else 0) // files.row_bytes(shard.grid))
            files.db.execute("DELETE FROM photos WHERE shard = ? AND row >= ?", (shard.id, rows))
            files.db.execute("UPDATE shards SET rows = ? WHERE id = ?", (rows, shard.id))
            for suffix, _ in files.layers(shard.grid)[1:]:
                files.layer_path(shard.id, suffix).write_bytes(b"")
            if not rows:
                continue
            grids = np.memmap(path, dtype=DTYPE, mode="r", shape=(rows, *shard.grid, files.embed_dim))
            step = files.step(shard.grid)
            for start in range(0, rows, step):
                layers = layer_rows(photo_vectors(np.asarray(grids[start : start + step]), files.first_stage))
                for (suffix, _), data in list(zip(files.layers(shard.grid), layers, strict=True))[1:]:
                    offset = start * files.row_bytes(shard.grid, suffix)
                    write_at(files.layer_path(shard.id, suffix), offset, data)
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
