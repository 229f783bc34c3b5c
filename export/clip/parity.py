"""Does a converted bundle compute what open_clip computes? Each of its four outputs, on ONNX Runtime,
against the torch model it came from.

The image and sentence embeddings are compared with open_clip's own encode_image / encode_text; the
token vectors with encode_text's per-token states (its ln_final output, projected); the patch vectors,
which open_clip has no function for in the value variant, with the torch graph (assoc.export.clip.graphs).
The text side is fed the ids the bundle's tokenizer makes, zero-padded to the context as open_clip pads,
so this measures the graphs; the tokenizer is checked on its own (tests/test_open_clip_export.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...runtime.encoding.bundle import load_bundle
from ...runtime.encoding.providers import open_session
from ...runtime.encoding.tokenizer import QueryTokenizer
from .graphs import IMAGE_OUTPUT, SENTENCE_OUTPUT, VisualGraph
from .source import ClipSource

# Largest |difference| a float32 export may show on unit vectors: ONNX Runtime reorders sums, nothing more.
PARITY_BOUND = 1e-4


@dataclass(frozen=True)
class ClipParity:
    patches: float
    image: float
    tokens: float
    sentence: float

    @property
    def worst(self) -> float:
        return max(self.patches, self.image, self.tokens, self.sentence)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def summary(self) -> str:
        return ", ".join(f"{name} {value:.1e}" for name, value in self.to_dict().items())


@torch.no_grad()
def measure_clip_parity(
    source: ClipSource, dense: str, bundle_dir: Path, pixels: np.ndarray, captions: Sequence[str]
) -> ClipParity:
    """Max |torch - ONNX Runtime| of patches, image, tokens (real tokens only) and sentence."""
    bundle = load_bundle(bundle_dir, check_vocabulary=False)
    model = source.model
    visual = open_session(bundle.visual_path, "cpu")
    names = [bundle.config.visual.output_name, IMAGE_OUTPUT]
    onnx_patches, onnx_image = visual.run(names, {bundle.config.visual.input_name: pixels})
    batch = torch.from_numpy(pixels)
    torch_patches, _ = VisualGraph(model.visual, dense)(batch)
    torch_image = model.encode_image(batch, normalize=True)

    tokenizer = QueryTokenizer(bundle.tokenizer_path, bundle.config.textual.max_length)
    tokens = tokenizer(list(captions))
    textual = open_session(bundle.textual_path, "cpu")
    ids_name, mask_name = bundle.config.textual.input_names
    onnx_tokens, onnx_sentence = textual.run(
        [bundle.config.textual.output_name, SENTENCE_OUTPUT],
        {ids_name: tokens.input_ids, mask_name: tokens.attention_mask},
    )
    ids = torch.zeros(len(captions), source.context_length, dtype=torch.long)
    ids[:, : tokens.input_ids.shape[1]] = torch.from_numpy(tokens.input_ids)
    text = getattr(model, "text", model)
    states = []
    hook = text.ln_final.register_forward_hook(lambda _module, _inputs, output: states.append(output))
    try:
        torch_sentence = model.encode_text(ids, normalize=True)
    finally:
        hook.remove()
    projection = text.text_projection
    projected = projection(states[0]) if isinstance(projection, torch.nn.Linear) else states[0] @ projection
    torch_tokens = F.normalize(projected, dim=-1)[:, : tokens.input_ids.shape[1]].numpy()
    real = tokens.attention_mask.astype(bool)
    return ClipParity(
        patches=_max_abs(onnx_patches, torch_patches.numpy()),
        image=_max_abs(onnx_image, torch_image.numpy()),
        tokens=_max_abs(onnx_tokens[real], torch_tokens[real]),
        sentence=_max_abs(onnx_sentence, torch_sentence.numpy()),
    )


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())
