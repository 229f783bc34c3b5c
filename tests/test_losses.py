from __future__ import annotations

import pytest
import torch

from assoc.models.losses import InfoNCE, RankingLoss, hardest_margin, sampled_margin


def _scores(aligned: bool) -> torch.Tensor:
    torch.manual_seed(0)
    s = torch.rand(8, 8) * 0.5
    if aligned:
        s = s + torch.eye(8)
    return s


@pytest.mark.parametrize("kind", ["sampled", "semihard", "hardest", "infonce"])
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
