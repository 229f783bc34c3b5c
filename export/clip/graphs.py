"""An OpenCLIP model as the two graphs of an assoc bundle, each with a second, global output.

visual: pixels (N, 3, H, W) -> patches (N, gh, gw, D), one unit vector per ViT patch token, and
        image (N, D), the unit image embedding (open_clip's encode_image, normalised).
textual: input_ids, attention_mask (N, L) -> tokens (N, L, D), one unit vector per token, and
        sentence (N, D), the unit sentence embedding (open_clip's encode_text, normalised).

Both are built from the open_clip model's own modules (no weight is copied or re-implemented), so a
graph computes what open_clip computes; assoc.export.clip.parity measures how closely.

The patch vectors come in two variants (assoc.export.clip.DENSE_VARIANTS):

- "plain": the last block's output tokens through ln_post and proj, as CLIP's pooled token is made.
- "value": MaskCLIP's value path (Zhou et al., ECCV 2022): in the last block each patch token is
  replaced by the attention's value projection of itself (the attention matrix becomes the identity,
  so no token mixes in the others), through the attention's output projection; as ClearCLIP (Lan et
  al., ECCV 2024) found, the block's residual connection and feed-forward network are left out of
  that path. Then ln_post and proj. The image embedding is unchanged: it is the class token through
  the whole last block, so ranking by it is CLIP's ranking whichever variant the patches are.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...models.onnx_graph import export_onnx
from ...runtime.encoding.bundle import TEXTUAL_INPUTS, TEXTUAL_OUTPUT, VISUAL_INPUT, VISUAL_OUTPUT
from . import DENSE_VARIANTS

# The second output of each graph (the first are the bundle's usual VISUAL_OUTPUT and TEXTUAL_OUTPUT).
IMAGE_OUTPUT = "image"
SENTENCE_OUTPUT = "sentence"


class VisualGraph(nn.Module):
    """open_clip's VisionTransformer, returning (patches, image)."""

    def __init__(self, visual: nn.Module, dense: str) -> None:
        super().__init__()
        if dense not in DENSE_VARIANTS:
            raise ValueError(f"dense must be one of {DENSE_VARIANTS}, not {dense!r}")
        self.visual = visual
        self.dense = dense

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.visual
        blocks = visual.transformer.resblocks
        x = visual._embeds(pixels)  # patches + class token + positions, ln_pre
        for block in blocks[:-1]:
            x = block(x)
        last = blocks[-1]
        out = last(x)
        pooled, _ = visual._pool(out)
        image = F.normalize(pooled @ visual.proj, dim=-1)
        # value: each patch's own value, from the last block's input; plain: the block's output.
        tokens = last.ls_1(_value_path(last.attn, last.ln_1(x))) if self.dense == "value" else out
        tokens = tokens[:, 1:]
        patches = F.normalize(visual.ln_post(tokens) @ visual.proj, dim=-1)
        grid_h = pixels.shape[2] // visual.patch_size[0]
        grid_w = pixels.shape[3] // visual.patch_size[1]
        return patches.reshape(pixels.shape[0], grid_h, grid_w, -1), image


def _value_path(attention: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Each token's own value through the output projection: attention with the identity as its matrix."""
    width = x.shape[-1]
    bias = attention.in_proj_bias[2 * width :] if attention.in_proj_bias is not None else None
    value = F.linear(x, attention.in_proj_weight[2 * width :], bias)
    return attention.out_proj(value)


class TextualGraph(nn.Module):
    """open_clip's causal text transformer, returning (tokens, sentence) for L <= context_length tokens.

    Inside the graph the ids are padded with zeros to the full context, as open_clip's tokenizer pads
    them, so the transformer runs on exactly what open_clip runs on (and on one fixed length, which
    the exporter needs for nn.MultiheadAttention); the first L token vectors come out. The sentence is
    open_clip's argmax pooling (the end-of-text token has the highest id)."""

    def __init__(self, text: nn.Module) -> None:
        super().__init__()
        self.text = text  # open_clip's CLIP (the text parts live on it) or its TextTransformer
        self.context = int(text.positional_embedding.shape[0])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.text
        length = input_ids.shape[1]
        ids = F.pad(input_ids, (0, self.context - length))
        x = text.token_embedding(ids) + text.positional_embedding
        x = text.transformer(x, attn_mask=text.attn_mask)
        x = text.ln_final(x)
        projection = text.text_projection
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
        rows = torch.arange(x.shape[0])
        sentence = F.normalize(x[rows, ids.argmax(dim=-1)], dim=-1)
        # With a causal mask no token sees the padding after it. Padding's own vectors are zeroed: the
        # mask stays an input of the graph, as the bundle contract names it.
        tokens = F.normalize(x[:, :length], dim=-1) * attention_mask.unsqueeze(-1).to(x.dtype)
        return tokens, sentence


def write_graphs(model: nn.Module, dense: str, image_size: int, visual_path: Path, textual_path: Path) -> None:
    """Export both graphs: dynamic batch (and token count), a fixed image size (the position embeddings
    are the model's, for that size), the opset of assoc.models.onnx_graph."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX form; the composed one does
    try:
        export_onnx(
            VisualGraph(model.visual, dense),
            (torch.zeros(1, 3, image_size, image_size),),
            visual_path,
            [VISUAL_INPUT],
            [VISUAL_OUTPUT, IMAGE_OUTPUT],
            {name: {0: "batch"} for name in (VISUAL_INPUT, VISUAL_OUTPUT, IMAGE_OUTPUT)},
        )
        export_onnx(
            TextualGraph(getattr(model, "text", model)),
            (torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)),
            textual_path,
            list(TEXTUAL_INPUTS),
            [TEXTUAL_OUTPUT, SENTENCE_OUTPUT],
            {
                **{name: {0: "batch", 1: "length"} for name in (*TEXTUAL_INPUTS, TEXTUAL_OUTPUT)},
                SENTENCE_OUTPUT: {0: "batch"},
            },
        )
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
