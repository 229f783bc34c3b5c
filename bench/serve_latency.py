"""Warm query latency of `assoc serve` over real HTTP, beside a cold `assoc query` in the same run.

A Gallery in a temporary folder gets --photos SYNTHETIC photos (random unit-normalised float16 grids of
the bundle's grid shape and D, written with Gallery.add; search cost does not depend on what they hold).
`assoc serve --port 0` is started on it in a subprocess and waited for (model loaded, store open).

Measured, on --queries distinct Flickr8k dev captions (each text new to the server, so its encoding is
included), after --warmup other captions:
- HTTP: GET /api/search?q=...&k=K over one kept-alive http.client connection (a real HTTP client and
  the real uvicorn/Starlette stack), p50/p95 ms.
- in process: Searcher.search(text, k=K) in this process on the same gallery and queries, each next
  to the same query over HTTP (which goes first alternates): what the server adds is HTTP p50 minus this.
- cold CLI: `assoc query TEXT --gallery G -k K --json` as a new process each time (interpreter start,
  model load, store open, one search), --cold runs, median wall-clock ms.
The server, this process and the cold CLI take turns on the cores: nothing else of this script runs
while one is timed.

Run (defaults: 10,000 photos, 30 queries, k 10, 3 cold runs; ~0.5 GB of disk at 10x10 x D 256):
    python bench/serve_latency.py
    python bench/serve_latency.py --photos 2000 --json serve.json
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from common import dev_queries, open_bundle, percentiles_ms, synthetic_batches, write_json

import assoc
from assoc.runtime.encoding.devices import DEVICES
from assoc.runtime.stores.gallery import Gallery

START_TIMEOUT_S = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cold", type=int, default=3, help="cold `assoc query` runs")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--tmp", type=Path, help="where the temporary gallery goes (default: system temp)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    bundle = open_bundle(args.model)
    config = bundle.config
    captions = dev_queries()
    needed = args.warmup + args.queries + args.cold
    if len(captions) < needed:
        raise SystemExit(f"only {len(captions)} captions for {needed} distinct queries")
    warmup, timed, cold_texts = (
        captions[: args.warmup],
        captions[args.warmup : args.warmup + args.queries],
        captions[args.warmup + args.queries : needed],
    )
    folder = Path(tempfile.mkdtemp(prefix="assoc-bench-serve-", dir=args.tmp))
    try:
        gallery = folder / "gallery"
        start = time.perf_counter()
        with Gallery.open(gallery, config.bundle_id, config.embed_dim, create=True) as store:
            for records, grids in synthetic_batches(0, args.photos, tuple(config.visual.grid), config.embed_dim):
                store.add(list(zip(records, grids, strict=True)))
        print(
            f"gallery: {args.photos:,} synthetic photos, grid {config.visual.grid}, D {config.embed_dim}, "
            f"bundle {config.bundle_id} ({time.perf_counter() - start:.1f} s to write)"
        )

        server, url = start_server(gallery, bundle.root, args.device)
        spec = assoc.StoreSpec.builtin(gallery)
        try:
            with assoc.Searcher(bundle, spec, device=args.device) as searcher, Client(url) as client:
                for text in warmup:
                    client.search(text, args.k)
                    searcher.search(text, k=args.k, words=True)
                http_s, in_process_s = [], []
                # Interleaved, so drift in what else the cores do hits both alike, and in turns, because
                # the second search of a text finds the first one's candidate grids in the CPU caches.
                for n, text in enumerate(timed):
                    over_http = functools.partial(timed_call, client.search, text, args.k)
                    in_process = functools.partial(timed_call, searcher.search, text, k=args.k, words=True)
                    if n % 2:
                        in_process_s.append(in_process())
                        http_s.append(over_http())
                    else:
                        http_s.append(over_http())
                        in_process_s.append(in_process())
        finally:
            server.terminate()
            server.wait(timeout=30)

        cold_s = []
        for text in cold_texts:
            began = time.perf_counter()
            subprocess.run(
                [
                    *assoc_command(),
                    "query",
                    text,
                    "--gallery",
                    str(gallery),
                    "--model",
                    str(bundle.root),
                    "--device",
                    args.device,
                    "-k",
                    str(args.k),
                    "--json",
                ],
                check=True,
                capture_output=True,
            )
            cold_s.append(time.perf_counter() - began)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    http_ms, process_ms = percentiles_ms(http_s), percentiles_ms(in_process_s)
    cold_ms = statistics.median(cold_s) * 1000
    figures = {
        "photos": args.photos,
        "k": args.k,
        "queries": args.queries,
        "device": args.device,
        "bundle_id": config.bundle_id,
        "http": http_ms,
        "in_process": process_ms,
        "http_overhead_p50_ms": http_ms["p50_ms"] - process_ms["p50_ms"],
        "cold_cli_median_ms": cold_ms,
        "cold_runs": args.cold,
        "cold_over_warm_http": cold_ms / http_ms["p50_ms"],
    }
    print(f"| measure ({args.queries} distinct captions, k {args.k}) | p50 ms | p95 ms |")
    print("|---|---:|---:|")
    print(f"| HTTP GET /api/search, warm server | {http_ms['p50_ms']:.1f} | {http_ms['p95_ms']:.1f} |")
    print(f"| Searcher.search in process | {process_ms['p50_ms']:.1f} | {process_ms['p95_ms']:.1f} |")
    print(f"| `assoc query --json`, cold process (median of {args.cold}) | {cold_ms:.0f} | |")
    print(
        f"cold CLI / warm HTTP p50: {figures['cold_over_warm_http']:.1f}x; "
        f"HTTP adds {figures['http_overhead_p50_ms']:.1f} ms at p50"
    )
    write_json(args.json, figures)


def assoc_command() -> list[str]:
    script = shutil.which("assoc", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from assoc.cli.app import main; main()"]


def start_server(gallery: Path, model: Path, device: str) -> tuple[subprocess.Popen, str]:
    """`assoc serve --port 0` on the gallery, once it has printed its address (model loaded, store open)."""
    process = subprocess.Popen(
        [
            *assoc_command(),
            "serve",
            "--gallery",
            str(gallery),
            "--model",
            str(model),
            "--device",
            device,
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # drained with stdout, so the server never blocks on a full pipe
        text=True,
    )
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.match(r"^open (http://\S+)$", line.strip())
            if match:
                found.put(match.group(1))
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = found.get(timeout=START_TIMEOUT_S)
    except queue.Empty:
        url = None
    if url is None:
        process.kill()
        raise SystemExit("assoc serve did not start")
    return process, url


def timed_call(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    began = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - began


class Client:
    """A real HTTP client on one kept-alive connection: each search is sent, answered, read and parsed."""

    def __init__(self, url: str) -> None:
        where = urlsplit(url)
        self.connection = http.client.HTTPConnection(where.hostname, where.port, timeout=120)

    def search(self, text: str, k: int) -> list[dict]:
        self.connection.request("GET", "/api/search?" + urlencode({"q": text, "k": k}))
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"search failed: {response.status} {body[:200]!r}")
        return json.loads(body)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()


if __name__ == "__main__":
    main()
