"""The torch and numpy matchmap scores are one definition: equal on the same vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assoc.models.matchmap import pairwise_scores
from assoc.runtime.scoring.matchmap import score_grids


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("kind", ["misa", "sisa", "mima"])
def test_torch_and_numpy_scores_agree(kind: str) -> None:
    rng = np.random.default_rng(0)
    grids = _unit(rng, 5, 12, 16)  # 5 images, 12 patches, D = 16
    words = _unit(rng, 3, 6, 16)  # 3 captions, 6 token slots
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 0]], dtype=bool)
    torch_scores = pairwise_scores(torch.from_numpy(grids), torch.from_numpy(words), torch.from_numpy(mask), kind)
    for c in range(3):
        numpy_scores = score_grids(grids, words[c][mask[c]], kind)
        np.testing.assert_allclose(torch_scores[:, c].numpy(), numpy_scores, rtol=1e-5, atol=1e-6)


def test_misa_is_mean_of_each_words_best_patch() -> None:
    patches = np.eye(4, dtype=np.float32)  # 4 patches, D = 4
    words = np.array([[1, 0, 0, 0], [0, 0.5, 0.5, 0]], dtype=np.float32)
    assert score_grids(patches[None], words, "misa")[0] == pytest.approx((1.0 + 0.5) / 2)
    assert score_grids(patches[None], words, "mima")[0] == pytest.approx(1.0)
    assert score_grids(patches[None], words, "sisa")[0] == pytest.approx(2.0 / 8)


def test_pooled_training_score_is_the_stores_first_stage() -> None:
    """The auxiliary pooled loss trains exactly the vectors every store's first stage compares: the
    stored global vector (normalised mean patch) against the query's normalised mean word."""
    from assoc.models.matchmap import pooled_scores
    from assoc.runtime.scoring.first_stage import pooled_vectors
    from assoc.runtime.search.query import Query

    rng = np.random.default_rng(1)
    grids, words = _unit(rng, 3, 49, 16), _unit(rng, 2, 5, 16)
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=bool)
    ours = pooled_scores(torch.from_numpy(grids), torch.from_numpy(words), torch.from_numpy(mask)).numpy()
    stored = pooled_vectors(grids[:, None]).astype(np.float32)  # (3, 1, 49, D): one-row grids
    sentences = [Query.of(words[j][mask[j]], 16).pooled for j in range(2)]
    theirs = np.array([[stored[i] @ sentences[j] for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(ours, theirs, atol=2e-3)  # the stored vector is float16
