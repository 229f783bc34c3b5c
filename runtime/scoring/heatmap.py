"""Where the words of a query land in a photo: per-word and phrase heatmaps and their peaks, as numbers.

A grid cell (i, j) of an (h, w) patch grid covers rows i*H/h..(i+1)*H/h and columns j*W/w..(j+1)*W/w
of a W x H photo, because the model input is the whole frame resized without keeping the aspect
ratio (see preprocess.py). A cell's value is therefore placed at its centre ((j+0.5)*W/w,
(i+0.5)*H/h) and the photo's pixels in between are interpolated bilinearly; pixels beyond the outer
cell centres take the value of the nearest edge cell.

Word maps may be smoothed (a box average over `smooth` x `smooth` cells, see
assoc.runtime.encoding.bundle.LocalizeConfig) before peaks are taken; word scores are always the raw
best cell, the number search ranks by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .matchmap import matchmap

if TYPE_CHECKING:  # only for the annotation: heatmaps need no ONNX Runtime
    from ..encoding.encoders import EncodedQuery


@dataclass(frozen=True)
class Heatmaps:
    """Grid-resolution maps of one query over one photo's patch grid."""

    words: list[str]
    word_maps: np.ndarray  # (n_words, h, w): per word, the mean of its word pieces' maps (smoothed, if asked)
    phrase_map: np.ndarray  # (h, w): mean of the word maps
    word_scores: np.ndarray  # (n_words,): per word, its best cell's value before smoothing

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.phrase_map.shape
        return h, w

    @property
    def score(self) -> float:
        """Phrase score: the mean over words of each word's best cell (MISA over words).

        Search ranks by MaxSim over word pieces; the two agree whenever no word is split into pieces.
        """
        return float(self.word_scores.mean())

    def word_peak(self, k: int) -> tuple[int, int]:
        """Best cell (i, j) of word k."""
        return best_cell(self.word_maps[k])

    @property
    def phrase_peak(self) -> tuple[int, int]:
        return best_cell(self.phrase_map)


def compute_heatmaps(grid: np.ndarray, query: EncodedQuery, smooth: int = 1) -> Heatmaps:
    """Patch grid (h, w, D) and an encoded query -> per-word and phrase maps at grid resolution,
    each word map box-smoothed over `smooth` x `smooth` cells (1 = as the matchmap has it)."""
    mm = matchmap(grid, query.vectors)  # (h, w, T)
    raw = np.stack([mm[..., query.token_word == k].mean(axis=-1) for k in range(len(query.words))]).astype(np.float32)
    word_maps = smooth_map(raw, smooth) if smooth > 1 else raw
    return Heatmaps(
        words=list(query.words),
        word_maps=word_maps,
        phrase_map=word_maps.mean(axis=0),
        word_scores=raw.reshape(len(query.words), -1).max(axis=1),
    )


def smooth_map(grid_map: np.ndarray, width: int) -> np.ndarray:
    """The mean over each cell's `width` x `width` neighbourhood (odd width); edge cells repeat outward.
    Maps (..., h, w) are smoothed over their last two axes, many at once."""
    r = width // 2
    h, w = grid_map.shape[-2:]
    lead = ((0, 0),) * (np.ndim(grid_map) - 2)
    padded = np.pad(np.asarray(grid_map, dtype=np.float32), (*lead, (r, r), (r, r)), mode="edge")
    rows = sum(padded[..., i : i + h, :] for i in range(width))
    return (sum(rows[..., j : j + w] for j in range(width)) / (width * width)).astype(np.float32)


def best_cell(grid_map: np.ndarray) -> tuple[int, int]:
    """(i, j) of the highest value; the first one in row-major order on ties."""
    i, j = np.unravel_index(int(np.argmax(grid_map)), grid_map.shape)
    return int(i), int(j)


def cell_to_pixel(cell: tuple[int, int], grid: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """Centre of grid cell (i, j) of an (h, w) grid, in pixels (x, y) of a photo of size (W, H)."""
    (i, j), (h, w), (width, height) = cell, grid, size
    x = min(int((j + 0.5) * width / w), width - 1)
    y = min(int((i + 0.5) * height / h), height - 1)
    return x, y


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights, input samples at cell centres (see module doc)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def upsample(grid_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grid map (h, w) -> float32 (height, width) for size=(width, height), bilinear between cell centres."""
    width, height = size
    h, w = grid_map.shape
    return _interp_matrix(height, h) @ np.asarray(grid_map, dtype=np.float32) @ _interp_matrix(width, w).T


def normalize(grid_map: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] within this map.

    A flat map (all cells within 1e-6, float32 noise for dot products of unit vectors: e.g. a blank
    photo or a zero grid) has no place that stands out, so it becomes all zeros rather than noise.
    """
    arr = np.asarray(grid_map, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 1e-6:
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)
