from __future__ import annotations

import numpy as np
import pytest
import torch

from assoc.models.losses import (
    InfoNCE,
    RankingLoss,
    WordRegionLoss,
    hardest_margin,
    region_alignment,
    sampled_margin,
)
from assoc.runtime.scoring.heatmap import smooth_map


def _scores(aligned: bool) -> torch.Tensor:
    torch.manual_seed(0)
    s = torch.rand(8, 8) * 0.5
    if aligned:
        s = s + torch.eye(8)
    return s


@pytest.mark.parametrize("kind", ["sampled", "semihard", "hardest", "infonce", "infonce_semihard", "infonce_hardest"])
def test_loss_prefers_true_pairs(kind: str) -> None:
    loss = RankingLoss(kind)
    with torch.no_grad():
        assert float(loss(_scores(True))) < float(loss(_scores(False)))


def test_margin_losses_vanish_when_positives_win_by_the_margin() -> None:
    s = torch.full((6, 6), 0.1) + torch.eye(6) * 0.5
    assert float(sampled_margin(s, margin=0.2)) == 0.0
    assert float(hardest_margin(s, margin=0.2)) == 0.0
    assert float(hardest_margin(s, margin=0.6)) == pytest.approx(2 * 0.1)


def test_sampled_impostor_is_never_the_positive() -> None:
    # With every off-diagonal score far above the positive, any impostor costs the same: a positive
    # drawn as its own impostor would cost only the margin and lower the mean.
    s = torch.full((5, 5), 0.9) - torch.eye(5) * 0.9
    for _ in range(20):
        assert float(sampled_margin(s, margin=0.2)) == pytest.approx(2 * (0.2 + 0.9))


def test_infonce_learns_its_temperature() -> None:
    loss = InfoNCE()
    value = loss(_scores(True))
    value.backward()
    assert loss.log_scale.grad is not None and float(loss.log_scale.grad) != 0.0


def test_infonce_semihard_is_the_sum_of_its_parts() -> None:
    s = _scores(True)
    mixed = RankingLoss("infonce_semihard", margin=0.8)
    with torch.no_grad():
        expected = mixed.infonce(s) + hardest_margin(s, margin=0.8, semihard=True)
        assert float(mixed(s)) == pytest.approx(float(expected))
    # The margin part adds a cost InfoNCE alone does not have when an impostor is within the margin.
    assert float(hardest_margin(s, margin=0.8, semihard=True)) > 0.0


def test_infonce_semihard_pushes_down_only_the_semihard_impostor() -> None:
    # Image 0's caption 0 scores 0.6; its impostors: 0.5 (within the margin, below the positive) and
    # 0.9 (above the positive: left out as likely label noise). The margin part's gradient reaches only 0.5.
    s = torch.tensor([[0.6, 0.5, 0.9], [0.0, 0.8, 0.0], [0.0, 0.0, 0.8]], requires_grad=True)
    hardest_margin(s, margin=0.2, semihard=True).backward()
    g = s.grad
    assert float(g[0, 1]) > 0.0 and float(g[0, 2]) == 0.0 and float(g[0, 0]) < 0.0
    s.grad = None
    RankingLoss("infonce_semihard", margin=0.2)(s).backward()
    assert float(s.grad[0, 2]) > 0.0  # InfoNCE still weighs every negative


def test_infonce_hardest_adds_the_max_violation_margin_only_after_warm_up() -> None:
    s = _scores(True)
    mixed = RankingLoss("infonce_hardest", margin=0.8)
    with torch.no_grad():
        mixed.margin_active = False
        assert float(mixed(s)) == pytest.approx(float(mixed.infonce(s)))
        mixed.margin_active = True
        expected = mixed.infonce(s) + hardest_margin(s, margin=0.8)
        assert float(mixed(s)) == pytest.approx(float(expected))
        assert float(hardest_margin(s, margin=0.8)) > 0.0


def test_word_dropout_leaves_out_scoring_pieces_but_never_a_whole_caption() -> None:
    from assoc.models.train import drop_words

    torch.manual_seed(0)
    mask = torch.rand(64, 12) < 0.6
    mask[:, 0] = True  # every caption has a word
    dropped = drop_words(mask, 0.5)
    assert not (dropped & ~mask).any()  # only ever leaves pieces out
    assert dropped.any(dim=1).all()  # no caption loses every word
    assert 0.3 < dropped.sum() / mask.sum() < 0.7
    assert drop_words(mask, 0.0) is mask
    single = torch.zeros(200, 5, dtype=torch.bool)
    single[:, 2] = True  # one word each: kept whatever the draw
    assert torch.equal(drop_words(single, 0.9), single)


def test_word_region_loss_is_low_when_each_word_has_its_own_region_and_skips_repeats() -> None:
    """Words that each match a region of their own cost little; words all matching one region cost
    more; a repeated token id is never its own repeat's negative, and non-scoring tokens count for nothing."""
    torch.manual_seed(0)
    patches = torch.nn.functional.normalize(torch.randn(3, 9, 16), dim=-1)
    own = patches[:, :5].clone()  # word t is patch t
    shared = patches[:, :1].expand(3, 5, 16).clone()  # every word is patch 0
    weights = torch.ones(3, 5)
    ids = torch.arange(5).repeat(3, 1)
    loss = WordRegionLoss()
    with torch.no_grad():
        assert float(loss(patches, own, weights, ids)) < float(loss(patches, shared, weights, ids))
        repeated = torch.zeros(3, 5, dtype=torch.long)  # one token id five times: no negatives left
        assert float(loss(patches, shared, weights, repeated)) == pytest.approx(0.0, abs=1e-6)
        quiet = weights.clone()
        quiet[:, 1:] = 0  # only the first word scores: its negatives are gone too
        assert float(loss(patches, shared, quiet, ids)) == pytest.approx(0.0, abs=1e-6)
    value = loss(patches.requires_grad_(), own, weights, ids)
    value.backward()
    assert patches.grad is not None and loss.log_scale.grad is not None


def test_the_smoothed_region_alignment_is_taken_from_the_map_localize_smooths() -> None:
    """region_smooth = 3: each word's alignment comes from its similarity map averaged over 3 x 3 cells
    exactly as localize averages the map it points from (heatmap.smooth_map), then scaled and sparsified
    as the plain alignment; the loss takes it, and a smoothing width that is even is refused."""
    torch.manual_seed(1)
    sim = torch.randn(2, 4, 5 * 6)
    smoothed = torch.from_numpy(smooth_map(sim.reshape(2, 4, 5, 6).numpy(), 3)).reshape(2, 4, 30)
    np.testing.assert_allclose(region_alignment(sim, 3, (5, 6)).numpy(), region_alignment(smoothed).numpy(), atol=1e-6)
    align = region_alignment(sim, 3, (5, 6))
    np.testing.assert_allclose(align.sum(-1).numpy(), 1.0, atol=1e-5)
    assert not torch.allclose(align, region_alignment(sim))
    patches = torch.nn.functional.normalize(torch.randn(2, 30, 8), dim=-1)
    words = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    ids, weights = torch.arange(4).repeat(2, 1), torch.ones(2, 4)
    assert torch.isfinite(WordRegionLoss(smooth=3)(patches, words, weights, ids, grid=(5, 6)))
    with pytest.raises(ValueError, match="grid"):
        WordRegionLoss(smooth=3)(patches, words, weights, ids)
    with pytest.raises(ValueError, match="odd"):
        WordRegionLoss(smooth=2)
