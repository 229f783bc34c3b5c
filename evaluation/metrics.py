"""Retrieval metrics for the standard protocol: every caption belongs to exactly one image."""

from __future__ import annotations

import numpy as np


def recall_metrics(scores: np.ndarray, caption_image: np.ndarray) -> dict[str, dict[str, float]]:
    """scores (n_images, n_captions), caption_image (n_captions,) -> R@1/5/10 (percent) and median rank.

    text_to_image ranks all images for each caption; image_to_text ranks all captions for each image
    and takes the best-ranked of its own captions. Ranks are 1-based: 1 + the number scoring strictly higher.
    """
    scores = np.asarray(scores, dtype=np.float32)
    caption_image = np.asarray(caption_image)
    n_images, n_captions = scores.shape
    cols = np.arange(n_captions)
    positive = scores[caption_image, cols]
    t2i_rank = (scores > positive[None, :]).sum(axis=0) + 1
    i2t_rank = np.full(n_images, n_captions, dtype=np.int64)
    for i in range(n_images):
        own = np.flatnonzero(caption_image == i)
        if own.size == 0:
            continue
        best = scores[i, own].max()
        i2t_rank[i] = int((scores[i] > best).sum()) + 1
    has_caption = np.isin(np.arange(n_images), caption_image)
    return {
        "text_to_image": _summarise(t2i_rank),
        "image_to_text": _summarise(i2t_rank[has_caption]),
    }


def _summarise(ranks: np.ndarray) -> dict[str, float]:
    return {
        "R@1": round(100.0 * float((ranks <= 1).mean()), 2),
        "R@5": round(100.0 * float((ranks <= 5).mean()), 2),
        "R@10": round(100.0 * float((ranks <= 10).mean()), 2),
        "median_rank": float(np.median(ranks)),
    }
