"""The exact scan kernel (assoc.runtime.scoring.scan) on ONNX Runtime: scores of many grids handed over at
once, run a bounded block at a time (RUN_BYTES), as the numpy matchmap scores the same float32 values:
float16 grids (the pooled stage), and int8 codes (scoring/quantize.py) by MatMulInteger against the
query's int8 codes, held to float32 numpy over the dequantized grids and the dequantized query."""

from __future__ import annotations

import numpy as np
import pytest

from assoc.runtime.scoring import scan
from assoc.runtime.scoring.matchmap import score_grids
from assoc.runtime.scoring.quantize import (
    LEVELS,
    ZERO,
    as_scored,
    dequantize_grids,
    dequantize_query,
    dequantize_vectors,
    quantize_grids,
    quantize_query,
    quantize_vectors,
)
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


# ---------------------------------------------------------------------------------------------- int8


def _quantized(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grids with a damaged one (7: NaN) and a zero one (9), their codes and scales, and a query's words."""
    grids, words = _unit(rng, N, P, D), _unit(rng, T, D).astype(np.float32)
    grids[7, 3, 4] = np.nan
    grids[9] = 0
    codes, scales = quantize_grids(grids)
    return grids, codes, scales, words, dequantize_grids(codes, scales)


@pytest.mark.parametrize("kind", ["misa", "sisa", "mima"])
def test_the_int8_kernel_scores_the_dequantized_grids_against_the_quantized_query(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "RUN_BYTES", 5 * P * D)  # codes are not widened: runs of 5 grids
    rng = np.random.default_rng(4)
    _, codes, scales, words, values = _quantized(rng)
    query_codes, word_scales = quantize_query(np.ascontiguousarray(words.T))
    expected = score_grids(values, dequantize_query(query_codes, word_scales).T, kind)  # float32 numpy
    kernel = ScanKernel(kind, layout="int8")
    got = kernel.scores(codes, query_codes, scales=scales, query_scales=word_scales)
    assert got.shape == (N,) and got.dtype == np.float32
    assert np.isnan(got[7]) and np.isnan(expected[7])  # a grid that was not numbers is never a hit
    assert got[9] == 0 and expected[9] == 0  # a zero grid: scale 0, no division by it
    np.testing.assert_allclose(np.delete(got, 7), np.delete(expected, 7), rtol=0, atol=1e-6)
    monkeypatch.setattr(scan, "RUN_BYTES", 1 << 30)
    whole = ScanKernel(kind, layout="int8").scores(codes, query_codes, scales=scales, query_scales=word_scales)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-7)  # its own rows, whatever the run (float32 sums)

    best = ScanKernel(kind, per_vector=True, layout="int8").scores(
        codes, query_codes, scales=scales, query_scales=word_scales
    )
    assert best.shape == (N, T) and np.isnan(best[7]).all()
    words_scored = dequantize_query(query_codes, word_scales)
    products = values @ words_scored  # (N, P, T)
    reduced = products.mean(axis=1) if kind == "sisa" else products.max(axis=1)
    np.testing.assert_allclose(np.delete(best, 7, 0), np.delete(reduced, 7, 0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.delete(reduce_words(kind, best), 7), np.delete(expected, 7), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["misa", "sisa", "mima"])
def test_the_fused_int8_kernel_adds_the_float16_global_term(kind: str) -> None:
    rng = np.random.default_rng(5)
    _, codes, scales, words, values = _quantized(rng)
    pooled, sentence = _unit(rng, N, D), _unit(rng, 1, D)[0].astype(np.float32)
    weight = np.float32(0.4)
    query_codes, word_scales = quantize_query(np.ascontiguousarray(words.T))
    got = ScanKernel(kind, fused=True, layout="int8").scores(
        codes, query_codes, (pooled, weight * sentence[:, None], 1 - weight), scales=scales, query_scales=word_scales
    )
    local = score_grids(values, dequantize_query(query_codes, word_scales).T, kind)
    expected = (1 - weight) * local + weight * (pooled.astype(np.float32) @ sentence)
    assert np.isnan(got[7])
    np.testing.assert_allclose(np.delete(got, 7), np.delete(expected, 7), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["misa", "sisa", "mima"])
def test_the_int8_vectors_kernel_applies_each_vectors_scale_before_the_max(kind: str) -> None:
    """The first stage's centroids: a scale per vector, applied to the products before the reduction."""
    rng = np.random.default_rng(6)
    vectors, words = _unit(rng, N, 8, D), _unit(rng, T, D).astype(np.float32)
    vectors[:, 0] *= np.float16(0.05)  # vectors of very different sizes: the scales decide the max
    vectors[3, 2, 1] = np.inf
    codes, scales = quantize_vectors(vectors)
    assert scales.shape == (N, 8) and not np.isfinite(scales[3, 2])
    query_codes, word_scales = quantize_query(np.ascontiguousarray(words.T))
    expected = score_grids(dequantize_vectors(codes, scales), dequantize_query(query_codes, word_scales).T, kind)
    got = ScanKernel(kind, layout="int8-vectors").scores(codes, query_codes, scales=scales, query_scales=word_scales)
    assert not np.isfinite(got[3])
    np.testing.assert_allclose(np.delete(got, 3), np.delete(expected, 3), rtol=0, atol=1e-6)


def test_quantization_is_deterministic_and_round_trips() -> None:
    rng = np.random.default_rng(7)
    grids = _unit(rng, N, P, D)
    grids[0, 0, :4] = [6e-5, -0.0, 3e-7, -1]  # float16 subnormals and signed zeros
    grids[9] = 0
    codes, scales = quantize_grids(grids)
    assert codes.dtype == np.uint8 and scales.dtype == np.float16 and scales.shape == (N,)
    again = quantize_grids(grids.astype(np.float32))  # the float16 values, whatever holds them
    np.testing.assert_array_equal(again[0], codes)
    np.testing.assert_array_equal(again[1], scales)
    assert codes.min() >= ZERO - LEVELS and codes.max() <= ZERO + LEVELS
    assert scales[9] == 0 and (codes[9] == ZERO).all()
    values = dequantize_grids(codes, scales)
    step = scales.astype(np.float32)[:, None, None]
    assert (np.abs(values - grids.astype(np.float32)) <= 0.5 * step * (1 + 1e-3)).all()  # half a code at most
    requantized = quantize_grids(values)  # a grid given back by a store quantizes to the same codes
    np.testing.assert_array_equal(requantized[0], codes)
    np.testing.assert_array_equal(requantized[1], scales)
    vector_codes, vector_scales = quantize_vectors(grids)
    assert vector_scales.shape == (N, P)
    np.testing.assert_array_equal(quantize_vectors(dequantize_vectors(vector_codes, vector_scales))[0], vector_codes)
    with np.errstate(all="raise"):  # no division by a zero scale, no warning about a NaN
        broken = grids.copy()
        broken[2, 1, 1], broken[4, 0, 0] = np.nan, -np.inf
        codes, scales = quantize_grids(broken)
    assert np.isnan(scales[2]) and np.isinf(scales[4]) and (codes[[2, 4]] == ZERO).all()
    query_codes, word_scales = quantize_query(np.zeros((D, 2), np.float32))
    assert (query_codes == 0).all() and (word_scales == 1).all()  # a zero word: codes 0, no division by 0


def test_a_grid_as_scored_is_its_codes_dequantized_whatever_holds_it() -> None:
    """get_grid in every store: a (h, w, D) float16 grid, or the same grid dequantized already, gives the
    values the exact score scores."""
    grid = _unit(np.random.default_rng(3), 1, P, D)  # float16
    codes, scales = quantize_grids(grid)
    expected = dequantize_grids(codes, scales)[0].reshape(3, 4, D)
    shown = as_scored(grid.reshape(3, 4, D))
    assert shown.dtype == np.float32 and shown.shape == (3, 4, D)
    np.testing.assert_array_equal(shown, expected)
    np.testing.assert_array_equal(as_scored(shown), shown)
