"""A seeded fuzz test: damage a real gallery, then run `assoc` on it as real processes.

Damage: random bit flips in gallery.sqlite and in the shard files, truncations, deleted files. After
each, `query`, `info`, `check` (where the CLI has it) and `index` run, then `query` again, and each
must: print no traceback; exit with a documented code (0, 2 for an error on one line, 3 when index
could index nothing); and never answer differently from the undamaged gallery unless an error or a
warning says the gallery is damaged. ASSOC_FUZZ_TRIALS (default 8) and ASSOC_FUZZ_SEED (default 10)
set how many trials run and which.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cli_support import assoc_command, copy_photos

pytestmark = pytest.mark.slow

QUERY = "a dog running on the grass"
DAMAGES = ("flip database", "flip shard", "truncate database", "truncate shard", "delete shard", "delete database")
EXIT_CODES = {0, 2, 3}  # README, Usage: exit codes (3: index could index nothing)
CHECK_EXIT_CODES = {0, 2, 4}  # 4: check found damage and left it


def run(*args: str | Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ASSOC_GALLERY", "ASSOC_MODEL", "ASSOC_QDRANT_URL")}
    return subprocess.run(
        [*assoc_command(), *map(str, args)], capture_output=True, text=True, timeout=180, env={**env, "COLUMNS": "250"}
    )


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "library"
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:10], folder)
    return folder


@pytest.fixture(scope="module")
def undamaged(library: Path) -> tuple[Path, list, dict]:
    """The gallery of the library, its answer to QUERY and its info, made by `assoc` itself."""
    gallery = library.parent / "gallery"
    assert run("index", library, "--gallery", gallery, "--device", "cpu").returncode == 0
    hits = json.loads(run("query", QUERY, "--gallery", gallery, "--device", "cpu", "--json").stdout)
    info = json.loads(run("info", "--gallery", gallery, "--json").stdout)
    assert len(hits) == 10 and info["store"]["photos"] == 10
    return gallery, hits, info


def damage(gallery: Path, kind: str, rng: np.random.Generator) -> str:
    """Damage one file of the gallery; returns what was done, for the failure message."""
    shards = sorted(p for p in (gallery / "shards").iterdir() if p.is_file())
    target = gallery / "gallery.sqlite" if "database" in kind else shards[int(rng.integers(len(shards)))]
    data = bytearray(target.read_bytes())
    if kind.startswith("flip"):
        count = int(rng.integers(1, 4)) if rng.random() < 0.5 else int(rng.integers(4, 200))  # light or heavy
        bits = rng.integers(0, len(data) * 8, size=count)
        for bit in bits:
            data[bit // 8] ^= 1 << int(bit % 8)
        target.write_bytes(bytes(data))
        return f"{len(bits)} bits flipped in {target.name}"
    if kind.startswith("truncate"):
        size = int(rng.integers(0, len(data)))
        target.write_bytes(bytes(data[:size]))
        return f"{target.name} cut to {size} of {len(data)} bytes"
    target.unlink()
    return f"{target.name} deleted"


def check_run(done: subprocess.CompletedProcess, what: str, codes: set[int] = EXIT_CODES) -> None:
    assert "Traceback" not in done.stderr, f"{what}: {done.stderr}"
    assert done.returncode in codes, f"{what}: exit {done.returncode}: {done.stderr}"
    for line in done.stderr.splitlines():
        assert line.startswith(("assoc: error: ", "assoc: warning: ")), f"{what}: {done.stderr}"
    if done.returncode == 2:
        assert len(done.stderr.splitlines()) == 1 and done.stdout == "", f"{what}: {done.stderr}"


def same_answer(found: list[dict], expected: list[dict]) -> bool:
    """The same photos in the same order with the same scores, up to float noise: a photo that index
    encoded again after its row was damaged may differ in the last bits of its grid."""
    return [h["path"] for h in found] == [h["path"] for h in expected] and all(
        abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(found, expected, strict=True)
    )


def says_damaged(done: subprocess.CompletedProcess) -> bool:
    return done.returncode != 0 or "damaged" in done.stderr


def test_a_damaged_gallery_never_answers_wrong_in_silence(
    tmp_path: Path, library: Path, undamaged: tuple[Path, list, dict]
) -> None:
    gallery, hits, info = undamaged
    has_check = run("check", "--help").returncode == 0
    trials = int(os.environ.get("ASSOC_FUZZ_TRIALS", "8"))
    rng = np.random.default_rng(int(os.environ.get("ASSOC_FUZZ_SEED", "10")))
    outcomes: Counter[str] = Counter()
    for trial in range(trials):
        copy = Path(shutil.copytree(gallery, tmp_path / f"g{trial}"))
        kind = DAMAGES[trial % len(DAMAGES)]
        done_to = damage(copy, kind, rng)
        where = ("--gallery", copy, "--device", "cpu")

        query = run("query", QUERY, *where, "--json")
        check_run(query, f"query after {done_to}")
        if query.returncode == 0 and not same_answer(json.loads(query.stdout), hits):
            assert says_damaged(query), f"query after {done_to} answered differently in silence: {query.stdout}"
        outcomes[f"query {'answered' if query.returncode == 0 else 'refused'}"] += 1

        described = run("info", "--gallery", copy, "--json")
        check_run(described, f"info after {done_to}")
        if described.returncode == 0 and _facts(json.loads(described.stdout)) != _facts(info):
            assert says_damaged(described), f"info after {done_to}: {described.stdout}"

        if has_check:
            checked = run("check", "--gallery", copy)
            check_run(checked, f"check after {done_to}", CHECK_EXIT_CODES)
            if checked.returncode == 0:
                assert "0 damaged" in checked.stdout or "damaged" in checked.stderr, checked.stdout
            outcomes[f"check exit {checked.returncode}"] += 1

        indexed = run("index", library, *where, "--json")
        check_run(indexed, f"index after {done_to}")
        outcomes[f"index exit {indexed.returncode}"] += 1

        again = run("query", QUERY, *where, "--json")
        check_run(again, f"query after {done_to}, then index")
        if again.returncode == 0 and not same_answer(json.loads(again.stdout), hits):
            assert says_damaged(again), (
                f"query after {done_to}, then index ({indexed.stdout}), answered differently in silence:"
                f" {again.stdout} instead of {hits}"
            )
    checked = "with `assoc check`" if has_check else "without `assoc check`: the CLI has none"
    print(f"\n{trials} damage trials ({checked}): {dict(outcomes)}")


def _facts(info: dict) -> tuple:
    """What `info` says of a gallery's content (its location and size on disk differ by nature)."""
    store = info["store"]
    return store["exists"], store["photos"], store["bundle_id"], store["matches_bundle"]
