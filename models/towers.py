"""The two branches: image -> grid of patch embeddings (no pooling), caption -> one vector per token.

Each branch is split into a frozen lower part and a trainable upper part. `features()` runs the frozen
part (cacheable), `from_features()` the rest; `forward()` does both and is what gets exported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bert import BertEncoder
from .trunks import Trunk


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class ImageTower(nn.Module):
    """CNN trunk kept as a grid, a 1x1 conv projection to D, L2-normalised per patch -> (B, h, w, D)."""

    def __init__(self, trunk: Trunk, embed_dim: int, train_stages: int = 0) -> None:
        super().__init__()
        n = len(trunk.stages)
        if not 0 <= train_stages <= n:
            raise ValueError(f"train_stages must be within 0..{n} for {trunk.name}")
        self.frozen = nn.Sequential(*trunk.stages[: n - train_stages])
        self.top = nn.Sequential(*trunk.stages[n - train_stages :])
        self.proj = nn.Conv2d(trunk.channels, embed_dim, kernel_size=1)
        _freeze(self.frozen)

    def train(self, mode: bool = True) -> ImageTower:
        # Batch-norm statistics stay as pretrained: CPU-sized batches would only add noise to them.
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.frozen(pixels)

    def from_features(self, feats: torch.Tensor) -> torch.Tensor:
        grid = self.proj(self.top(feats))
        return F.normalize(grid, dim=1).permute(0, 2, 3, 1).contiguous()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(pixels))


class TextTower(nn.Module):
    """BERT token states, a linear projection to D, L2-normalised -> (B, L, D)."""

    def __init__(self, bert: BertEncoder, embed_dim: int, train_layers: int = 0) -> None:
        super().__init__()
        n = len(bert.layers)
        if not 0 <= train_layers <= n:
            raise ValueError(f"train_layers must be within 0..{n}")
        self.bert = bert
        self.split = n - train_layers
        self.proj = nn.Linear(bert.config.hidden_size, embed_dim)
        _freeze(self.bert)
        for layer in bert.layers[self.split :]:
            for p in layer.parameters():
                p.requires_grad_(True)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert.run_layers(self.bert.embed(input_ids), attention_mask, 0, self.split)

    def from_features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert.run_layers(hidden, attention_mask, self.split)
        return F.normalize(self.proj(hidden), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(input_ids, attention_mask), attention_mask)
