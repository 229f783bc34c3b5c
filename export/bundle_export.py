"""Checkpoint -> model bundle: two ONNX graphs, the tokenizer and a self-describing config.json."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.model import MatchmapModel, load_checkpoint
from ..models.onnx_graph import export_onnx
from ..runtime.encoding.bundle import (
    TEXTUAL_MODEL,
    TOKENIZER_FILE,
    VISUAL_MODEL,
    BundleConfig,
    TextualConfig,
    VisualConfig,
    write_config,
)


class _Textual(nn.Module):
    def __init__(self, model: MatchmapModel) -> None:
        super().__init__()
        self.text = model.text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids, attention_mask)


@dataclass(frozen=True)
class ExportResult:
    config: BundleConfig
    out: Path


def tokenizer_lowercases(tokenizer_json: Path) -> bool:
    normalizer = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("normalizer") or {}
    return bool(normalizer.get("lowercase", False))


def export_bundle(checkpoint: Path, out: Path, model_name: str | None = None) -> ExportResult:
    """Write visual/, textual/ and config.json for a checkpoint into `out` (created, must be empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    model, state = load_checkpoint(Path(checkpoint))
    model.eval()
    cfg = model.config
    size = cfg.image_size
    export_onnx(
        model.image,
        (torch.zeros(1, 3, size, size),),
        out / VISUAL_MODEL,
        ["pixels"],
        ["patches"],
        {"pixels": {0: "batch"}, "patches": {0: "batch"}},
    )
    export_onnx(
        _Textual(model),
        (torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)),
        out / TEXTUAL_MODEL,
        ["input_ids", "attention_mask"],
        ["tokens"],
        {
            "input_ids": {0: "batch", 1: "length"},
            "attention_mask": {0: "batch", 1: "length"},
            "tokens": {0: "batch", 1: "length"},
        },
    )
    shutil.copyfile(model.tokenizer_path, out / TOKENIZER_FILE)
    with torch.no_grad():
        grid = tuple(model.image(torch.zeros(1, 3, size, size)).shape[1:3])
    config = BundleConfig(
        model_name=model_name or f"assoc-{cfg.trunk}-d{cfg.embed_dim}",
        embed_dim=cfg.embed_dim,
        score=cfg.score,
        visual=VisualConfig(
            image_size=(size, size),
            mean=tuple(model.mean),
            std=tuple(model.std),
            grid=(int(grid[0]), int(grid[1])),
            stride=model.stride,
        ),
        textual=TextualConfig(
            max_length=cfg.max_length, lowercase=tokenizer_lowercases(model.tokenizer_path)
        ),
        training={
            "data": state.get("data", cfg.data),
            "epoch": int(state.get("epoch", -1)) + 1,
            "dev_metrics": state.get("dev", {}),
            "settings": cfg.to_dict(),
            "trunk_weights": model.trunk_weights_source,
            "text_model": str(model.text_model_path),
        },
    )
    return ExportResult(write_config(out, config), out)
