"""Does a bundle compute what its checkpoint computes? Compared on real photos and captions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.features import load_pixels
from ..models.model import MatchmapModel
from ..runtime.encoding.bundle import load_bundle
from ..runtime.encoding.encoders import ImageEncoder, TextEncoder


@dataclass(frozen=True)
class Parity:
    visual_max_abs: float
    textual_max_abs: float

    def check(self, visual_bound: float, textual_bound: float) -> None:
        if self.visual_max_abs > visual_bound or self.textual_max_abs > textual_bound:
            raise AssertionError(
                f"export parity failed: visual max |diff| {self.visual_max_abs:.2e} (bound {visual_bound:.0e}), "
                f"textual {self.textual_max_abs:.2e} (bound {textual_bound:.0e})"
            )


@torch.no_grad()
def measure_parity(
    model: MatchmapModel, bundle_dir: Path, images: Sequence[Path], captions: Sequence[str]
) -> Parity:
    """Largest absolute difference of patch grids and of scoring token vectors, torch vs ONNX Runtime."""
    model.eval()
    bundle = load_bundle(bundle_dir)
    size = model.config.image_size
    pixels = np.stack([load_pixels(p, size, model.mean, model.std) for p in images])
    onnx_grids = ImageEncoder(bundle, device="cpu").encode_arrays(pixels)
    torch_grids = model.image(torch.from_numpy(pixels)).numpy()
    text = TextEncoder(bundle, device="cpu")
    onnx_words = text.encode(list(captions))
    batch = text.tokenizer(list(captions))
    torch_tokens = model.text(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)).numpy()
    textual = max(
        float(np.abs(torch_tokens[i][batch.word_mask[i]] - q.vectors).max()) for i, q in enumerate(onnx_words)
    )
    return Parity(float(np.abs(onnx_grids - torch_grids).max()), textual)
