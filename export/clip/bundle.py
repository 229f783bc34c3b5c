"""An OpenCLIP model -> a model bundle: both graphs, the converted tokenizer, config.json, a parity check.

The bundle is an ordinary one (assoc.runtime.encoding.bundle) that declares the two global outputs the
runtime ranks by: visual.global_output (the image embedding) and textual.sentence_output (the sentence
embedding). Its ranking is λ = DEFAULT_GLOBAL_WEIGHT with uniform token weights; `training` records
where the weights came from, which patch vectors the bundle holds ("dense") and the parity figures.
Photos are squashed to the input size as for every assoc bundle (open_clip resizes the short side and
crops the centre): a heatmap then covers the whole photo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...runtime.encoding.bundle import (
    TEXTUAL_MODEL,
    TOKENIZER_FILE,
    VISUAL_MODEL,
    BundleConfig,
    RankingConfig,
    TextualConfig,
    VisualConfig,
    sha256_file,
    write_config,
)
from ...runtime.errors import AssocError
from . import DEFAULT_DENSE, DEFAULT_GLOBAL_WEIGHT, DENSE_VARIANTS
from .graphs import IMAGE_OUTPUT, SENTENCE_OUTPUT, write_graphs
from .parity import PARITY_BOUND, ClipParity, measure_clip_parity
from .source import ClipSource, load_open_clip
from .tokenizer import write_clip_tokenizer

# What the export's own parity check encodes: these captions (punctuation, digits, a non-ASCII word) and
# the photos it is given, or as many images of seeded noise in the model's input space.
PARITY_CAPTIONS = ("a dog runs across the grass", "two children play on the beach .", "3 cafés, 12 tables & a cat")
PARITY_IMAGES = 2


@dataclass(frozen=True)
class ClipExport:
    out: Path
    config: BundleConfig  # config.json as written
    parity: ClipParity


def export_open_clip(
    arch: str,
    pretrained: str | None,
    out: Path,
    *,
    dense: str = DEFAULT_DENSE,
    image_size: int | None = None,
    name: str | None = None,
    parity_photos: Sequence[Path] = (),
    seed: int = 0,
) -> ClipExport:
    """Write a bundle for open_clip's `arch` with the weights `pretrained` names (a file or a cached tag;
    None: random weights from `seed`, for tests) into `out` (created, must be empty).

    The parity check encodes parity_photos (none: seeded noise in the model's input space); a difference
    over PARITY_BOUND is an AssocError, and the bundle stays for inspection."""
    if dense not in DENSE_VARIANTS:
        raise AssocError(f"--dense {dense}: choose one of {', '.join(DENSE_VARIANTS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AssocError(f"{out} exists and is not an empty folder; give --out a new one")
    source = load_open_clip(arch, pretrained, image_size, seed)
    size = source.image_size
    write_graphs(source.model, dense, size, out / VISUAL_MODEL, out / TEXTUAL_MODEL)
    write_clip_tokenizer(source.tokenizer, out / TOKENIZER_FILE)
    config = BundleConfig(
        model_name=name or _model_name(arch, pretrained),
        embed_dim=int(source.model.visual.output_dim),
        score="misa",
        visual=VisualConfig(
            image_size=(size, size), mean=source.mean, std=source.std, grid=source.grid, global_output=IMAGE_OUTPUT
        ),
        textual=TextualConfig(max_length=source.context_length, sentence_output=SENTENCE_OUTPUT),
        ranking=RankingConfig(global_weight=DEFAULT_GLOBAL_WEIGHT),
        training=_provenance(source, dense, seed),
    )
    write_config(out, config)
    if parity_photos:
        pixels = photo_pixels(parity_photos, size, source.mean, source.std)
    else:
        pixels = np.random.default_rng(seed).standard_normal((PARITY_IMAGES, 3, size, size), dtype=np.float32)
    parity = measure_clip_parity(source, dense, out, pixels, PARITY_CAPTIONS)
    final = write_config(out, replace(config, training={**config.training, "parity_max_abs": parity.to_dict()}))
    if parity.worst > PARITY_BOUND:
        raise AssocError(
            f"the exported graphs differ from open_clip by up to {parity.worst:.1e} (bound {PARITY_BOUND:.0e}:"
            f" {parity.summary()}); the bundle in {out} is not fit to use"
        )
    return ClipExport(out, final, parity)


def _provenance(source: ClipSource, dense: str, seed: int) -> dict[str, Any]:
    import open_clip

    checkpoint = source.checkpoint
    return {
        "source": "open_clip",
        "open_clip_version": open_clip.__version__,
        "arch": source.arch,
        "pretrained": source.pretrained,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint is not None else None,
        "random_weights_seed": seed if checkpoint is None else None,
        "quick_gelu": source.quick_gelu,
        "image_size": source.image_size,
        "dense": dense,
        "resize": "whole frame squashed to image_size (open_clip: shortest side resized, centre cropped)",
    }


def _model_name(arch: str, pretrained: str | None) -> str:
    """open-clip-ARCH-TAG (or the file's stem, or "random"), in the characters a gallery name keeps."""
    label = "random" if pretrained is None else Path(pretrained).stem if Path(pretrained).suffix else pretrained
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"open-clip-{arch}-{label}")


def photo_pixels(photos: Sequence[Path], size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Photos as the bundle will see them (squashed to size x size), for the parity check."""
    from ...models.features import load_pixels

    return np.stack([load_pixels(p, size, mean, std) for p in photos])
