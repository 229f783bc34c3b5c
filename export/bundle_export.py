"""Checkpoint -> model bundle: two ONNX graphs, the tokenizer and a self-describing config.json."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..models.config import LOCALIZE_SCALE
from ..models.model import MatchmapModel, load_checkpoint
from ..models.onnx_graph import export_onnx
from ..runtime.encoding.bundle import (
    TEXTUAL_INPUTS,
    TEXTUAL_MODEL,
    TEXTUAL_OUTPUT,
    TOKENIZER_FILE,
    VISUAL_INPUT,
    VISUAL_MODEL,
    VISUAL_OUTPUT,
    BundleConfig,
    FirstStageConfig,
    LocalizeConfig,
    TextualConfig,
    VisualConfig,
    write_config,
)
from .ranking import write_ranking
from .vocabulary import build_vocabulary


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


def export_bundle(checkpoint: Path, out: Path, model_name: str | None = None) -> ExportResult:
    """Write visual/, textual/ and config.json for a checkpoint into `out` (created, must be empty),
    and a vocabulary (assoc.export.vocabulary) when the training captions are at hand."""
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
        [VISUAL_INPUT],
        [VISUAL_OUTPUT],
        {  # free height and width: localize runs the same encoder on a larger input (LocalizeConfig)
            VISUAL_INPUT: {0: "batch", 2: "height", 3: "width"},
            VISUAL_OUTPUT: {0: "batch", 1: "grid_height", 2: "grid_width"},
        },
    )
    export_onnx(
        _Textual(model),
        (torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)),
        out / TEXTUAL_MODEL,
        list(TEXTUAL_INPUTS),
        [TEXTUAL_OUTPUT],
        {name: {0: "batch", 1: "length"} for name in (*TEXTUAL_INPUTS, TEXTUAL_OUTPUT)},
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
        ),
        textual=TextualConfig(max_length=cfg.max_length),
        first_stage=FirstStageConfig(),  # measured on the shipped bundle by bench/first_stage.py
        localize=LocalizeConfig(image_size=(LOCALIZE_SCALE * size, LOCALIZE_SCALE * size)),
        training={
            "data": state.get("data", cfg.data),
            "epoch": int(state.get("epoch", -1)) + 1,
            "dev_metrics": state.get("dev", {}),
            "settings": cfg.to_dict(),
            "trunk_weights": model.trunk_weights_source,
            "text_model": str(model.text_model_path),
        },
    )
    final = write_config(out, config)
    if cfg.token_weights != "uniform":  # the weights the model was trained with rank its queries too
        final = replace(final, ranking=write_ranking(out, model.token_weight.numpy(), final.ranking.global_weight))
    data = Path(str(config.training["data"]))
    if data.exists():  # the training captions are at hand: their words become the bundle's vocabulary
        final = replace(final, vocabulary=build_vocabulary(out, data, split=cfg.train_split))
    return ExportResult(final, out)
