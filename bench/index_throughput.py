"""Indexing throughput: images/s of the whole index pipeline against the bare visual encoder.

Three stages, timed in one process on the same photos:
- decode:  load_image (draft-mode JPEG, EXIF) + ImageEncoder.prepare on a pool of --workers threads;
- encoder: ImageEncoder.encode_arrays on the preprocessed arrays already in memory, --batch-size a batch;
- index:   assoc.runtime.indexing.indexer.index_paths into a fresh temporary Gallery (walk, content hash, decode,
           preprocess, encode, one fsynced commit per batch).
Each is printed as images/s and as a ratio to the encoder. index/encoder is the share of the model's
speed that indexing keeps; a decode figure below the encoder's means decoding bounds the pipeline.
Every photo is read once before timing, so all stages see a warm page cache; the index stage's fsyncs
go to the disk under --tmp. With --repeats R each figure is the median of R runs. The preprocessed
arrays are held in memory for the encoder stage (0.6 MB a photo at 224x224).

Run (defaults: 300 Flickr8k photos at 224x224 plus the 80 full-size COCO photos, the default bundle):
    python bench/index_throughput.py
    python bench/index_throughput.py --folders ~/Pictures --count 2000 --device cuda --json index.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from common import DATA, open_bundle, write_json

from assoc.runtime.encoding.bundle import Bundle
from assoc.runtime.encoding.devices import DEVICES
from assoc.runtime.encoding.encoders import ImageEncoder
from assoc.runtime.imaging.images import load_image
from assoc.runtime.indexing.indexer import IndexSummary, index_paths
from assoc.runtime.indexing.walk import walk
from assoc.runtime.stores.gallery import Gallery

T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folders", nargs="+", type=Path, default=[DATA / "flickr8k" / "images", DATA / "coco-boxes" / "images"]
    )
    parser.add_argument("--count", type=int, default=300, help="at most this many photos from each folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="decoding threads")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary gallery goes (default: system temp)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    encoder = ImageEncoder(bundle, args.device)
    files: list[str] = []
    for folder in args.folders:
        found = [f.path for f in walk([folder]).files[: args.count]]
        print(f"{len(found):6d} photos from {folder}")
        files += found
    if not files:
        raise SystemExit("no photos found")
    for path in files:  # warm the page cache so no stage pays for the first read
        Path(path).read_bytes()

    decode_rate, pixels = timed(lambda: decode_all(encoder, files, args.workers), len(files), args.repeats)
    encode_rate = encoder_rate(encoder, np.stack(pixels), args.batch_size, args.repeats)
    del pixels
    index_rate, summary = timed(
        lambda: index_all(bundle, encoder, files, args.batch_size, args.workers, args.tmp), len(files), args.repeats
    )
    if summary.added + summary.reused != len(files):
        raise SystemExit(f"index_paths stored {summary.added + summary.reused} of {len(files)} photos")

    provider = encoder.session.get_providers()[0]
    height, width = encoder.config.image_size
    grid_h, grid_w = encoder.config.grid
    print(
        f"bundle {bundle.bundle_id}: input {height}x{width}, grid {grid_h}x{grid_w}, "
        f"D {bundle.config.embed_dim}; {provider}; batch {args.batch_size}, {args.workers} workers, "
        f"{len(files)} photos, median of {args.repeats}"
    )
    print(f"{'stage':36s} {'images/s':>9s} {'vs encoder':>11s}")
    for name, value in (
        ("decode (load_image + prepare)", decode_rate),
        ("encoder (encode_arrays)", encode_rate),
        ("index (index_paths -> Gallery)", index_rate),
    ):
        print(f"{name:36s} {value:9.1f} {value / encode_rate:11.2f}")
    # Inside one index run (the last one timed): seconds per stage, as `assoc index --verbose` prints them.
    print("index run, " + ", ".join(f"{stage} {sec:.2f} s" for stage, sec in summary.seconds.items()))
    write_json(
        args.json,
        {
            "bundle": bundle.bundle_id,
            "provider": provider,
            "photos": len(files),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "repeats": args.repeats,
            "decode_images_per_s": decode_rate,
            "encoder_images_per_s": encode_rate,
            "index_images_per_s": index_rate,
            "index_vs_encoder": index_rate / encode_rate,
        },
    )


def decode_all(encoder: ImageEncoder, files: list[str], workers: int) -> list[np.ndarray]:
    height, width = encoder.config.image_size

    def prepare(path: str) -> np.ndarray:
        return encoder.prepare(load_image(path, min_size=(width, height)).image)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(prepare, files))


def encoder_rate(encoder: ImageEncoder, pixels: np.ndarray, batch_size: int, repeats: int) -> float:
    def encode_all() -> None:
        for start in range(0, len(pixels), batch_size):
            encoder.encode_arrays(pixels[start : start + batch_size])

    encoder.encode_arrays(pixels[:batch_size])  # warm-up: the first run allocates
    return timed(encode_all, len(pixels), repeats)[0]


def index_all(
    bundle: Bundle, encoder: ImageEncoder, files: list[str], batch_size: int, workers: int, tmp: Path | None
) -> IndexSummary:
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        gallery = Gallery.open(Path(folder) / "gallery", bundle.bundle_id, bundle.config.embed_dim)
        with gallery:
            return index_paths(gallery, encoder, files, batch_size=batch_size, workers=workers)


def timed(stage: Callable[[], T], images: int, repeats: int) -> tuple[float, T]:
    """Median images/s of a stage over some runs, and what its last run returned."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = stage()
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates), result


if __name__ == "__main__":
    main()
