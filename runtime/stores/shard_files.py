"""The built-in gallery's shard files: float16 rows of grids and first-stage vectors, and their checksums.

Bytes are only written at a shard's committed end and fsynced before the catalogue points at them
(see gallery.py for the write order); these are the file-level pieces of that.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress
from pathlib import Path

import numpy as np

from ..scoring.first_stage import PhotoVectors

SHARD_DIR = "shards"
SHARD_SUFFIX = ".f16"  # grids
POOL_SUFFIX = ".pool"  # pooled vectors
CENTROIDS_SUFFIX = ".cent"  # first-stage centroids
DTYPE = np.dtype("<f2")
# OS errors that mean: no room for more bytes (disk full, quota, file size limit).
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
LAYER_SUFFIXES = (SHARD_SUFFIX, POOL_SUFFIX, CENTROIDS_SUFFIX)
# float16 bytes of grids scored (and checksummed) in one kernel call: bounds a search's memory (the kernel
# widens a chunk to float32 and holds its matchmap) whatever the gallery's size. Chunks that stay in
# cache through checksum, widening and matmul are faster: 4 MiB measured best of 1-16 on 2 busy cores.
SEARCH_CHUNK_BYTES = 4 << 20


def row_checksums(blocks: list[np.ndarray]) -> np.ndarray:
    """One checksum per row over the bytes of all blocks (each (N, vectors, D) float16): the wrapping
    sum of the bytes read as little-endian 64-bit words (16-bit where a row's size is not a multiple
    of 8), as int64.

    Not crc32: a search verifies every row it scores, and this runs at memory bandwidth (about 25 GB/s
    against zlib.crc32's 1.6 here). It detects every single flipped bit, truncation and zeroed rows;
    flips cancel only in the rare case of equal bit positions flipped both ways within one row.
    """
    total = np.zeros(len(blocks[0]), np.uint64)
    for block in blocks:
        flat = np.ascontiguousarray(block).reshape(len(block), int(np.prod(block.shape[1:])))  # (0, x) too
        words = flat.view("<u8") if flat.shape[1] * flat.itemsize % 8 == 0 else flat.view("<u2")
        total += words.sum(axis=1, dtype=np.uint64)
    return total.view(np.int64)


def gather_rows(mm: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """mm[rows] for sorted rows: a view when they are consecutive, else a copy."""
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):
        return mm[int(rows[0]) : int(rows[-1]) + 1]
    return mm[rows]


def write_at(path: Path, offset: int, data: np.ndarray) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.ascontiguousarray(data).tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(folder: Path) -> None:
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


def unlink_quietly(path: Path) -> None:
    with suppress(OSError):  # already gone, or held open on Windows: harmless either way
        path.unlink()


def layer_rows(photos: list[PhotoVectors]) -> list[np.ndarray]:
    """Photos' vectors as the rows of each shard file (GalleryFiles.layers order), (N, vectors, D) float16."""
    grids = np.stack([p.grid for p in photos])
    n, h, w, d = grids.shape
    pooled = np.stack([p.pooled for p in photos])[:, None]
    centroids = np.stack([p.centroids for p in photos])
    return [grids.reshape(n, h * w, d).astype(DTYPE), pooled.astype(DTYPE), centroids.astype(DTYPE)]
