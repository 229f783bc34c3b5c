"""Batched matchmaps and scores in torch; the twin of assoc.runtime.scoring.matchmap (a test keeps them equal).

Shapes: patches (B, P, D) for B images of P patches, words (C, T, D) for C captions of T tokens with a
word mask (C, T) that is False for special tokens, padding and bare punctuation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..runtime.scoring.matchmap import SCORES


def pairwise_scores(
    patches: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, kind: str = "misa"
) -> torch.Tensor:
    """Score every image against every caption -> (B, C)."""
    return _reduce(torch.einsum("bpd,ctd->bcpt", patches, words), word_mask[None], kind)


def _reduce(mm: torch.Tensor, word_mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Matchmaps (..., P, T) and a word mask broadcastable to (..., T) -> scores (...)."""
    mask = word_mask.to(mm.dtype)
    if kind == "misa":
        return (mm.amax(dim=-2) * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
    if kind == "sisa":
        return (mm.mean(dim=-2) * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
    if kind == "mima":
        return mm.amax(dim=-2).masked_fill(mask == 0, float("-inf")).amax(-1)
    raise ValueError(f"unknown score kind {kind!r}; expected one of {SCORES}")


def pooled_scores(patches: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """(B, C) cosine of mean-pooled patches and mean-pooled words: the first-stage score a vector index
    such as Qdrant ranks by before MaxSim reranks (the twin of assoc.runtime.stores.qdrant.pool)."""
    img = F.normalize(patches.mean(dim=1), dim=-1)
    mask = word_mask.to(words.dtype)[..., None]
    txt = F.normalize((words * mask).sum(1) / mask.sum(1).clamp_min(1.0), dim=-1)
    return img @ txt.t()


def soft_misa_scores(
    patches: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, temperature: torch.Tensor | float
) -> torch.Tensor:
    """(B, C) MISA with each word's max over patches softened: sum_p softmax_p(mm / t) * mm.

    A training-time score only (search ranks by hard MISA): the gradient reaches every patch in
    proportion to its softmax weight instead of the single best one. t -> 0 gives MISA, t -> inf SISA.
    """
    mm = torch.einsum("bpd,ctd->bcpt", patches, words)
    pooled = (torch.softmax(mm / temperature, dim=-2) * mm).sum(-2)  # (B, C, T)
    mask = word_mask.to(mm.dtype)[None]
    return (pooled * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
