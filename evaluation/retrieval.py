"""Retrieval evaluation of a bundle on ONNX Runtime (the torch-free twin of assoc.models.evaluate)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..runtime.encoding.bundle import Bundle
from ..runtime.encoding.encoders import ImageEncoder, TextEncoder
from ..runtime.imaging.images import load_image
from ..runtime.scoring.first_stage import pooled_vectors
from ..runtime.search.query import Query
from ..runtime.search.rerank import GridChunk, chunk_scores
from .metrics import recall_metrics


def encode_photos(encoder: ImageEncoder, paths: Sequence[Path], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(N, P, D) float16 grids and (N, D) float16 global vectors, as a store keeps them; decoding runs
    on threads while the previous batch is encoded."""
    size = encoder.config.image_size

    def prepare(path: Path) -> np.ndarray:
        return encoder.prepare(load_image(path, min_size=(size[1], size[0])).image)

    grids, pooled = [], []
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
        pending = pool.map(lambda batch: np.stack([prepare(p) for p in batch]), batches)
        for pixels in pending:
            out, globals_ = encoder.encode_with_globals(pixels)
            out = out.astype(np.float16)
            pooled.append(pooled_vectors(out, globals_))
            grids.append(out.reshape(out.shape[0], -1, out.shape[-1]))
    return np.concatenate(grids), np.concatenate(pooled)


def evaluate_bundle(
    bundle: Bundle,
    images: Sequence[Path],
    captions: Sequence[str],
    caption_image: Sequence[int],
    device: str = "auto",
    batch_size: int = 32,
) -> dict:
    """Recall@1/5/10 and median rank both ways, in the shape `assoc eval --json` prints.

    Photos are ranked as a search ranks them (assoc.runtime.search): int8 grids quantized as a gallery
    stores them, the bundle's token weights and fused global term, the same scan kernel."""
    grids, pooled = encode_photos(ImageEncoder(bundle, device), images, batch_size)
    text = TextEncoder(bundle, device)
    config = bundle.config
    paths = [str(p) for p in images]
    scores = np.empty((len(images), len(captions)), dtype=np.float32)
    chunk = GridChunk.of_grids(paths, grids, pooled)
    for start in range(0, len(captions), 256):
        for j, encoded in enumerate(text.encode(list(captions[start : start + 256]))):
            scores[:, start + j] = chunk_scores(Query.of_text(encoded, config), chunk)
    result = recall_metrics(scores, np.asarray(caption_image))
    return {**result, "images": len(images), "captions": len(captions)}
