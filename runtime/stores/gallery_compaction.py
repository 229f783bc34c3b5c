"""Rewriting a shard's live rows into a new one: the built-in gallery's compaction, and the format 4
upgrade of a float16 shard.

Replaced and removed photos leave dead rows behind. When dead rows are over half of the shard bytes
and over COMPACT_MIN_BYTES, the shards that hold them are rewritten into new
shard files and the photos are repointed in one transaction; old files are deleted after the commit.
Shard ids are never reused, so a reader that still maps an old shard file never mistakes it for a new one.
It works on the gallery's GalleryFiles (gallery_files.py), run by Gallery after each add and remove.

A new shard always has format 4's layout: a float16 shard's rows are quantized on the way
(shard_files.int8_rows), which is how gallery_upgrade.py upgrades a shard; a row whose stored bytes
did not match its checksum keeps the mismatch (its new checksum is off by as much), so the damage
stays found and named rather than rewritten into a photo that looks whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .gallery_files import GalleryFiles, Shard
from .shard_files import (
    LAYER_SUFFIXES,
    LAYOUT_FLOAT16,
    SHARD_DIR,
    fsync_dir,
    int8_rows,
    row_checksums,
    unlink_quietly,
    write_at,
)

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
            freed += (shard.rows - shard.live) * files.row_bytes(shard.grid, shard.layout)
            gone += replace_shard(files, shard)
        fsync_dir(files.folder / SHARD_DIR)
    for path in gone:
        unlink_quietly(path)
    return freed


def replace_shard(files: GalleryFiles, shard: Shard) -> list[Path]:
    """Inside writing: copy a shard's live rows, in order, into a new shard (none if it has none), point
    the photos at it and drop the old shard; returns the old shard's files, to delete after the commit.
    Photos whose rows lie past the bytes the old files hold are dropped (the next index run encodes
    them again)."""
    whole = files.whole_rows([shard])[shard.id]
    files.db.execute("DELETE FROM photos WHERE shard = ? AND row >= ?", (shard.id, whole))
    live = files.db.execute(
        "SELECT path, row, checksum FROM photos WHERE shard = ? ORDER BY row", (shard.id,)
    ).fetchall()
    if live:
        _rewrite(files, shard, whole, live)
    files.db.execute("DELETE FROM shards WHERE id = ?", (shard.id,))
    return [files.layer_path(shard.id, suffix) for suffix in LAYER_SUFFIXES]


def _rewrite(files: GalleryFiles, shard: Shard, whole: int, live: list[tuple]) -> None:
    new = files.new_shard(shard.grid)
    layers = files.layers(shard.grid)
    sources = [
        np.memmap(files.layer_path(shard.id, layer.suffix), dtype=layer.dtype, mode="r", shape=(whole, *layer.shape))
        for layer in files.layers(shard.grid, shard.layout)
    ]
    step = files.step(shard.grid, shard.layout)
    sums = np.array([checksum for _, _, checksum in live], np.int64)
    for start in range(0, len(live), step):
        rows = [row for _, row, _ in live[start : start + step]]
        blocks = [np.asarray(source[rows]) for source in sources]
        if shard.layout == LAYOUT_FLOAT16:
            stored = sums[start : start + len(rows)].view(np.uint64)
            drift = stored - row_checksums(blocks).view(np.uint64)  # 0 for every row that was whole
            blocks = int8_rows(blocks[0], blocks[1][:, 0], blocks[2])
            sums[start : start + len(rows)] = (row_checksums(blocks).view(np.uint64) + drift).view(np.int64)
        for layer, data in zip(layers, blocks, strict=True):
            write_at(files.layer_path(new, layer.suffix), start * layer.row_bytes, data)
    del sources
    files.db.execute("UPDATE shards SET rows = ? WHERE id = ?", (len(live), new))
    files.db.executemany(
        "UPDATE photos SET shard = ?, row = ?, checksum = ? WHERE path = ?",
        [(new, i, int(checksum), path) for i, ((path, _, _), checksum) in enumerate(zip(live, sums, strict=True))],
    )


def maybe_compact(files: GalleryFiles) -> None:
    """Compact when dead rows are over half of the shard bytes and over COMPACT_MIN_BYTES."""
    shards = files.shards()
    total = sum(s.rows * files.row_bytes(s.grid, s.layout) for s in shards)
    dead = sum((s.rows - s.live) * files.row_bytes(s.grid, s.layout) for s in shards)
    if dead > COMPACT_MIN_BYTES and 2 * dead > total:
        compact_shards(files)
