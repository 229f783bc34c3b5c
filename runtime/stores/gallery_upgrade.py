"""Format 1 -> 2 of the built-in gallery, in place: first-stage files and per-row checksums.

Run by Gallery.open on a format 1 gallery opened with write access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..scoring.first_stage import photo_vectors
from .catalogue import FORMAT_VERSION, reduction_json
from .shard_files import DTYPE, SHARD_DIR, fsync_dir, layer_rows, row_checksums, write_at

if TYPE_CHECKING:
    from .gallery import Gallery


def upgrade_format_1(gallery: Gallery) -> None:
    """Format 1 -> 2 in one transaction: derive every row's first-stage vectors from its stored grid
    into new files, checksum each row. Rows whose grid bytes are gone are dropped (indexed again
    by the next run). A kill leaves format 1 (the new files are rewritten by the next attempt)."""
    with gallery._writing(upgrading=True):
        if gallery._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == str(
            FORMAT_VERSION
        ):
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
            [("format_version", str(FORMAT_VERSION)), ("first_stage", reduction_json(gallery.first_stage))],
        )
