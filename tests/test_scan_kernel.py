"""The exact scan kernel (assoc.runtime.scoring.scan) on ONNX Runtime: scores of many grids handed over at
once, run a bounded block at a time (RUN_BYTES), as the numpy matchmap scores the same float32 values."""

from __future__ import annotations

import numpy as np
import pytest

from assoc.runtime.scoring import scan
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.scoring.scan import ScanKernel, reduce_words

N, P, D, T = 23, 12, 32, 5  # 23 photos of 12 patches: with RUN_BYTES of 5 widened grids, 5 runs


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float16)


@pytest.fixture()
def small_runs(monkeypatch: pytest.MonkeyPatch) -> int:
    """Runs of 5 widened grids, so that one call of scores() makes several."""
    monkeypatch.setattr(scan, "RUN_BYTES", 5 * P * D * 4)
    return 5


@pytest.mark.parametrize("kind", ["misa", "sisa", "mima"])
def test_scores_in_several_runs_are_the_matchmap_scores(
    kind: str, small_runs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    grids, words = _unit(rng, N, P, D), _unit(rng, T, D).astype(np.float32)
    grids[7, 3, 4] = np.nan  # a damaged grid scores NaN, in whichever run it is
    expected = score_grids(grids, words, kind)
    got = ScanKernel(kind).scores(grids, np.ascontiguousarray(words.T))
    assert got.shape == (N,) and got.dtype == np.float32
    assert np.isnan(got[7]) and np.isnan(expected[7])
    np.testing.assert_allclose(np.delete(got, 7), np.delete(expected, 7), rtol=0, atol=1e-6)
    monkeypatch.setattr(scan, "RUN_BYTES", 1 << 30)  # every grid in one run
    whole = ScanKernel(kind).scores(grids, np.ascontiguousarray(words.T))
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)


def test_the_fused_kernel_slices_each_photos_global_vector_with_its_grid(small_runs: int) -> None:
    rng = np.random.default_rng(1)
    grids, words = _unit(rng, N, P, D), _unit(rng, T, D).astype(np.float32)
    pooled, sentence = _unit(rng, N, D), _unit(rng, 1, D)[0].astype(np.float32)
    weight = np.float32(0.3)
    got = ScanKernel("misa", fused=True).scores(
        grids, np.ascontiguousarray(words.T), (pooled, weight * sentence[:, None], np.float32(1 - weight))
    )
    local = score_grids(grids, words, "misa")
    expected = (1 - weight) * local + weight * (pooled.astype(np.float32) @ sentence)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("kind", ["misa", "mima"])
def test_the_per_vector_kernel_gives_each_vector_its_best_patch(kind: str, small_runs: int) -> None:
    rng = np.random.default_rng(2)
    grids, words = _unit(rng, N, P, D), _unit(rng, T, D).astype(np.float32)
    best = ScanKernel(kind, per_vector=True).scores(grids, np.ascontiguousarray(words.T))
    assert best.shape == (N, T)
    products = grids.astype(np.float32) @ words.T  # (N, P, T)
    np.testing.assert_allclose(best, products.max(axis=1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(reduce_words(kind, best), score_grids(grids, words, kind), rtol=0, atol=1e-6)


def test_no_grids_and_one_grid(small_runs: int) -> None:
    kernel = ScanKernel("misa")
    query_t = np.ones((D, T), np.float32)
    assert kernel.scores(np.empty((0, P, D), np.float16), query_t).shape == (0,)
    assert ScanKernel("misa", per_vector=True).scores(np.empty((0, P, D), np.float16), query_t).shape == (0, T)
    one = _unit(np.random.default_rng(3), 1, P, D)
    np.testing.assert_allclose(kernel.scores(one, query_t), score_grids(one, query_t.T, "misa"), rtol=0, atol=1e-5)
