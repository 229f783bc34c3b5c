"""The exact score's plain definition, for tests to check every store and kernel against: float32
numpy over the values a search scores, the grids as the gallery stores them (int8 codes with a scale
per photo, dequantized) and the query's words as the scan multiplies them (int8 per word, dequantized).
assoc.runtime.scoring.quantize is the one home of both quantizations."""

from __future__ import annotations

import numpy as np

from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.scoring.quantize import dequantize_grids, dequantize_query, quantize_grids, quantize_query


def as_stored(grids: np.ndarray) -> np.ndarray:
    """Grids (N, ..., D) as a store scores them: float16, quantized, dequantized to float32 (same shape)."""
    grids = np.asarray(grids)
    flat = grids.astype(np.float16).reshape(len(grids), -1, grids.shape[-1])
    return dequantize_grids(*quantize_grids(flat)).reshape(grids.shape)


def as_scored(query: np.ndarray) -> np.ndarray:
    """A query's vectors (T, D) as the exact scan multiplies them (quantized per word, dequantized)."""
    query_t = np.ascontiguousarray(np.asarray(query, np.float32).T)
    return np.ascontiguousarray(dequantize_query(*quantize_query(query_t)).T)


def exact_scores(grids: np.ndarray, query: np.ndarray, kind: str = "misa") -> np.ndarray:
    """(N,) exact local scores of grids (N, ..., D) as encoded (float16 or float32) for query vectors (T, D)."""
    stored = as_stored(grids)
    return score_grids(stored.reshape(len(stored), -1, stored.shape[-1]), as_scored(query), kind)
