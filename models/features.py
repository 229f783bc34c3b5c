"""Running the frozen lower parts of both branches once, so training touches only the trainable tops.

Image features are computed on ONNX Runtime from a temporary export of the frozen stages (several
times faster than eager torch on a CPU); they are cached on disk, keyed by everything that shapes them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..runtime.encoding.tokenizer import QueryTokenizer, TokenBatch
from ..runtime.imaging.images import load_image
from ..runtime.imaging.preprocess import image_to_array
from .augment import augment, flipped_view
from .model import MatchmapModel
from .onnx_graph import export_onnx

Progress = Callable[[int], None]


def load_pixels(
    path: Path,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment_seed: int | None = None,
    flip: bool = False,
) -> np.ndarray:
    """One photo as the model sees it: the runtime's loading and preprocessing, shared with search.

    With augment_seed, a repeatable augmented view of it (models.augment) instead, mirrored if `flip`.
    """
    img = load_image(path, min_size=(size, size)).image
    if augment_seed is not None:
        img = augment(img, np.random.default_rng(augment_seed), flip)
    return image_to_array(img, (size, size), tuple(mean), tuple(std))


def image_features(
    model: MatchmapModel,
    paths: Sequence[Path],
    cache_dir: Path | None = None,
    batch_size: int = 32,
    on_batch: Progress | None = None,
    view: int = 0,
    size: int | None = None,
) -> torch.Tensor:
    """Frozen image features (N, C, h, w) as float16, from the disk cache when it has them.

    view 0 is each photo as search sees it; view v > 0 is a repeatable augmented view of it, mirrored
    where the run flips views (models.augment.flipped_view) and the view is at the run's own size.
    size: the input's side in pixels (default the run's image_size).
    """
    cfg = model.config
    size = size or cfg.image_size
    flip = size == cfg.image_size and flipped_view(view, cfg.flip_views)
    key = _cache_key(
        {
            "trunk": cfg.trunk,
            "weights": model.trunk_weights_source,
            "cut": len(model.image.frozen),
            "size": size,
            "paths": [str(p) for p in paths],
            **({"view": view} if view else {}),
            **({"flip": True} if flip else {}),
        }
    )
    cached = cache_dir / f"image-{key}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        return torch.from_numpy(np.load(cached))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(
            model.image.frozen,
            (torch.zeros(1, 3, size, size),),
            Path(tmp) / "frozen.onnx",
            ["pixels"],
            ["features"],
            {"pixels": {0: "n"}, "features": {0: "n"}},
        )
        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        chunks = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            for start in range(0, len(paths), batch_size):
                batch = paths[start : start + batch_size]
                seeds = [view * 1_000_003 + start + i if view else None for i in range(len(batch))]
                pixels = np.stack(
                    list(pool.map(lambda p, s: load_pixels(p, size, model.mean, model.std, s, flip), batch, seeds))
                )
                (out,) = session.run(None, {"pixels": pixels})
                chunks.append(out.astype(np.float16))
                if on_batch:
                    on_batch(len(batch))
    feats = np.concatenate(chunks)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, feats)
    return torch.from_numpy(feats)


def tokenize(model: MatchmapModel, captions: Sequence[str]) -> TokenBatch:
    return QueryTokenizer(model.tokenizer_path, model.config.max_length)(list(captions))


@torch.inference_mode()
def text_features(
    model: MatchmapModel, captions: Sequence[str], cache_dir: Path | None = None, batch_size: int = 512
) -> tuple[TokenBatch, torch.Tensor]:
    """Tokens and frozen text features (N, L, H) as float16, padded to the longest caption.

    Captions run in batches of similar length, so padding costs little; results are cached on disk.
    """
    tokens = tokenize(model, captions)
    key = _cache_key({"text": str(model.text_model_path), "split": model.text.split, "captions": list(captions)})
    cached = cache_dir / f"text-{key}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        return tokens, torch.from_numpy(np.load(cached))
    ids = torch.from_numpy(tokens.input_ids)
    mask = torch.from_numpy(tokens.attention_mask)
    lengths = mask.sum(1)
    order = torch.argsort(lengths)
    out = torch.zeros(*ids.shape, model.bert_width, dtype=torch.float16)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        out[rows, :width] = model.text.features(ids[rows, :width], mask[rows, :width]).half()
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, out.numpy())
    return tokens, out


def _cache_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
