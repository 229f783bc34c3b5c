"""Global + local fused ranking score on a bundle: dev recall of (1 - lambda) MISA + lambda * global cosine.

    python bench/fused_score.py [--model BUNDLE] [--data ../shared/data/flickr8k] [--split dev]
                                [--lambdas 0,0.1,0.2,0.3,0.5,1.0] [--weights bundle|uniform]

score(photo, query) = (1 - lambda) MISA(grid, word vectors) + lambda cos(photo's global vector, query's
sentence vector): assoc.runtime.search.query's score, with the vectors every store keeps (float16) and
the bundle's token weights folded into the word vectors (--weights bundle, the default; uniform ignores
them in MISA). lambda = 0 is plain MISA, 1 the global cosine alone; the bundle's own lambda
is config.json "ranking" (`assoc ranking`). The bundle's dev photos and captions are encoded once on ONNX
Runtime and cached under --cache (keyed by the bundle id, its token weights and the split), so a sweep
re-runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from assoc.evaluation.metrics import recall_metrics
from assoc.evaluation.retrieval import encode_photos
from assoc.models.datasets import five_caption_eval_set, load_split
from assoc.runtime.encoding.bundle import load_bundle
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.search.query import Query
from assoc.runtime.search.rerank import scan_kernel

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "runtime" / "default_bundle"
DATA = ROOT.parent / "shared" / "data" / "flickr8k"


def encode_split(bundle_dir: Path, data: Path, split: str, cache: Path) -> dict[str, np.ndarray]:
    """Grids (N, P, D), padded word vectors (C, T, D) with their mask (C, T), and caption -> image."""
    bundle = load_bundle(bundle_dir)
    weights_id = (bundle.config.ranking.token_weights_sha256 or "uniform")[:12]
    where = cache / f"{bundle.bundle_id}-{weights_id}-{data.name}-{split}"
    names = ("grids", "pooled", "words", "mask", "weights", "sentences", "caption_image")
    if all((where / f"{n}.npy").is_file() for n in names):
        return {n: np.load(where / f"{n}.npy") for n in names}
    items, report = load_split(data, split)
    print(f"{split}: {report.summary()}", file=sys.stderr)
    images, captions, caption_image = five_caption_eval_set(items)
    start = time.perf_counter()
    grids, pooled = encode_photos(ImageEncoder(bundle, "cpu"), images)
    print(f"encoded {len(images)} photos in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    text = TextEncoder(bundle, "cpu")
    queries = [q for s in range(0, len(captions), 256) for q in text.encode(list(captions[s : s + 256]))]
    width = max(len(q.vectors) for q in queries)
    words = np.zeros((len(queries), width, grids.shape[-1]), dtype=np.float32)
    mask = np.zeros((len(queries), width), dtype=bool)
    weights = np.zeros((len(queries), width), dtype=np.float32)
    for i, q in enumerate(queries):
        words[i, : len(q.vectors)], mask[i, : len(q.vectors)] = q.vectors, True
        weights[i, : len(q.vectors)] = 1.0 if q.weights is None else q.weights
    sentences = np.stack([Query.of_text(q, bundle.config).pooled for q in queries])
    out = {
        "grids": grids,
        "pooled": pooled,
        "words": words,
        "mask": mask,
        "weights": weights,
        "sentences": sentences,
        "caption_image": np.asarray(caption_image),
    }
    where.mkdir(parents=True, exist_ok=True)
    for n, a in out.items():
        np.save(where / f"{n}.npy", a)
    return out


def score_parts(enc: dict[str, np.ndarray], weighted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) MISA and (N, C) global cosine, as search computes them: search's scan kernel over the
    float16 grids (token weights folded into the word vectors when weighted)."""
    grids = enc["grids"]  # (N, P, D) float16
    words, mask = enc["words"], enc["mask"]
    if weighted:
        scale = enc["weights"] * (mask.sum(1, keepdims=True) / enc["weights"].sum(1, keepdims=True))
        words = words * scale[..., None]
    kernel = scan_kernel("misa", layout="float16")
    misa = np.empty((len(grids), len(words)), dtype=np.float32)
    for c in range(len(words)):
        misa[:, c] = kernel.scores(grids, np.ascontiguousarray(words[c, mask[c]].T, dtype=np.float32))
    return misa, enc["pooled"].astype(np.float32) @ enc["sentences"].T


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SHIPPED)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "fused-cache")
    ap.add_argument("--lambdas", default="0,0.1,0.2,0.3,0.5,1.0")
    ap.add_argument("--weights", choices=("bundle", "uniform"), default="bundle", help="token weights to rank by")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args(argv)
    enc = encode_split(args.model, args.data, args.split, args.cache)
    misa, pooled = score_parts(enc, args.weights == "bundle")
    rows = []
    for lam in [float(x) for x in args.lambdas.split(",")]:
        m = recall_metrics((1 - lam) * misa + lam * pooled, enc["caption_image"])
        rows.append({"lambda": lam, **m})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"bundle {args.model}  {args.split}: {len(misa)} photos, {misa.shape[1]} captions, {args.weights} weights")
    print("| lambda | t2i R@1 | R@5 | R@10 | i2t R@1 | R@5 | R@10 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        t, i = r["text_to_image"], r["image_to_text"]
        print(f"| {r['lambda']} | {t['R@1']} | {t['R@5']} | {t['R@10']} | {i['R@1']} | {i['R@5']} | {i['R@10']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
