"""Cold start of `assoc query TEXT --json`: the whole process beside the interpreter's own floors, and
where its time goes.

1. A gallery of --photos SYNTHETIC photos (unit-normalised float16 grids of the bundle's grid shape
   and D, common.synthetic_batches; search cost does not depend on what they hold), built once and
   kept under --gallery (default runs/bench-cache/cold-query-<photos>-<bundle id>/).
2. Over --rounds rounds, in turn (so drift in what else the cores do hits all alike), each a new
   process timed from start to exit: the floors `python -c pass` and `python -c "import numpy,
   onnxruntime"` (the two libraries a text query cannot do without), then `assoc query QUERY --json
   --gallery G`, and the same with an empty per-user cache folder (XDG_CACHE_HOME pointed at a new
   folder: the first run after installing, or after the bundle changed, when the bundle's files are
   hashed in full). Median, min and max ms of each.
3. The cold query's wall time by phase, from --rounds more processes that each run the CLI's own
   main() in process with time.perf_counter around the calls it makes (the functions are wrapped, not
   replaced): imports (the CLI and the query command's modules, numpy among them), importing ONNX
   Runtime (with the encoders), bundle load and check, text session (tokenizer, ONNX Runtime session,
   checks), encoding the query, opening the store, search (the scan kernel's session made on first
   use counted apart), output, and the rest of main (argument parsing, Typer). Medians per phase.
   "interpreter" is the `python -c pass` floor; "exit and the rest" is what the cold query's median
   leaves over.

Run (defaults: 10,000 photos, 7 rounds; ~0.55 GB of disk for the gallery at 10x10 x D 256):
    python bench/cold_query.py
    python bench/cold_query.py --rounds 11 --json cold.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERY = "a dog on the grass"

# Run in a new process for the phase split: the CLI's main() on the query, each phase's calls wrapped
# with perf_counter. Only the standard library is imported before the CLI's own imports are timed.
PHASE_RUN = r"""
import json, sys, time
began = time.perf_counter()
phases = {}

def add(name, seconds):
    phases[name] = phases.get(name, 0.0) + seconds

import assoc.cli.app as cli_app
import assoc.cli.query_cmd as query_cmd
add("imports", time.perf_counter() - began)
mark = time.perf_counter()
import assoc.runtime.encoding.encoders as encoders
add("import onnxruntime", time.perf_counter() - mark)
import assoc.api.searcher as searcher_module
import assoc.api.settings as settings
import assoc.runtime.scoring.scan as scan

def timed(owner, name, phase):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            add(phase, time.perf_counter() - start)
    setattr(owner, name, wrapper)

timed(settings, "load_bundle", "bundle load and check")
timed(encoders.TextEncoder, "__init__", "text session")
timed(encoders.TextEncoder, "encode", "encoding")
timed(searcher_module, "open_store", "store open")
timed(searcher_module, "search", "search")
timed(scan.ScanKernel, "__init__", "scan kernel session")
timed(query_cmd, "echo_json", "output")
sys.argv = ["assoc", *json.loads(sys.argv[1])]
start = time.perf_counter()
try:
    cli_app.main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
main_s = time.perf_counter() - start
phases["search"] = phases.get("search", 0.0) - phases.get("scan kernel session", 0.0)
phases["rest of main"] = main_s - sum(v for k, v in phases.items() if k not in ("imports", "import onnxruntime"))
phases["in process"] = time.perf_counter() - began
sys.stderr.write("PHASES " + json.dumps({"code": code, "phases": phases}) + "\n")
"""

PHASES = (
    "imports",
    "import onnxruntime",
    "bundle load and check",
    "text session",
    "encoding",
    "store open",
    "scan kernel session",
    "search",
    "output",
    "rest of main",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--gallery", type=Path, help="where the synthetic gallery is kept (built if missing)")
    parser.add_argument("--model", help="bundle folder (default: ASSOC_MODEL, then the shipped bundle)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from common import open_bundle, write_json
    from serve_latency import assoc_command

    bundle = open_bundle(args.model)
    folder = args.gallery or REPO / "runs" / "bench-cache" / f"cold-query-{args.photos}-{bundle.bundle_id}"
    gallery = ensure_gallery(folder, bundle, args.photos)
    query_args = [args.query, "--json", "--gallery", str(gallery), *(["--model", args.model] if args.model else [])]
    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import numpy, onnxruntime'": [python, "-c", "import numpy, onnxruntime"],
        "assoc query --json": [*assoc_command(), "query", *query_args],
        "assoc query --json, empty cache folder": [*assoc_command(), "query", *query_args],
    }
    fresh_cache = {"assoc query --json, empty cache folder"}
    print(f"bundle {bundle.bundle_id}; gallery {gallery} ({args.photos:,} photos); {args.rounds} rounds")
    print(f"cores: {os.cpu_count()}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    run_process(commands["assoc query --json"], None)  # warm-up: the page cache, the hash cache
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    phase_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="assoc-bench-cold-") as scratch:
        for n in range(args.rounds):
            for name, command in commands.items():
                cache = Path(scratch) / f"cache-{n}" if name in fresh_cache else None
                seconds[name].append(run_process(command, cache))
            phase_runs.append(phase_run(["query", *query_args]))

    figures: dict = {"bundle": bundle.bundle_id, "photos": args.photos, "rounds": args.rounds, "processes": {}}
    print(f"\n{'process':44s} {'median ms':>10s} {'min':>8s} {'max':>8s}")
    for name, values in seconds.items():
        ms = [s * 1000 for s in values]
        row = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}
        figures["processes"][name] = row
        print(f"{name:44s} {row['median_ms']:10.1f} {row['min_ms']:8.1f} {row['max_ms']:8.1f}")
    floor = figures["processes"]["python -c pass"]["median_ms"]
    libraries = figures["processes"]["python -c 'import numpy, onnxruntime'"]["median_ms"]
    cold = figures["processes"]["assoc query --json"]["median_ms"]
    print(f"cold query / import floor: {cold / libraries:.2f}; cold query - import floor: {cold - libraries:.0f} ms")

    split = {name: statistics.median(run.get(name, 0.0) for run in phase_runs) * 1000 for name in PHASES}
    in_process = statistics.median(run["in process"] for run in phase_runs) * 1000
    figures["phases_ms"] = {"interpreter": floor, **split, "exit and the rest": cold - floor - in_process}
    print(f"\nthe cold query's {cold:.0f} ms by phase (medians of {args.rounds} in-process runs):")
    for name, value in figures["phases_ms"].items():
        print(f"  {name:26s} {value:8.1f} ms")
    write_json(args.json, figures)


def ensure_gallery(folder: Path, bundle, photos: int) -> Path:  # noqa: ANN001 - a Bundle
    """The gallery under folder, built once (in a temporary sibling, then renamed into place)."""
    from common import synthetic_batches

    from assoc.runtime.stores.gallery import Gallery

    gallery = folder / "gallery"
    if gallery.is_dir():
        with Gallery.open(gallery, bundle.bundle_id, bundle.config.embed_dim, create=False) as store:
            if len(store) == photos:
                return gallery
        shutil.rmtree(gallery)
    folder.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=folder))
    config = bundle.config
    start = time.perf_counter()
    with Gallery.open(
        building / "gallery", config.bundle_id, config.embed_dim, create=True, first_stage=config.first_stage
    ) as store:
        for records, grids in synthetic_batches(0, photos, tuple(config.visual.grid), config.embed_dim):
            store.add(list(zip(records, grids, strict=True)))
    (building / "gallery").rename(gallery)
    building.rmdir()
    print(f"built the gallery in {time.perf_counter() - start:.1f} s")
    return gallery


def run_process(command: list[str], cache: Path | None) -> float:
    """Wall seconds of one process (output discarded); cache: its XDG_CACHE_HOME, else the user's own."""
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return elapsed


def phase_run(cli_args: list[str]) -> dict[str, float]:
    """One cold process running the CLI with its phases timed (PHASE_RUN); seconds per phase."""
    command = [sys.executable, "-c", PHASE_RUN, json.dumps(cli_args)]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [line for line in done.stderr.splitlines() if line.startswith("PHASES ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the phase run failed ({done.returncode}): {done.stderr.strip()}")
    found = json.loads(lines[-1][len("PHASES ") :])
    if found["code"] not in (0, None):
        raise SystemExit(f"the phase run's assoc query exited {found['code']}: {done.stderr.strip()}")
    return found["phases"]


if __name__ == "__main__":
    main()
