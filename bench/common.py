"""Helpers shared by the benchmark scripts in bench/ (run those as `python bench/NAME.py`)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from assoc.api.settings import default_model_path
from assoc.runtime.encoding.bundle import Bundle, load_bundle
from assoc.runtime.stores.base import PhotoRecord

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the project's shared real data
FLICKR = DATA / "flickr8k"
SYNTHETIC_BATCH = 2000  # photos generated and added per store.add call
CACHE = Path(__file__).resolve().parents[1] / "runs" / "bench-cache"  # encoded photos and galleries kept between runs

T = TypeVar("T")


def add_common_options(parser: argparse.ArgumentParser, tmp: str) -> None:
    """The options the benchmarks share: --model, --cache, --tmp (`tmp` says what goes there), --json."""
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="what is kept between runs")
    parser.add_argument("--tmp", type=Path, help=f"where {tmp} go (default: system temp)")
    parser.add_argument("--json", help="also write the figures to this file")


def open_bundle(path: str | None) -> Bundle:
    """The bundle at path, else the default one (ASSOC_MODEL, then the shipped bundle)."""
    where = Path(path) if path else default_model_path()
    if where is None:
        raise SystemExit("no model bundle: pass --model DIR or set ASSOC_MODEL")
    return load_bundle(where)


def latencies(fn: Callable[[T], object], queries: list[T], repeats: int) -> list[float]:
    """Seconds per call of fn over the queries, --repeats passes, after one untimed warm-up call."""
    fn(queries[0])
    out = []
    for _ in range(repeats):
        for query in queries:
            start = time.perf_counter()
            fn(query)
            out.append(time.perf_counter() - start)
    return out


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 of some durations, in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"p50_ms": statistics.median(ms), "p95_ms": p95}


def synthetic_batches(
    start: int, stop: int, grid: tuple[int, int], dim: int, seed: int = 0
) -> Iterator[tuple[list[PhotoRecord], np.ndarray]]:
    """Photos start..stop-1 as (records, unit-normalised float16 grids (n, h, w, D)), in batches.

    A batch's content depends only on the seed and its first index, so equal calls give equal data.
    """
    for first in range(start, stop, SYNTHETIC_BATCH):
        n = min(SYNTHETIC_BATCH, stop - first)
        rng = np.random.default_rng([seed, first])
        grids = rng.standard_normal((n, *grid, dim), dtype=np.float32)
        grids /= np.linalg.norm(grids, axis=-1, keepdims=True)
        records = [
            PhotoRecord(f"/synthetic/{i:07d}.jpg", 1, 0, f"{i:032x}", grid, 640, 480) for i in range(first, first + n)
        ]
        yield records, grids.astype(np.float16)


def flickr_dev_images() -> list[str]:
    """The 1,000 file names of the official Flickr8k dev split."""
    return (FLICKR / "Flickr_8k.devImages.txt").read_text(encoding="utf-8").split()


def dev_queries(count: int | None = None) -> list[str]:
    """The first caption of each Flickr8k dev photo, in the split's order (the first `count` of them):
    the benchmarks' real queries."""
    return [caption for _, caption in flickr_captions(flickr_dev_images(), per_image=1)][:count]


def flickr_captions(images: list[str], per_image: int = 5) -> list[tuple[str, str]]:
    """(image, caption) pairs from Flickr8k.token.txt: the first per_image captions of each image, in
    the order of images."""
    captions: dict[str, list[str]] = {image: [] for image in images}
    for line in (FLICKR / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, _, caption = line.partition("\t")
        found = captions.get(key.split("#")[0])
        if found is not None and caption.strip() and len(found) < per_image:
            found.append(caption.strip())
    return [(image, caption) for image in images for caption in captions[image]]


def write_json(path: str | None, figures: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {path}")
