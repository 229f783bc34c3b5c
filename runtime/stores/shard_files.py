"""The built-in gallery's shard files: the layers of a shard's rows, their layouts, and their checksums.

A shard's rows are one photo each, in several files (layers) row for row. Two layouts:

    LAYOUT_INT8 (format 4; every new shard)           LAYOUT_FLOAT16 (formats 1-3; upgraded in place)
    .i8      grid codes (h*w, D) uint8                .f16    grid (h*w, D) float16
    .scale   the grid's scale (1,) float16            .pool   pooled vector (1, D) float16
    .pool    pooled vector (1, D) float16             .cent   centroids (C, D) float16
    .ci8     centroid codes (C, D) uint8
    .cscale  a scale per centroid (C,) float16

Codes are int8 + 128 with float16 scales (scoring/quantize.py). Bytes are only written at a shard's
committed end and fsynced before the catalogue points at them (see gallery.py for the write order);
these are the file-level pieces of that.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..scoring.first_stage import PhotoVectors
from ..scoring.quantize import CODES, SCALES, quantize_grids, quantize_vectors

SHARD_DIR = "shards"
LAYOUT_FLOAT16 = 3  # the shards of formats 1-3 (the format that last wrote them)
LAYOUT_INT8 = 4  # format 4's
GRID_SUFFIX = ".f16"  # float16 grids (LAYOUT_FLOAT16)
POOL_SUFFIX = ".pool"  # pooled vectors (both layouts)
CENTROIDS_SUFFIX = ".cent"  # float16 first-stage centroids (LAYOUT_FLOAT16)
CODES_SUFFIX = ".i8"  # grid codes (LAYOUT_INT8)
SCALES_SUFFIX = ".scale"  # the grid's scale
CENTROID_CODES_SUFFIX = ".ci8"  # centroid codes
CENTROID_SCALES_SUFFIX = ".cscale"  # their scales
DTYPE = np.dtype("<f2")  # float16 layers
# OS errors that mean: no room for more bytes (disk full, quota, file size limit).
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
LAYER_SUFFIXES = (
    GRID_SUFFIX,
    POOL_SUFFIX,
    CENTROIDS_SUFFIX,
    CODES_SUFFIX,
    SCALES_SUFFIX,
    CENTROID_CODES_SUFFIX,
    CENTROID_SCALES_SUFFIX,
)
# Stored grid bytes scored (and checksummed) in one kernel call: bounds a search's memory whatever the
# gallery's size (an int8 chunk holds twice the photos of a float16 one). Chunks that stay in cache
# through checksum and matmul are faster: 4 MiB measured best of 1-16 on 2 busy cores (float16).
SEARCH_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class Layer:
    """One file of a shard: its suffix, a row's shape and its element type."""

    suffix: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


def shard_layers(layout: int, patches: int, centroids: int, embed_dim: int) -> tuple[Layer, ...]:
    """The files of a shard of this layout, the grid first (the order of layer_rows and the checksums)."""
    if layout == LAYOUT_FLOAT16:
        return (
            Layer(GRID_SUFFIX, (patches, embed_dim), DTYPE),
            Layer(POOL_SUFFIX, (1, embed_dim), DTYPE),
            Layer(CENTROIDS_SUFFIX, (centroids, embed_dim), DTYPE),
        )
    if layout == LAYOUT_INT8:
        return (
            Layer(CODES_SUFFIX, (patches, embed_dim), CODES),
            Layer(SCALES_SUFFIX, (1,), SCALES),
            Layer(POOL_SUFFIX, (1, embed_dim), DTYPE),
            Layer(CENTROID_CODES_SUFFIX, (centroids, embed_dim), CODES),
            Layer(CENTROID_SCALES_SUFFIX, (centroids,), SCALES),
        )
    raise ValueError(f"unknown shard layout {layout}")


def row_checksums(blocks: list[np.ndarray]) -> np.ndarray:
    """One checksum per row over the bytes of all blocks (each (N, ...), a shard's layers): the wrapping
    sum of the bytes read as little-endian 64-bit words (16-bit where a row's size is not a multiple
    of 8, bytes where it is odd), as int64.

    Not crc32: a search verifies every row it scores, and this runs at memory bandwidth (about 25 GB/s
    against zlib.crc32's 1.6 here). It detects every single flipped bit, truncation and zeroed rows;
    flips cancel only in the rare case of equal bit positions flipped both ways within one row.
    """
    total = np.zeros(len(blocks[0]), np.uint64)
    for block in blocks:
        flat = np.ascontiguousarray(block).reshape(len(block), int(np.prod(block.shape[1:])))  # (0, x) too
        size = flat.shape[1] * flat.itemsize
        words = flat.view("<u8" if size % 8 == 0 else "<u2" if size % 2 == 0 else "u1")
        total += words.sum(axis=1, dtype=np.uint64)
    return total.view(np.int64)


def gather_rows(mm: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """mm[rows] for sorted rows: a view when they are consecutive, else a copy."""
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):
        return mm[int(rows[0]) : int(rows[-1]) + 1]
    return mm[rows]


def prefetch_rows(path: Path, rows: np.ndarray, row_bytes: int) -> None:
    """Ask the operating system to read these rows (sorted) of a shard file into its page cache, all at
    once and without waiting: a search's candidates lie scattered over a gallery larger than memory,
    and a map faults them in one at a time, waiting on the disk for each (~200 photos, 1.2-1.4 s from
    a disk at 10^6 photos). Consecutive rows are asked for as one range. Where the system has no such
    advice (Windows), or the file cannot be opened, nothing is asked."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None or not len(rows):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        for first, count in row_runs(rows):
            advise(fd, first * row_bytes, count * row_bytes, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def row_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted rows as runs of consecutive rows: (first row, rows in the run)."""
    runs: list[tuple[int, int]] = []
    for row in rows.tolist():  # a search asks for a few rows at a time: a loop beats numpy's set-up
        if runs and runs[-1][0] + runs[-1][1] == row:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((row, 1))
    return runs


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
    """Photos' vectors as the rows of each LAYOUT_INT8 file (shard_layers order): grid codes (N, P, D),
    scales (N, 1), pooled vectors (N, 1, D), centroid codes (N, C, D) and their scales (N, C)."""
    grids = np.stack([p.grid for p in photos])
    n, h, w, d = grids.shape
    return int8_rows(
        grids.reshape(n, h * w, d), np.stack([p.pooled for p in photos]), np.stack([p.centroids for p in photos])
    )


def int8_rows(grids: np.ndarray, pooled: np.ndarray, centroids: np.ndarray) -> list[np.ndarray]:
    """LAYOUT_INT8 rows of grids (N, P, D), pooled vectors (N, D) and centroids (N, C, D), float16 as
    encoded or as a LAYOUT_FLOAT16 shard holds them (or float32 dequantized: the same codes again)."""
    codes, scales = quantize_grids(grids)
    centroid_codes, centroid_scales = quantize_vectors(centroids)
    pooled = np.asarray(pooled).reshape(len(pooled), 1, -1).astype(DTYPE)
    return [codes, scales.reshape(-1, 1), pooled, centroid_codes, centroid_scales]
