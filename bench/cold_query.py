"""Cold start of `assoc query TEXT --json`: the whole process beside the interpreter's own floors, and
where its time goes.

1. A gallery of --photos SYNTHETIC photos (unit-normalised float16 grids of the bundle's grid shape
   and D, common.synthetic_batches; search cost does not depend on what they hold), built once and
   kept under --gallery (default runs/bench-cache/cold-query-<photos>-<bundle id>/).
2. Over --rounds rounds, in turn (so drift in what else the cores do hits all alike), each a new
   process timed from start to exit: the floors `python -c pass` and `python -c "import numpy,
   onnxruntime"` (the two libraries a text query cannot do without; the ratios are taken against it),
   the latter also as `assoc query` loads them (numpy's BLAS on one thread: assoc.cli.app.before_loading),
   then `assoc query QUERY --json --gallery G`, and the same with an empty per-user cache folder
   (XDG_CACHE_HOME pointed at a new folder: the first run after installing, or after the bundle
   changed, when the bundle's files are hashed in full and the text graph is optimised and kept).
   Median, min and max ms of each. With --baseline DIR, also the same query by the `assoc` package in
   DIR (another checkout, as DIR/assoc: PYTHONPATH=DIR) through a script named like the console script
   (baseline_script), so that it ends as an installed command does; its ratio taken round by round.
   Whether every query printed the same JSON, byte for byte, is checked on the warm-up runs. These cold
   rows run with ASSOC_STANDBY=0.
   With --standby, also the same query with `assoc standby` running (a server with assoc loaded that
   forks for each command: assoc.cli.standby_server), in a socket folder of the bench's own.
3. The cold query's wall time by phase, from --rounds more processes that each run the CLI's own
   main() in process with time.perf_counter around the calls it makes (the functions are wrapped, not
   replaced), ending as the installed command ends (assoc.cli.quick_exit): imports (the CLI and the
   query command's modules, numpy among them), importing ONNX Runtime (with the encoders), bundle load
   and check, text session (tokenizer, ONNX Runtime session, checks), encoding the query, opening the
   store, search (the scan kernel's session made on first use counted apart), output, and the rest of
   main (argument parsing, Typer, the exit handlers). Medians per phase.
   "interpreter" is the `python -c pass` floor; "exit and the rest" is what the cold query's median
   leaves over.

Every process runs without PYTHONDONTWRITEBYTECODE, so the warm-up run leaves assoc's own bytecode
(__pycache__, git-ignored) as any install has it; where that variable is set, each run would compile
assoc's modules from source (~50 ms on two busy cores) and time the compiler. --compile-each-run keeps it.

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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
QUERY = "a dog on the grass"
STANDING_BY = "assoc query --json, `assoc standby` running"
ONE_BLAS_FLOOR = "the same, one BLAS thread"  # as `assoc query` loads numpy (assoc.cli.app.before_loading)

# Run in a new process for the phase split: the CLI's main() on the query, each phase's calls wrapped
# with perf_counter. Only the standard library is imported before the CLI's own imports are timed.
PHASE_RUN = r"""
import atexit, json, sys, time
began = time.perf_counter()
phases = {}

def add(name, seconds):
    phases[name] = phases.get(name, 0.0) + seconds

import assoc.cli.app as cli_app
try:
    import assoc.cli.quick_exit as quick_exit
except ImportError:  # a baseline from before it
    pass
else:
    quick_exit.is_the_command = lambda: True  # end as the installed command does (quick_exit.leave_now)
getattr(cli_app, "before_loading", lambda name: None)("query")  # as the CLI does before the command loads
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
start = time.perf_counter()

@atexit.register  # the last exit handler: leave_now runs them all before it ends the process
def report():
    main_s = time.perf_counter() - start
    phases["search"] = phases.get("search", 0.0) - phases.get("scan kernel session", 0.0)
    done = ("imports", "import onnxruntime")
    phases["rest of main"] = main_s - sum(v for k, v in phases.items() if k not in done)
    phases["in process"] = time.perf_counter() - began
    sys.stderr.write("PHASES " + json.dumps({"phases": phases}) + "\n")

sys.argv = ["assoc", *json.loads(sys.argv[1])]
cli_app.main()
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
    parser.add_argument("--baseline", type=Path, help="a folder holding another `assoc` package to time beside")
    parser.add_argument("--compile-each-run", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if set")
    parser.add_argument("--standby", action="store_true", help="also time the query served by `assoc standby`")
    args = parser.parse_args()
    if not args.compile_each_run:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["ASSOC_STANDBY"] = "0"  # a cold query is a process of its own

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
        ONE_BLAS_FLOOR: [
            python,
            "-c",
            "import os; os.environ['OPENBLAS_NUM_THREADS'] = '1'; import numpy, onnxruntime",
        ],
        "assoc query --json": [*assoc_command(), "query", *query_args],
        "assoc query --json, empty cache folder": [*assoc_command(), "query", *query_args],
    }
    fresh_cache = {"assoc query --json, empty cache folder"}
    if args.baseline is not None:  # a script like the console script, importing DIR's `assoc` (PYTHONPATH)
        commands["baseline: assoc query --json"] = [*baseline_script(), "query", *query_args]
    envs: dict[str, dict[str, str]] = {}
    if args.standby:
        envs[STANDING_BY] = {"ASSOC_STANDBY": "1", "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="assoc-bench-standby-")}
        commands[STANDING_BY] = [*assoc_command(), "query", *query_args]
        standing_env = {**os.environ, **envs[STANDING_BY]}
        subprocess.run([*assoc_command(), "standby", "--idle", "3600"], env=standing_env, check=True)
    print(f"bundle {bundle.bundle_id}; gallery {gallery} ({args.photos:,} photos); {args.rounds} rounds")
    print(f"cores: {os.cpu_count()}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    answers = {}  # warm-up: the page cache, the hash record, bytecode; and what each query printed
    for name, command in commands.items():
        if name.startswith(("assoc", "baseline")) or name in envs:
            cache = Path(tempfile.mkdtemp(prefix="assoc-bench-cold-")) if name in fresh_cache else None
            path = args.baseline if name.startswith("baseline") else None
            answers[name] = run_process(command, cache, path, True, envs.get(name))
            if cache is not None:
                shutil.rmtree(cache)
    same = len(set(answers.values())) == 1
    print(f"the same JSON from every query above, byte for byte: {'yes' if same else 'NO'}")
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    phase_runs: list[dict[str, float]] = []
    baseline_phases: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="assoc-bench-cold-") as scratch:
        for n in range(args.rounds):
            for name, command in commands.items():
                cache = Path(scratch) / f"cache-{n}" if name in fresh_cache else None
                path = args.baseline if name.startswith("baseline") else None
                seconds[name].append(run_process(command, cache, path, env=envs.get(name)))
            phase_runs.append(phase_run(["query", *query_args]))
            if args.baseline is not None:
                baseline_phases.append(phase_run(["query", *query_args], args.baseline))

    figures: dict = {"bundle": bundle.bundle_id, "photos": args.photos, "rounds": args.rounds, "processes": {}}
    figures["same_json"] = same
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
    if args.baseline is not None:
        pairs = zip(seconds["assoc query --json"], seconds["baseline: assoc query --json"], strict=True)
        ratios = [a / b for a, b in pairs]
        figures["vs_baseline"] = statistics.median(ratios)
        print(f"cold query / baseline, round by round: median {figures['vs_baseline']:.2f}")

    figures["phases_ms"] = phase_split(phase_runs, floor, cold)
    columns = [figures["phases_ms"]]
    print(f"\nthe cold query's {cold:.0f} ms by phase (medians of {args.rounds} in-process runs):")
    if args.baseline is not None:
        before = figures["processes"]["baseline: assoc query --json"]["median_ms"]
        figures["baseline_phases_ms"] = phase_split(baseline_phases, floor, before)
        columns.append(figures["baseline_phases_ms"])
        print(f"  {'':26s} {'ms':>8s} {'baseline':>9s}")
    for name in figures["phases_ms"]:
        print(f"  {name:26s} " + " ".join(f"{column[name]:8.1f}" for column in columns))
    if args.standby:
        served = figures["processes"][STANDING_BY]["median_ms"]
        print(f"\nserved by `assoc standby`: {served:.1f} ms, {served / cold:.2f} of the cold query")
        subprocess.run([*assoc_command(), "standby", "--stop"], env={**os.environ, **envs[STANDING_BY]}, check=True)
        shutil.rmtree(envs[STANDING_BY]["XDG_RUNTIME_DIR"], ignore_errors=True)
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


def baseline_script() -> list[str]:
    """A console script named `assoc` (the name assoc.cli.quick_exit knows it by) that starts whichever
    entry point the `assoc` package on its path has: the launcher, or before it the app's main."""
    folder = Path(tempfile.mkdtemp(prefix="assoc-bench-baseline-"))
    script = folder / "assoc"
    script.write_text(
        "import sys\n"
        "try:\n    from assoc.cli.launcher import main\n"
        "except ImportError:\n    from assoc.cli.app import main\n"
        "sys.exit(main())\n"
    )
    return [sys.executable, str(script)]


def run_process(
    command: list[str], cache: Path | None, path: Path | None = None, output: bool = False, env: dict | None = None
) -> Any:
    """Wall seconds of one process (output discarded), or with output=True what it printed (bytes);
    cache: its XDG_CACHE_HOME, else the user's own; path: its PYTHONPATH (where its `assoc` comes from);
    env: variables set besides."""
    env = {**os.environ, **(env or {})}
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    start = time.perf_counter()
    done = subprocess.run(
        command, stdout=subprocess.PIPE if output else subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return done.stdout if output else elapsed


def phase_split(runs: list[dict[str, float]], floor: float, whole: float) -> dict[str, float]:
    """Median ms per phase; the interpreter's floor and what the whole process's median leaves over."""
    split = {name: statistics.median(run.get(name, 0.0) for run in runs) * 1000 for name in PHASES}
    in_process = statistics.median(run["in process"] for run in runs) * 1000
    return {"interpreter": floor, **split, "exit and the rest": whole - floor - in_process}


def phase_run(cli_args: list[str], path: Path | None = None) -> dict[str, float]:
    """One cold process running the CLI with its phases timed (PHASE_RUN); seconds per phase. path: its
    PYTHONPATH (a baseline's `assoc`)."""
    command = [sys.executable, "-c", PHASE_RUN, json.dumps(cli_args)]
    env = {**os.environ, "PYTHONPATH": str(path)} if path is not None else None
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines = [line for line in done.stderr.splitlines() if line.startswith("PHASES ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the phase run failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(lines[-1][len("PHASES ") :])["phases"]


if __name__ == "__main__":
    main()
