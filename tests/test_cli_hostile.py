"""Hostile input through the `assoc` command as a real process: odd file names in and out, a full disk, a
read-only or damaged gallery, a garbled model, files that cannot be indexed, concurrent creation.

Output is read as bytes: what matters is what reaches a terminal or a script, byte for byte. Cases that
need a small or read-only file system mount a tmpfs (root only; skipped with the reason elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cli_support import assoc_command, copy_photos
from test_hostile import CORRUPT_EXIF, NON_UTF8_NAME, remount, tmpfs

pytestmark = pytest.mark.slow

ESCAPES_NAME = "e\x1b]0;PWNED\x07\x1b[2J[bold red]x[blink].jpg"  # retitles and clears a terminal, and is markup


def run(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`assoc ARGS` as a real process; stdout and stderr as bytes."""
    env = {k: v for k, v in os.environ.items() if k not in ("ASSOC_GALLERY", "ASSOC_MODEL", "ASSOC_QDRANT_URL")}
    env.update(COLUMNS="250", PYTHONWARNINGS="")
    return subprocess.run([*assoc_command(), *map(os.fsencode, args)], capture_output=True, timeout=timeout, env=env)


def assert_clean(done: subprocess.CompletedProcess, code: int = 0) -> None:
    """The exit code expected, no traceback, and nothing a terminal would act on in the output."""
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert b"Traceback" not in done.stderr
    for stream in (done.stdout, done.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream


def one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
    assert_clean(done, 2)
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assoc: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def photos(flickr8k: Path) -> list[Path]:
    return sorted((flickr8k / "images").glob("*.jpg"))[:30]


def test_odd_names_index_print_escaped_and_serialise_exactly(tmp_path: Path, photos: list[Path]) -> None:
    library = tmp_path / "library"
    copy_photos(photos[:2], library)
    odd, escapes = library / NON_UTF8_NAME, library / ESCAPES_NAME
    shutil.copyfile(photos[2], odd)
    shutil.copyfile(photos[3], escapes)
    (library / ("bad" + ESCAPES_NAME)).write_text("not a photo")  # skipped, and named in the summary
    gallery = ("--gallery", tmp_path / "g", "--device", "cpu")

    indexed = run("index", library, *gallery)
    assert_clean(indexed)
    assert b"bade\\x1b]0;PWNED\\x07\\x1b[2J[bold red]x[blink].jpg: not a recognised" in indexed.stdout

    table = run("query", "a dog", "-k", "10", *gallery)
    assert_clean(table)
    assert b"0_caf\\xe9.jpg" in table.stdout and b"[bold red]x[blink].jpg" in table.stdout

    hits = json.loads(run("query", "a dog", "-k", "10", *gallery, "--json").stdout)
    by_path = {hit["path"]: hit for hit in hits}
    assert set(by_path) == {str(p) for p in (*library.glob("1*.jpg"), odd, escapes)}
    assert all(os.path.isfile(path) for path in by_path)  # json.loads gives back names that open the files
    assert base64.b64decode(by_path[str(odd)]["path_bytes"]) == os.fsencode(odd)
    assert "path_bytes" not in by_path[str(escapes)]

    listed = run("query", "a dog", "-k", "10", *gallery, "--paths-only", "-0")
    assert listed.returncode == 0
    assert set(listed.stdout.split(b"\0")[:-1]) == {os.fsencode(p) for p in by_path}

    located = run("localize", odd, "a dog", *gallery, "--json")
    assert_clean(located)
    found = json.loads(located.stdout)
    assert found["image"] == str(odd) and base64.b64decode(found["image_bytes"]) == os.fsencode(odd)


def test_a_full_disk_is_one_line_and_the_next_run_goes_on(tmp_path: Path, photos: list[Path]) -> None:
    library = tmp_path / "library"
    copy_photos(photos, library)
    with tmpfs(tmp_path / "disk", "1m") as disk:
        line = one_error_line(run("index", library, "--gallery", disk / "g", "--device", "cpu", "--batch-size", "4"))
        assert "is full" in line and "of 30 new or changed photos were stored" in line and "--gallery" in line
        remount(disk, "size=8m")
        resumed = run("index", library, "--gallery", disk / "g", "--device", "cpu", "--json")
        assert_clean(resumed)
        report = json.loads(resumed.stdout)
        assert report["added"] + report["unchanged"] == 30 and report["unchanged"] > 0 and report["photos"] == 30


def test_a_read_only_gallery_answers_queries_and_info(tmp_path: Path, photos: list[Path]) -> None:
    library = tmp_path / "library"
    copy_photos(photos[:4], library)
    with tmpfs(tmp_path / "disk", "8m") as disk:
        gallery = ("--gallery", disk / "g", "--device", "cpu")
        assert_clean(run("index", library, *gallery))
        before = json.loads(run("query", "a dog", *gallery, "--json").stdout)
        remount(disk, "ro")
        after = run("query", "a dog", *gallery, "--json")
        assert_clean(after)
        assert json.loads(after.stdout) == before
        info = run("info", *gallery, "--json")
        assert_clean(info)
        assert json.loads(info.stdout)["store"]["photos"] == 4
        (library / photos[0].name).unlink()
        one_error_line(run("index", library, *gallery), "is read-only", "--gallery")
        remount(disk, "rw")


def test_a_garbled_model_is_one_line(tmp_path: Path, bundle_dir: Path, photos: list[Path]) -> None:
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    model = copy / "visual" / "model.onnx"
    model.write_bytes(os.urandom(4096) + model.read_bytes()[4096:])
    config = json.loads((copy / "config.json").read_text())
    config["files"]["visual/model.onnx"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (copy / "config.json").write_text(json.dumps(config))
    one_error_line(
        run("index", photos[0], "--model", copy, "--gallery", tmp_path / "g", "--device", "cpu"),
        "ONNX Runtime cannot load this model",
        "--model",
    )


def test_nothing_indexable_exits_3_and_says_why(tmp_path: Path, photos: list[Path]) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "notes.jpg").write_text("a shopping list")
    os.mkfifo(odd / "pipe.jpg")
    (odd / "zero.jpg").symlink_to("/dev/zero")
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    gallery = ("--gallery", tmp_path / "g", "--device", "cpu")
    nothing = run("index", odd, loop, *gallery, timeout=60)
    assert_clean(nothing, 3)
    assert b"nothing could be indexed" in nothing.stderr
    for reason in (b"a named pipe", b"a link to a character device", b"a symbolic link loop", b"not a recognised"):
        assert reason in nothing.stdout
    copy_photos(photos[:1], odd)
    assert_clean(run("index", odd, *gallery))  # one photo indexed: success, with the rest skipped


def test_a_named_pipe_and_damaged_exif_through_localize(tmp_path: Path, photos: list[Path]) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    one_error_line(run("localize", tmp_path / "fifo.jpg", "dog", "--device", "cpu", timeout=60), "not a regular file")
    from PIL import Image

    Image.open(photos[0]).save(tmp_path / "exif.jpg", exif=CORRUPT_EXIF)
    done = run("localize", tmp_path / "exif.jpg", "a dog", "--device", "cpu", "--json")
    assert_clean(done)
    assert done.stderr == b"" and json.loads(done.stdout)["image"] == str(tmp_path / "exif.jpg")


def test_two_index_runs_creating_one_new_gallery_at_once(tmp_path: Path, photos: list[Path]) -> None:
    """One writer at a time: of two runs that create one gallery at once, each either indexes it or says
    in one line that the other is indexing it; never a traceback, and the gallery holds every photo once."""
    library = tmp_path / "library"
    copy_photos(photos[:2], library)
    env = {k: v for k, v in os.environ.items() if k not in ("ASSOC_GALLERY", "ASSOC_MODEL")}
    for trial in range(3):
        gallery = tmp_path / f"g{trial}"
        command = [*assoc_command(), "index", str(library), "--gallery", str(gallery), "--device", "cpu", "--json"]
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
        outcomes = [(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in runs]
        assert any(code == 0 for code, _, _ in outcomes)
        for code, stdout, stderr in outcomes:
            assert b"Traceback" not in stderr, stderr
            if code == 0:
                assert json.loads(stdout)["photos"] == 2
            else:
                assert code == 2 and b"is being indexed by another process" in stderr and stderr.count(b"\n") == 1
        again = subprocess.run(command, capture_output=True, env=env)
        assert again.returncode == 0 and json.loads(again.stdout)["photos"] == 2, again.stderr
        time.sleep(0.1)
