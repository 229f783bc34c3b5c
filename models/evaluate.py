"""Evaluation of a torch model: embed a 5-captions-per-image set, score every pair, compute recall."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..evaluation.metrics import recall_metrics
from ..runtime.encoding.tokenizer import TokenBatch
from .features import Progress, image_features, text_features
from .matchmap import pairwise_scores
from .model import MatchmapModel


@torch.no_grad()
def embed_grids(model: MatchmapModel, feats: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Frozen image features -> (N, P, D) float32 patch embeddings."""
    model.eval()
    out = [
        model.image.from_features(feats[i : i + batch_size].float()).flatten(1, 2)
        for i in range(0, len(feats), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def embed_captions(
    model: MatchmapModel, tokens: TokenBatch, hidden: torch.Tensor, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen text features -> (C, T, D) token vectors and (C, T) token weights (model.weigh: 0 where a
    token does not score), trimmed to T."""
    model.eval()
    mask = torch.from_numpy(tokens.attention_mask)
    length = int(np.flatnonzero(tokens.word_mask.any(0)).max()) + 1 if tokens.word_mask.any() else 1
    out = [
        model.text.from_features(hidden[i : i + batch_size].float(), mask[i : i + batch_size])
        for i in range(0, len(hidden), batch_size)
    ]
    words = torch.cat(out)[:, :length]
    ids, mask = torch.from_numpy(tokens.input_ids)[:, :length], torch.from_numpy(tokens.word_mask)[:, :length]
    return words, model.weigh(ids, mask)


@torch.no_grad()
def score_matrix(
    grids: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, kind: str, chunk: int = 16
) -> np.ndarray:
    """(N images, C captions) scores; word_mask may hold token weights (0 where a token does not score).

    Captions go in groups of similar length, each trimmed to its longest caption (most are far shorter
    than the longest of all), and images in chunks to bound memory.
    """
    scores = torch.empty(len(grids), len(words))
    last_word = torch.where(word_mask > 0, torch.arange(word_mask.shape[1]), -1).amax(1)
    order = torch.argsort(last_word)
    for start in range(0, len(order), 1000):
        cols = order[start : start + 1000]
        width = int(last_word[cols].max()) + 1
        w, m = words[cols, :width], word_mask[cols, :width]
        for i in range(0, len(grids), chunk):
            scores[i : i + chunk, cols] = pairwise_scores(grids[i : i + chunk], w, m, kind)
    return scores.numpy()


@dataclass(frozen=True)
class EvalFeatures:
    """The frozen features of an evaluation set, computed once and scored after every epoch."""

    images: torch.Tensor  # (N, C, h, w) frozen image features
    tokens: TokenBatch
    hidden: torch.Tensor  # (C, L, H) frozen text features
    caption_image: np.ndarray


def prepare_eval(
    model: MatchmapModel,
    images: Sequence[Path],
    captions: Sequence[str],
    caption_image: Sequence[int],
    cache_dir: Path | None = None,
    on_batch: Progress | None = None,
) -> EvalFeatures:
    feats = image_features(model, images, cache_dir, on_batch=on_batch)
    tokens, hidden = text_features(model, captions, cache_dir)
    return EvalFeatures(feats, tokens, hidden, np.asarray(caption_image))


def evaluate_features(model: MatchmapModel, feats: EvalFeatures) -> dict:
    """Recall@1/5/10 and median rank in both directions, in the shape `assoc eval --json` prints."""
    grids = embed_grids(model, feats.images)
    words, mask = embed_captions(model, feats.tokens, feats.hidden)
    scores = score_matrix(grids, words, mask, model.config.score)
    result = recall_metrics(scores, feats.caption_image)
    return {**result, "images": len(feats.images), "captions": len(feats.caption_image)}


def evaluate(
    model: MatchmapModel,
    images: Sequence[Path],
    captions: Sequence[str],
    caption_image: Sequence[int],
    cache_dir: Path | None = None,
) -> dict:
    return evaluate_features(model, prepare_eval(model, images, captions, caption_image, cache_dir))
