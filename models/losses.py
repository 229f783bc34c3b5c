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
- `WordRegionLoss`: a loss that sees location, over true pairs only (after SPARC, Bica et al. 2024). Each
  word pools the patches it matches into a region vector, and that region must match its own word better
  than the caption's other words: "dog" and "grass" cannot both peak on the lawn.
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


def region_alignment(sim: torch.Tensor, smooth: int = 1, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Word-to-patch similarities (B, T, P) -> each word's alignment over the patches (B, T, P), summing
    to 1 (WordRegionLoss): min-max scaled, under 1/P dropped, renormalised; with smooth > 1, from the
    maps over the (h, w) grid averaged over smooth x smooth cells first, edge cells repeated outward."""
    if smooth > 1:
        if grid is None or grid[0] * grid[1] != sim.shape[-1]:
            raise ValueError(f"smoothing the alignment needs the patches' grid, not {grid}")
        r = smooth // 2
        maps = F.pad(sim.reshape(-1, 1, *grid), (r, r, r, r), mode="replicate")
        sim = F.avg_pool2d(maps, smooth, stride=1).reshape(sim.shape)
    low, high = sim.amin(-1, keepdim=True), sim.amax(-1, keepdim=True)
    align = (sim - low) / (high - low).clamp_min(1e-6)
    align = align.masked_fill(align < 1.0 / sim.shape[-1], 0.0)
    return align / align.sum(-1, keepdim=True).clamp_min(1e-6)


class WordRegionLoss(nn.Module):
    """Word-to-region contrast inside each true pair, with a learned temperature.

    A word's alignment over the P patches is its similarities min-max scaled to [0, 1], those below 1/P
    set to 0, renormalised to sum to 1 (SPARC's sparse alignment); its region vector is the weighted sum
    of the patches. Then, per caption, a cross-entropy both ways between region vectors and the caption's
    word vectors. Repeats of one token id are not each other's negatives.

    With smooth > 1 the alignment is taken from each word's similarity map averaged over smooth x smooth
    cells (edge cells repeated outward), as localize smooths the map whose peak it points at
    (runtime/scoring/heatmap.py smooth_map): the region is pulled towards where the word's map is high
    over a neighbourhood, not towards single cells that differ most from the other words'.
    """

    def __init__(self, init_temperature: float = 0.07, smooth: int = 1) -> None:
        super().__init__()
        if smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"region_smooth must be an odd number of cells, not {smooth}")
        self.smooth = smooth
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def forward(
        self,
        patches: torch.Tensor,
        words: torch.Tensor,
        weights: torch.Tensor,
        input_ids: torch.Tensor,
        grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """patches (B, P, D) and words (B, T, D) of B true pairs; weights (B, T) > 0 where a token
        scores, its share of the loss; input_ids (B, T); grid: the (h, w) the P patches come from
        (needed where smooth > 1) -> a scalar."""
        align = region_alignment(torch.einsum("btd,bpd->btp", words, patches), self.smooth, grid)
        regions = F.normalize(torch.einsum("btp,bpd->btd", align, patches), dim=-1)
        logits = torch.einsum("btd,bsd->bts", regions, words).float() * self.log_scale.clamp(max=math.log(100.0)).exp()
        scoring = weights > 0
        same = input_ids[:, :, None] == input_ids[:, None, :]
        eye = torch.eye(logits.shape[1], dtype=torch.bool, device=logits.device)
        # Other scoring words with another token id (and their regions) are the negatives; the word
        # itself is the target.
        allowed = (scoring[:, :, None] & scoring[:, None, :] & ~same) | eye
        to_word = -torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1).diagonal(dim1=1, dim2=2)
        to_region = -torch.log_softmax(
            logits.transpose(1, 2).masked_fill(~allowed.transpose(1, 2), float("-inf")), dim=-1
        ).diagonal(dim1=1, dim2=2)
        share = weights.float() * scoring
        return 0.5 * ((to_word + to_region) * share).sum() / share.sum().clamp_min(1e-6)
