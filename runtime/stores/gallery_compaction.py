"""Giving back the bytes of replaced and removed photos: the built-in gallery's compaction.

Replaced and removed photos leave dead rows behind. When dead rows are over half of the shard bytes
and over COMPACT_MIN_BYTES, the shards that hold them are rewritten into new
shard files and the photos are repointed in one transaction; old files are deleted after the commit.
Shard ids are never reused, so a reader that still maps an old shard file never mistakes it for a new one.
It works on the gallery's GalleryFiles (gallery_files.py), run by Gallery after each add and remove.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .gallery_files import GalleryFiles, Shard
from .shard_files import DTYPE, LAYER_SUFFIXES, SHARD_DIR, fsync_dir, unlink_quietly, write_at

COMPACT_MIN_BYTES = 64 << 20  # dead bytes below this are never worth a rewrite


def compact_shards(files: GalleryFiles) -> int:
    """Rewrite every shard that holds dead rows; returns the bytes given back."""
    files.maps.clear()  # Windows cannot delete a file that is still mapped
    gone: list[Path] = []
    freed = 0
    with files.writing():
        for shard in files.shards():
            if shard.live == shard.rows:
                continue
            freed += (shard.rows - shard.live) * files.row_bytes(shard.grid)
            if shard.live:
                _rewrite(files, shard)
            files.db.execute("DELETE FROM shards WHERE id = ?", (shard.id,))
            gone += [files.layer_path(shard.id, suffix) for suffix in LAYER_SUFFIXES]
        fsync_dir(files.folder / SHARD_DIR)
    for path in gone:
        unlink_quietly(path)
    return freed


def _rewrite(files: GalleryFiles, shard: Shard) -> None:
    """Copy a shard's live rows, in order, into a new shard and point the photos at it."""
    live = files.db.execute("SELECT path, row FROM photos WHERE shard = ? ORDER BY row", (shard.id,)).fetchall()
    new = files.new_shard(shard.grid)
    step = files.step(shard.grid)
    for suffix, vectors in files.layers(shard.grid):
        path, shape = files.layer_path(shard.id, suffix), (shard.rows, vectors * files.embed_dim)
        source = np.memmap(path, dtype=DTYPE, mode="r", shape=shape)
        row_bytes = files.row_bytes(shard.grid, suffix)
        for start in range(0, len(live), step):
            rows = [r for _, r in live[start : start + step]]
            write_at(files.layer_path(new, suffix), start * row_bytes, np.asarray(source[rows]))
        del source
    files.db.execute("UPDATE shards SET rows = ? WHERE id = ?", (len(live), new))
    files.db.executemany(
        "UPDATE photos SET shard = ?, row = ? WHERE path = ?",
        [(new, i, path) for i, (path, _) in enumerate(live)],
    )


def maybe_compact(files: GalleryFiles) -> None:
    """Compact when dead rows are over half of the shard bytes and over COMPACT_MIN_BYTES."""
    shards = files.shards()
    total = sum(s.rows * files.row_bytes(s.grid) for s in shards)
    dead = sum((s.rows - s.live) * files.row_bytes(s.grid) for s in shards)
    if dead > COMPACT_MIN_BYTES and 2 * dead > total:
        compact_shards(files)
