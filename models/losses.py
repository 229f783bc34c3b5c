"""Ranking objectives over a batch score matrix S (B images x B captions, positives on the diagonal).

- `sampled_margin`: DAVEnet's margin ranking loss, one random impostor image and one random impostor
  caption per positive pair.
- `semihard_margin` / `hardest_margin`: VSE++-style, the hardest impostor in the batch, optionally only
  among those scoring below the positive (semi-hard).
- `info_nce`: symmetric cross-entropy over the rows and columns with a learned temperature.
- `infonce_semihard`: the sum of the two: InfoNCE's soft weighting of every negative plus a margin on the
  hardest impostor below the positive (the best of the margin losses on frozen features).
- `infonce_hardest`: InfoNCE plus VSE++'s max-violation margin on the hardest impostor. The margin term
  joins only when `margin_active` is set: the training loop keeps it off for the first `margin_warmup`
  epochs, because on an untrained model the hardest impostor is mostly noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import LOSSES


def sampled_margin(scores: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    b = scores.shape[0]
    pos = scores.diagonal()
    # A random offset in 1..b-1 never lands on the positive itself.
    offset = torch.randint(1, b, (b,), device=scores.device)
    impostor = (torch.arange(b, device=scores.device) + offset) % b
    rows = torch.arange(b, device=scores.device)
    imp_caption = scores[rows, impostor]  # image i with another caption
    imp_image = scores[impostor, rows]  # caption i with another image
    return (F.relu(margin - pos + imp_caption) + F.relu(margin - pos + imp_image)).mean()


def hardest_margin(scores: torch.Tensor, margin: float = 0.2, semihard: bool = False) -> torch.Tensor:
    b = scores.shape[0]
    pos = scores.diagonal()
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    neg = scores.masked_fill(eye, float("-inf"))
    if semihard:
        # Impostors that already beat the positive are left out (often label noise); fall back to hardest.
        below_cap = neg.masked_fill(neg >= pos[:, None], float("-inf"))
        below_img = neg.masked_fill(neg >= pos[None, :], float("-inf"))
        hard_caption = torch.where(torch.isinf(below_cap.amax(1)), neg.amax(1), below_cap.amax(1))  # per image
        hard_image = torch.where(torch.isinf(below_img.amax(0)), neg.amax(0), below_img.amax(0))
    else:
        hard_caption, hard_image = neg.amax(1), neg.amax(0)
    return (F.relu(margin - pos + hard_caption) + F.relu(margin - pos + hard_image)).mean()


class InfoNCE(nn.Module):
    """Symmetric InfoNCE; the temperature is learned as log(1/t), clamped to t >= 0.01."""

    def __init__(self, init_temperature: float = 0.07) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        logits = scores * self.log_scale.clamp(max=math.log(100.0)).exp()
        target = torch.arange(scores.shape[0], device=scores.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class RankingLoss(nn.Module):
    """One entry point for the training loop, chosen by name."""

    def __init__(self, kind: str = "infonce", margin: float | None = None) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
        self.kind = kind
        self.margin = 0.2 if margin is None else margin
        self.infonce = InfoNCE() if kind.startswith("infonce") else None
        self.margin_active = True

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if self.kind == "infonce":
            return self.infonce(scores)
        if self.kind == "infonce_semihard":
            return self.infonce(scores) + hardest_margin(scores, self.margin, semihard=True)
        if self.kind == "infonce_hardest":
            if not self.margin_active:
                return self.infonce(scores)
            return self.infonce(scores) + hardest_margin(scores, self.margin)
        if self.kind == "sampled":
            return sampled_margin(scores, self.margin)
        return hardest_margin(scores, self.margin, semihard=self.kind == "semihard")
