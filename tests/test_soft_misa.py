"""The softened MISA used as a training score: its limits, its gradient and its place in the objective."""

from __future__ import annotations

import pytest
import torch

from assoc.models.matchmap import pairwise_scores, soft_misa_scores


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    patches, words = _unit(4, 9, 16), _unit(3, 5, 16, seed=1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], dtype=torch.bool)
    return patches, words, mask


def test_soft_misa_tends_to_misa_when_cold_and_to_sisa_when_hot() -> None:
    patches, words, mask = _batch()
    misa = pairwise_scores(patches, words, mask, "misa")
    sisa = pairwise_scores(patches, words, mask, "sisa")
    torch.testing.assert_close(soft_misa_scores(patches, words, mask, 1e-4), misa, atol=1e-4, rtol=0)
    torch.testing.assert_close(soft_misa_scores(patches, words, mask, 1e4), sisa, atol=1e-4, rtol=0)
    mid = soft_misa_scores(patches, words, mask, 0.1)
    assert bool((mid <= misa + 1e-6).all()) and bool((mid >= sisa - 1e-6).all())


def test_soft_misa_ignores_masked_tokens() -> None:
    patches, words, mask = _batch()
    scrambled = words.clone()
    scrambled[~mask] = _unit(int((~mask).sum()), 16, seed=7)
    torch.testing.assert_close(
        soft_misa_scores(patches, words, mask, 0.1), soft_misa_scores(patches, scrambled, mask, 0.1)
    )


def test_soft_misa_gradient_reaches_more_than_the_best_patch() -> None:
    patches, words, mask = _batch()
    hard = patches.clone().requires_grad_(True)
    pairwise_scores(hard, words, mask, "misa").sum().backward()
    soft = patches.clone().requires_grad_(True)
    soft_misa_scores(soft, words, mask, 0.1).sum().backward()
    touched_hard = int((hard.grad.abs().sum(-1) > 0).sum())
    touched_soft = int((soft.grad.abs().sum(-1) > 0).sum())
    assert touched_soft == 4 * 9 and touched_hard < touched_soft


def test_soft_misa_temperature_is_learnable() -> None:
    patches, words, mask = _batch()
    log_t = torch.tensor(-2.0, requires_grad=True)
    soft_misa_scores(patches, words, mask, log_t.exp()).diagonal().sum().backward()
    assert log_t.grad is not None and float(log_t.grad) != 0.0


@pytest.mark.slow
def test_model_trains_with_the_soft_score_and_keeps_hard_misa_for_search() -> None:
    from assoc.models.config import TrainConfig
    from assoc.models.model import MatchmapModel

    model = MatchmapModel(TrainConfig(embed_dim=16, soft_max_temperature=0.1, pooled_weight=0.1))
    assert model.soft_log_t is not None and float(model.soft_log_t.detach().exp()) == pytest.approx(0.1)
    assert any(p is model.soft_log_t for g in model.parameter_groups() for p in g["params"])
    grids = torch.nn.functional.normalize(torch.randn(4, 3, 3, 16), dim=-1)
    tokens = torch.nn.functional.normalize(torch.randn(4, 5, 16), dim=-1)
    mask = torch.ones(4, 5, dtype=torch.bool)
    model.objective(grids, tokens, mask).backward()
    assert model.soft_log_t.grad is not None
    # Ranking (evaluation, export, search) still uses the hard score named in the config.
    assert model.config.score == "misa"
    torch.testing.assert_close(model.scores(grids, tokens, mask), pairwise_scores(grids.flatten(1, 2), tokens, mask))
    with pytest.raises(ValueError, match="needs score"):
        MatchmapModel(TrainConfig(embed_dim=16, soft_max_temperature=0.1, score="sisa"))
