"""The built-in gallery's format upgrades, in place, each in one transaction (a kill leaves the
format before it, which the next writable open upgrades again):

    1 -> 2   first-stage files and per-row checksums, derived from the stored grids
    2 -> 3   a column for each photo's date taken (NULL: unknown, read by the next index run)

Run by Gallery.open on an older gallery opened with write access, one step after another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..scoring.first_stage import photo_vectors
from .catalogue import reduction_json
from .shard_files import DTYPE, SHARD_DIR, fsync_dir, layer_rows, row_checksums, write_at

if TYPE_CHECKING:
    from .gallery import Gallery


def upgrade(gallery: Gallery, version: str) -> None:
    """Every step from `version` to the present format."""
    if version == "1":
        upgrade_format_1(gallery)
    upgrade_format_2(gallery)


def upgrade_format_2(gallery: Gallery) -> None:
    """Format 2 -> 3: the dates column, empty (an ALTER TABLE: nothing is read or rewritten)."""
    with gallery._writing(upgrading=True):
        if _version(gallery) != "2":
            return  # another process upgraded it first
        gallery._db.execute("ALTER TABLE photos ADD COLUMN taken INTEGER")
        gallery._db.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', '3')")


def _version(gallery: Gallery) -> str:
    return gallery._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]


def upgrade_format_1(gallery: Gallery) -> None:
    """Format 1 -> 2 in one transaction: derive every row's first-stage vectors from its stored grid
    into new files, checksum each row. Rows whose grid bytes are gone are dropped (indexed again
    by the next run). A kill leaves format 1 (the new files are rewritten by the next attempt)."""
    with gallery._writing(upgrading=True):
        if _version(gallery) != "1":
            return  # another process upgraded it first
        gallery._db.execute("ALTER TABLE photos ADD COLUMN checksum INTEGER NOT NULL DEFAULT 0")
        for shard in gallery._shards():
            path = gallery._shard_path(shard.id)
            rows = min(shard.rows, (path.stat().st_size if path.is_file() else 0) // gallery._row_bytes(shard.grid))
            gallery._db.execute("DELETE FROM photos WHERE shard = ? AND row >= ?", (shard.id, rows))
            gallery._db.execute("UPDATE shards SET rows = ? WHERE id = ?", (rows, shard.id))
            for suffix, _ in gallery._layers(shard.grid)[1:]:
                gallery._layer_path(shard.id, suffix).write_bytes(b"")
            if not rows:
                continue
            grids = np.memmap(path, dtype=DTYPE, mode="r", shape=(rows, *shard.grid, gallery.embed_dim))
            step = gallery._step(shard.grid)
            for start in range(0, rows, step):
                layers = layer_rows(photo_vectors(np.asarray(grids[start : start + step]), gallery.first_stage))
                for (suffix, _), data in list(zip(gallery._layers(shard.grid), layers, strict=True))[1:]:
                    offset = start * gallery._row_bytes(shard.grid, suffix)
                    write_at(gallery._layer_path(shard.id, suffix), offset, data)
                gallery._db.executemany(
                    "UPDATE photos SET checksum = ? WHERE shard = ? AND row = ?",
                    [(int(c), shard.id, start + j) for j, c in enumerate(row_checksums(layers))],
                )
            del grids
        fsync_dir(gallery.folder / SHARD_DIR)
        gallery._db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("format_version", "2"), ("first_stage", reduction_json(gallery.first_stage))],
        )
