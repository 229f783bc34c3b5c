"""Symmetric int8 codes of stored vectors and of a query's words: what the exact scan multiplies.

A photo's patch grid (P, D) is kept as int8 codes with ONE float16 scale for the whole grid, scale =
max |x| / 127 over its float16 values, code = rint(x / scale) in -127..127, stored offset by ZERO as
uint8 (code + 128): the uint8 x int8 product that ONNX Runtime's MatMulInteger runs fastest takes
its uint8 side with a zero point. First-stage centroids are kept the same way with a scale per
centroid vector. The pooled vector stays float16. bench/compact_grids.py chose this layout: it keeps
0.996 of the float16 exact top 10 on real grids, at half the bytes and 2.4-3.6x the scan speed.

Every function here is a pure function of its input's values (float32 arithmetic, divisions rather
than reciprocals, round half to even), so any store that keeps the float16 values makes the very
codes the gallery stores, and a grid dequantized to float32 quantizes back to the same codes and
scale (a scale that is a float16 subnormal, grids with max |x| under 8e-3, excepted).

A grid of zeros has scale 0 and codes 0. A grid holding NaN or infinity gets a scale that is not
finite (and codes 0), so every score of it is not a finite number and it is never a hit.
"""

from __future__ import annotations

import numpy as np

LEVELS = 127  # symmetric int8: codes -127..127
ZERO = 128  # the stored offset: uint8 = code + ZERO (MatMulInteger's zero point for the stored side)
CODES = np.dtype("u1")
SCALES = np.dtype("<f2")


def quantize_grids(grids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, P, D) grids (float16 as stored, or float32) -> codes (N, P, D) uint8, scales (N,) float16."""
    return _quantize(np.asarray(grids), axes=(-2, -1))


def as_scored(grid: np.ndarray) -> np.ndarray:
    """A photo's grid (h, w, D) as the exact score sees it, float32: its codes dequantized. The same for
    a float16 grid and for one dequantized already (those quantize to the same codes again), so every
    store shows a photo's maps and photo queries alike."""
    grid = np.asarray(grid)
    codes, scales = quantize_grids(grid.reshape(1, -1, grid.shape[-1]))
    return dequantize_grids(codes, scales)[0].reshape(grid.shape)


def quantize_vectors(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, D) vectors (a photo's centroids) -> codes (N, C, D) uint8, a scale per vector (N, C) float16."""
    return _quantize(np.asarray(vectors), axes=(-1,))


def dequantize_grids(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 values (N, P, D) that codes (N, P, D) with one scale per grid (N,) stand for (NaN
    throughout where the scale is not finite)."""
    with np.errstate(invalid="ignore"):
        return _values(codes) * np.asarray(scales, np.float32)[:, None, None]


def dequantize_vectors(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 values (N, C, D) of codes with one scale per vector (N, C)."""
    with np.errstate(invalid="ignore"):
        return _values(codes) * np.asarray(scales, np.float32)[..., None]


def quantize_query(query_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A query (D, T) float32 as int8 codes (D, T), a float32 scale per word (column) (T,): max |q_t| / 127
    (1 for a zero word, whose codes are 0). A query is checked finite (search/query.py)."""
    query_t = np.asarray(query_t, np.float32)
    scales = np.abs(query_t).max(axis=0) / np.float32(LEVELS)
    scales = np.where(scales > 0, scales, np.float32(1)).astype(np.float32)
    codes = np.clip(np.rint(query_t / scales), -LEVELS, LEVELS).astype(np.int8)
    return np.ascontiguousarray(codes), scales


def dequantize_query(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 query (D, T) that quantize_query's codes and word scales stand for."""
    return codes.astype(np.float32) * scales


def _values(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes).astype(np.float32) - np.float32(ZERO)


def _quantize(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of x (uint8, offset by ZERO) and a float16 scale per slice over `axes`; the codes are rounded
    against the scale as stored (float16), so dequantizing gives back what a search scores."""
    wide = x.astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        scales = (np.abs(wide).max(axis=axes, initial=0.0) / np.float32(LEVELS)).astype(SCALES)
        divisor = np.expand_dims(scales.astype(np.float32), axes)
        usable = np.isfinite(divisor) & (divisor > 0)  # zero grids and grids that are not numbers: codes 0
        codes = np.divide(wide, divisor, out=np.zeros_like(wide), where=usable)
        codes = np.clip(np.rint(codes, out=codes), -LEVELS, LEVELS, out=codes)
    return (codes + np.float32(ZERO)).astype(CODES), scales
