"""Peak memory (RSS) of decoding and indexing a folder of hostile images: small files that declare huge
16-bit images, and big ones just under the megapixel cap.

Each scenario runs in a fresh process (peak RSS is per process) and reports its ru_maxrss; the median
over --rounds is printed. The baseline, in the same run, is the decoder as it was before decode memory
was bounded (reproduced below as `_unbounded_load`: a 120 MP cap, the whole image decoded, 16-bit
greyscale converted through float64 at full size) on the same files and the same number of threads.

    python bench/decode_memory.py                 # [--workers 3] [--rounds 3] [--tmp DIR] [--json FILE]

Scenarios: `idle` (imports and the encoder, nothing decoded: the floor); `unbounded decode` (the old
decoder + preprocess on --workers threads) and `decode` (load_image + preprocess, same threads), each on
all the files and on the two under the cap alone (the same work for both decoders); and `index`
(index_paths into a fresh gallery with the default worker count, the real command's path).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from assoc.runtime.imaging.pillow_decode import MAX_MEGAPIXELS

HOSTILE = [  # (file name, (width, height), mode): flat images, so each file is small on disk
    ("huge_16bit_a.png", (11000, 10000), "I;16"),  # 110 MP in a file of ~240 KB
    ("huge_16bit_b.png", (11000, 10000), "I;16"),
    ("huge_16bit_c.png", (11000, 10000), "I;16"),
    ("under_cap_16bit.png", (9800, 9800), "I;16"),  # 96 MP: decoded
    ("under_cap_rgb.png", (9800, 9800), "RGB"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3, help="decoding threads of the decode scenarios")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=None, help="where the images and galleries go")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_run_child(args.child[0], Path(args.child[1]), args.workers)))
        return
    root = Path(tempfile.mkdtemp(prefix="assoc-bench-decode-", dir=args.tmp))
    try:
        folder = root / "hostile"
        sizes = _make_images(folder)
        print(f"{len(sizes)} images, {sum(sizes.values()) / 1e6:.2f} MB on disk:")
        for name, size in sizes.items():
            print(f"  {name:22s} {size / 1e3:8.0f} KB")
        print(f"cap: {MAX_MEGAPIXELS:g} MP decoded at once; decode threads: {args.workers}; rounds: {args.rounds}\n")
        figures = {}
        under = folder.parent / "under-cap"
        under.mkdir()
        for path in folder.glob("under_cap_*"):
            (under / path.name).symlink_to(path)
        scenarios = [
            ("idle", folder, None),
            ("unbounded decode, all", folder, None),
            ("decode, all", folder, "unbounded decode, all"),
            ("unbounded decode, under cap", under, None),
            ("decode, under cap", under, "unbounded decode, under cap"),
            ("index, all", folder, "unbounded decode, all"),
        ]
        print(f"{'scenario':28s} {'peak RSS MB':>12s} {'vs unbounded':>13s}  outcome")
        for scenario, files, baseline in scenarios:
            runs = [_child(scenario.split(",")[0], files, args.workers) for _ in range(args.rounds)]
            peak = statistics.median(r["peak_rss_mb"] for r in runs)
            figures[scenario] = {**runs[0], "peak_rss_mb": peak}
            ratio = f"{peak / figures[baseline]['peak_rss_mb']:13.2f}" if baseline else f"{'':13s}"
            print(f"{scenario:28s} {peak:12.0f} {ratio}  {runs[0]['outcome']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _make_images(folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True)
    for name, size, mode in HOSTILE:
        img = Image.new(mode, size, 1000 if mode == "I;16" else (90, 120, 60))
        img.paste(30000 if mode == "I;16" else (200, 40, 40), (size[0] // 3, size[1] // 3, size[0] // 2, size[1] // 2))
        img.save(folder / name, compress_level=9)
        del img
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def _child(scenario: str, folder: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--workers", str(workers), "--child", scenario, str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_child(scenario: str, folder: Path, workers: int) -> dict:
    from assoc.api.settings import default_model_path
    from assoc.runtime.encoding.bundle import load_bundle
    from assoc.runtime.encoding.encoders import ImageEncoder
    from assoc.runtime.imaging.images import load_image
    from assoc.runtime.imaging.preprocess import preprocess

    bundle = load_bundle(default_model_path())
    encoder = ImageEncoder(bundle, "cpu")
    config = bundle.config.visual
    want = (config.image_size[1], config.image_size[0])
    files = sorted(folder.iterdir())
    outcome = ""
    if scenario in ("decode", "unbounded decode"):
        load = load_image if scenario == "decode" else _unbounded_load

        def one(path: Path) -> bool:
            try:
                preprocess(load(path, min_size=want).image, config)
                return True
            except Exception:  # noqa: BLE001 - a refused image is an outcome here
                return False

        with ThreadPoolExecutor(workers) as pool:
            decoded = sum(pool.map(one, files))
        outcome = f"{decoded} decoded, {len(files) - decoded} refused"
    elif scenario == "index":
        from assoc.runtime.indexing.indexer import default_workers, index_paths
        from assoc.runtime.stores.gallery import Gallery

        gallery = Path(tempfile.mkdtemp(prefix="gallery-", dir=folder.parent))
        with Gallery.open(gallery / "g", bundle.bundle_id, bundle.config.embed_dim) as g:
            summary = index_paths(g, encoder, [folder])
        outcome = f"{summary.added} indexed, {len(summary.skipped)} refused; {default_workers()} workers"
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_rss_mb": peak_kb / 1024, "outcome": outcome}


def _unbounded_load(path: Path, min_size: tuple[int, int] | None = None):  # noqa: ANN202
    """load_image as it was before decode memory was bounded: the baseline."""
    img = Image.open(path)
    if img.size[0] * img.size[1] > 120e6:
        raise ValueError("over 120 MP")
    if min_size is not None and img.format == "JPEG":
        img.draft("RGB", min_size)
    img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / (65535.0 if top > 255 else 255.0) if top > 0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")

    class Loaded:
        image = img.convert("RGB")

    return Loaded


if __name__ == "__main__":
    main()
