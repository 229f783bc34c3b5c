"""Matchmaps and the three image-caption scores of Harwath et al. (2018), in numpy.

A matchmap holds the dot product of every patch with every word. With L2-normalised vectors:
- MISA: each word takes its best patch, averaged over the words (ColBERT-style MaxSim; the default);
- SISA: the mean of the whole matchmap;
- MIMA: the single best patch-word pair.
assoc.models.matchmap holds the torch twin of these; a test keeps the two equal.
"""

from __future__ import annotations

import numpy as np

SCORES = ("misa", "sisa", "mima")


def matchmap(patches: np.ndarray, words: np.ndarray) -> np.ndarray:
    """patches (h, w, D) or (P, D), words (T, D) -> matchmap with shape patches.shape[:-1] + (T,)."""
    return np.asarray(patches, dtype=np.float32) @ np.asarray(words, dtype=np.float32).T


def score_grids(grids: np.ndarray, words: np.ndarray, kind: str = "misa") -> np.ndarray:
    """Scores of one query (T, D) against many grids (N, P, D), computed in float32 -> (N,)."""
    n, p, d = grids.shape
    mm = (np.asarray(grids, dtype=np.float32).reshape(n * p, d) @ np.asarray(words, np.float32).T).reshape(n, p, -1)
    if kind == "misa":
        return mm.max(axis=1).mean(axis=1)
    if kind == "sisa":
        return mm.mean(axis=(1, 2))
    if kind == "mima":
        return mm.max(axis=(1, 2))
    raise ValueError(f"unknown score kind {kind!r}; expected one of {SCORES}")
