"""Words that carry meaning: a per-token weight inside MISA, the same in training and in every store.

Plain MISA averages each word piece's best-patch score, so "a", "the" and "of" weigh as much as
"giraffe". A bundle may carry a table of one weight per token id (an IDF prior from its training
captions: w = log((N + 1) / (df + 1)) + 1, never below 1), and MISA becomes the weighted mean

    score = sum_t w_t * max_p (q_t . p) / sum_t w_t.

Because every weight is positive, w_t * max_p (q_t . p) = max_p ((w_t q_t) . p): the weights fold
into the query vectors (fold_weights), each scaled by T * w_t / sum(w). Every kernel, store and
first stage that computes mean-over-words MaxSim then computes the weighted score with no change,
and the mean of the folded vectors is the weighted mean of the words (the pooled query vector).
Word maps and heatmaps keep the unscaled vectors: weights say how much a word counts, not where.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

TOKEN_WEIGHTS_FILE = "textual/token_weights.npy"  # float32 (vocab size,), declared in config.json


def idf_weights(token_ids: Iterable[np.ndarray], vocab_size: int) -> np.ndarray:
    """One weight per token id from a corpus of captions, each given as the ids of its scoring tokens.

    A token seen in no caption gets the largest weight (it is as rare as can be measured).
    """
    df = np.zeros(vocab_size, np.int64)
    captions = 0
    for ids in token_ids:
        df[np.unique(np.asarray(ids, np.int64))] += 1
        captions += 1
    return (np.log((captions + 1) / (df + 1)) + 1).astype(np.float32)


def query_weights(table: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
    """(T,) weights of a query's scoring tokens (their ids); all ones without a table."""
    if table is None:
        return np.ones(len(ids), np.float32)
    return table[np.clip(np.asarray(ids, np.int64), 0, len(table) - 1)].astype(np.float32)


def fold_weights(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Query vectors (T, D) scaled so that mean-over-words MaxSim is the weighted MISA above."""
    weights = np.asarray(weights, np.float32)
    scale = weights * (len(weights) / weights.sum())
    return np.asarray(vectors, np.float32) * scale[:, None]
