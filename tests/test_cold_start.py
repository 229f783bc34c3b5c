"""A cold `assoc query`: the verified-hash record, the lazy CLI, conversion without pydantic, the kept
text graph, and the quick exit; all on real components (bench/cold_query.py times them)."""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import typer
from cli_support import assert_one_line_error, assoc, copy_photos, ok, run_process

import assoc as assoc_api
from assoc.api.stores import StoreSpec
from assoc.cli import app as cli_app
from assoc.runtime.encoding import bundle as bundle_module
from assoc.runtime.encoding.bundle import (
    TOKENIZER_FILE,
    VERIFIED_HASHES_NAME,
    Bundle,
    VerifiedHashes,
    load_bundle,
    sha256_file,
)
from assoc.runtime.encoding.encoders import QUERY_THREADS, TextEncoder, text_graph_key
from assoc.runtime.encoding.providers import (
    KEPT_DIGESTS,
    KEPT_FILES,
    KEPT_GRAPH,
    KEPT_WEIGHTS,
    optimized_path,
)
from assoc.runtime.errors import BundleError

QUERY = "a dog runs on the grass"


@pytest.fixture()
def hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file bundle.sha256_file reads (the real function does the reading)."""
    read: list[Path] = []

    def counted(path: Path) -> str:
        read.append(Path(path))
        return sha256_file(path)

    monkeypatch.setattr(bundle_module, "sha256_file", counted)
    return read


@pytest.fixture()
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-user cache folder of this test's own (platformdirs reads XDG_CACHE_HOME)."""
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "assoc"


def _settled(path: Path, content: bytes) -> Path:
    """A file written, with its timestamps past the tick of the clock its change was stamped in."""
    path.write_bytes(content)
    time.sleep(0.05)
    return path


# ---------------------------------------------------------------- the verified-hash record


def test_a_remembered_match_is_not_read_again(tmp_path: Path, hashing: list[Path]) -> None:
    model = _settled(tmp_path / "model.onnx", b"weights" * 1000)
    digest = sha256_file(model)
    record = tmp_path / "cache" / VERIFIED_HASHES_NAME
    first = VerifiedHashes(record, settle_ns=0)
    assert first.matches(model, digest) and hashing == [model]
    first.save()
    assert VerifiedHashes(record, settle_ns=0).matches(model, digest)  # a new process: the record on disk
    assert hashing == [model]
    assert VerifiedHashes(record, settle_ns=0, trust=False).matches(model, digest)  # a full check reads it
    assert hashing == [model, model]
    assert not VerifiedHashes(record, settle_ns=0).matches(model, "0" * 64)  # another expected hash
    assert sorted(p.name for p in record.parent.iterdir()) == [VERIFIED_HASHES_NAME]  # no temporary left


def test_new_bytes_of_the_same_size_under_the_old_mtime_are_refused(tmp_path: Path, hashing: list[Path]) -> None:
    """The key: path, device, inode, size, mtime_ns and ctime_ns. Writing in place keeps the inode and
    the size, and os.utime puts the mtime back; only the ctime, which no program can set, tells."""
    model = _settled(tmp_path / "model.onnx", b"A" * 4096)
    digest = sha256_file(model)
    record = tmp_path / VERIFIED_HASHES_NAME
    hashes = VerifiedHashes(record, settle_ns=0)
    assert hashes.matches(model, digest)
    hashes.save()
    before = os.stat(model)
    with open(model, "r+b") as fh:  # the same file (inode), the same size, other bytes
        fh.write(b"B")
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(model)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    hashing.clear()
    assert not VerifiedHashes(record, settle_ns=0).matches(model, digest)
    assert hashing == [model]  # read in full, not answered from the record


def test_a_file_renamed_over_it_is_read_again(tmp_path: Path, hashing: list[Path]) -> None:
    model = _settled(tmp_path / "model.onnx", b"A" * 4096)
    digest = sha256_file(model)
    record = tmp_path / VERIFIED_HASHES_NAME
    hashes = VerifiedHashes(record, settle_ns=0)
    assert hashes.matches(model, digest)
    hashes.save()
    old = os.stat(model)
    other = tmp_path / "other"
    other.write_bytes(b"C" * 4096)
    os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(other, model)  # another inode at the same path, size and mtime
    hashing.clear()
    assert not VerifiedHashes(record, settle_ns=0).matches(model, digest) and hashing == [model]


def test_a_file_that_just_changed_is_not_remembered(tmp_path: Path, hashing: list[Path]) -> None:
    """A change in the same tick of the file system's clock as the hashing would leave the same stat."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"fresh")
    digest = sha256_file(model)
    record = tmp_path / VERIFIED_HASHES_NAME
    hashes = VerifiedHashes(record)  # the default settle time: seconds
    assert hashes.matches(model, digest)
    hashes.save()
    assert VerifiedHashes(record).matches(model, digest)
    assert hashing == [model, model]


BROKEN_RECORDS = [b"not json {", b"\xff\xfe", b"[1, 2]", b'{"format": "other", "files": {}}']


@pytest.mark.parametrize("content", [*BROKEN_RECORDS, b'{"format": "assoc-verified-hashes-1"}'])
def test_a_broken_record_is_ignored(tmp_path: Path, hashing: list[Path], content: bytes) -> None:
    model = _settled(tmp_path / "model.onnx", b"weights")
    digest = sha256_file(model)
    record = tmp_path / VERIFIED_HASHES_NAME
    record.write_bytes(content)
    hashes = VerifiedHashes(record, settle_ns=0)
    assert hashes.matches(model, digest) and hashing == [model]
    hashes.save()  # replaced by a good one
    assert json.loads(record.read_text())["format"] == "assoc-verified-hashes-1"
    assert VerifiedHashes(record, settle_ns=0).matches(model, digest) and hashing == [model]


def test_malformed_entries_are_ignored_and_a_record_that_cannot_be_written_is_no_error(
    tmp_path: Path, hashing: list[Path]
) -> None:
    model = _settled(tmp_path / "model.onnx", b"weights")
    digest = sha256_file(model)
    record = tmp_path / VERIFIED_HASHES_NAME
    wrong = {str(model.absolute()): ["dev", 1, 2, 3, 4, digest]}
    record.write_text(json.dumps({"format": "assoc-verified-hashes-1", "files": wrong}))
    assert VerifiedHashes(record, settle_ns=0).matches(model, digest) and hashing == [model]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    unwritable = VerifiedHashes(blocked / VERIFIED_HASHES_NAME, settle_ns=0)  # its folder is a file
    assert unwritable.matches(model, digest)
    unwritable.save()
    assert blocked.read_text() == ""


def test_load_bundle_hashes_the_shipped_bundle_once(bundle_dir: Path, cache_home: Path, hashing: list[Path]) -> None:
    first = load_bundle(bundle_dir)
    files = {*first.config.files, *first.config.vocabulary.files}
    assert sorted(p.relative_to(bundle_dir).as_posix() for p in hashing) == sorted(files)
    assert (cache_home / VERIFIED_HASHES_NAME).is_file()
    hashing.clear()
    again = load_bundle(bundle_dir)
    assert hashing == [] and again.config == first.config
    load_bundle(bundle_dir, rehash=True)  # a full check, as `assoc check` asks
    assert len(hashing) == len(files)


def test_a_changed_bundle_file_is_refused_after_a_remembered_load(
    bundle_dir: Path, tmp_path: Path, cache_home: Path, hashing: list[Path]
) -> None:
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    time.sleep(2.1)  # past bundle.SETTLE_NS, so that the copy's hashes are remembered
    load_bundle(copy)
    hashing.clear()
    load_bundle(copy)
    assert hashing == []
    tokenizer = copy / TOKENIZER_FILE
    old = os.stat(tokenizer)
    data = bytearray(tokenizer.read_bytes())
    data[len(data) // 2] ^= 0x01
    with open(tokenizer, "r+b") as fh:  # in place: same inode, same size
        fh.write(data)
    os.utime(tokenizer, ns=(old.st_atime_ns, old.st_mtime_ns))
    with pytest.raises(BundleError, match="tokenizer.json does not match its sha256"):
        load_bundle(copy)


# ---------------------------------------------------------------- the lazy CLI


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Path:
    """Three real photos indexed with the shipped bundle."""
    root = tmp_path_factory.mktemp("cold")
    library = root / "library"
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:3], library)
    ok("index", library, "--gallery", root / "gallery", "--device", "cpu")
    return root / "gallery"


SEARCH_IN_PROCESS = """
import json, sys
from assoc.cli.app import main

sys.argv = ["assoc", "query", sys.argv[2], "--gallery", sys.argv[1], "--json", "--device", "cpu"]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def test_a_json_query_imports_only_what_it_runs(gallery: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", SEARCH_IN_PROCESS, str(gallery), QUERY],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])  # main() returned: the program went on
    assert report["code"] == 0 and len(json.loads(done.stdout)) == 3
    modules = set(report["modules"])
    unwanted = ("rich", "PIL", "pydantic", "typer.rich_utils", "assoc.runtime.indexing.indexer", "assoc.api.render")
    assert not [m for m in modules if m.startswith(unwanted)]
    commands = {f"assoc.cli.{name}" for name in set(cli_app.COMMANDS.values())}
    assert sorted(modules & commands) == ["assoc.cli.query_cmd"]


def test_help_lists_every_command_and_a_typo_is_still_told(gallery: Path) -> None:
    shown = ok("--help").stdout
    for name in cli_app.COMMANDS:
        assert re.search(rf"^\W*{name}\s", shown, re.MULTILINE), name
    assert_one_line_error(assoc("qurey", "dog"), "no such command 'qurey'", "Did you mean 'query'?")


def test_the_command_table_is_what_the_modules_register() -> None:
    registered = {}
    for module_name in sorted(set(cli_app.COMMANDS.values())):
        registry = typer.Typer()
        importlib.import_module(f"assoc.cli.{module_name}").register(registry)
        for info in registry.registered_commands:
            registered[info.name or info.callback.__name__] = module_name
    assert registered == cli_app.COMMANDS
    folder = Path(cli_app.__file__).parent
    with_commands = {p.stem for p in folder.glob("*.py") if "\ndef register(" in p.read_text(encoding="utf-8")}
    assert with_commands == set(cli_app.COMMANDS.values())


def test_import_assoc_is_light_and_every_name_is_there() -> None:
    code = "import sys, assoc; print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    assert set(assoc_api.__all__) == set(assoc_api._HOMES)
    assert all(getattr(assoc_api, name) is not None for name in assoc_api.__all__)
    with pytest.raises(AttributeError):
        assoc_api.NoSuchThing  # noqa: B018


# ---------------------------------------------------------------- conversion without pydantic


def test_options_convert_as_typer_itself_does(tmp_path: Path) -> None:
    from typer._coercion import build_runtime_param

    from assoc.cli.options import StoreKind

    command = typer.main.get_command(cli_app.app).commands["query"]
    ctx = command.make_context("query", ["dog"], resilient_parsing=True)
    inputs = {
        "text": ["a dog", "", "chien \u00e9t\u00e9"],
        "top": [10, "10", "5", "+3", "03", "0", "-1", "many", "1_0", " 4", "3.5", ""],
        "min_score": [0.25, "0.5", "-1", "1e-3", ".5", "5.", "inf", "nan", "x", "1,5"],
        "gallery": ["some/where", "~/x", str(tmp_path), ""],
        "store": ["builtin", "qdrant", "BUILTIN", "nope", StoreKind.builtin],
        "device": ["auto", "cpu"],
        "as_json": [True, False],
    }
    for param in command.params:
        for value in inputs.get(param.name, []):
            ours = _outcome(lambda v, p=param: p.get_runtime_param().coerce(v, param=p, ctx=ctx), value)
            theirs = _outcome(
                lambda v, p=param: build_runtime_param(p.type_descriptor).coerce(v, param=p, ctx=ctx), value
            )
            assert ours == theirs, (param.name, value)
    assert all(hasattr(p._runtime_param, "_convert") for p in command.params if p.name in inputs)


def _outcome(convert, value) -> tuple:  # noqa: ANN001 - a conversion and what it is given
    try:
        result = convert(value)
    except Exception as exc:  # noqa: BLE001 - the very exception is what is compared
        return ("error", type(exc).__name__, str(getattr(exc, "message", exc)))
    return ("value", type(result).__name__, repr(result))  # repr: nan is nan


# ---------------------------------------------------------------- the text session


TEXTS = [
    "a dog on the grass",
    "two children in red shirts play football on a sandy beach at sunset",
    " ".join(["a brown dog runs across the green grass near a red ball"] * 8),  # several windows
]


def _plain_outputs(bundle: Bundle, encoder: TextEncoder) -> list[np.ndarray]:
    """The text model's outputs from a session as ONNX Runtime makes it by default (every optimisation,
    its own thread pool), on the batches the encoder runs."""
    plain = ort.InferenceSession(str(bundle.textual_path), providers=["CPUExecutionProvider"])
    return [_run(plain, bundle, encoder, text) for text in TEXTS]


def _run(session: ort.InferenceSession, bundle: Bundle, encoder: TextEncoder, text: str) -> np.ndarray:
    batch = encoder.tokenizer.windows([text]).tokens
    ids_name, mask_name = bundle.config.textual.input_names
    feed = {ids_name: batch.input_ids, mask_name: batch.attention_mask}
    return session.run([bundle.config.textual.output_name], feed)[0]


def _kept_digests(kept: Path) -> dict[str, str]:
    return {
        name: digest for digest, name in (line.split("  ") for line in (kept / KEPT_DIGESTS).read_text().splitlines())
    }


def test_the_kept_text_graph_gives_the_same_vectors(bundle: Bundle, cache_home: Path) -> None:
    made = TextEncoder(bundle, "cpu", QUERY_THREADS)  # optimises, keeps the graph
    kept = optimized_path(text_graph_key(bundle))
    assert kept.is_relative_to(cache_home) and sorted(p.name for p in kept.iterdir()) == sorted(
        [*KEPT_FILES, KEPT_DIGESTS]
    )
    assert (kept / KEPT_WEIGHTS).stat().st_size > 10 * (kept / KEPT_GRAPH).stat().st_size  # the weights kept apart
    assert _kept_digests(kept) == {name: sha256_file(kept / name) for name in KEPT_FILES}
    stamps = [os.stat(kept / name).st_mtime_ns for name in (KEPT_GRAPH, KEPT_WEIGHTS)]
    loaded = TextEncoder(bundle, "cpu", QUERY_THREADS)  # loads the kept graph, unoptimised
    assert [os.stat(kept / name).st_mtime_ns for name in (KEPT_GRAPH, KEPT_WEIGHTS)] == stamps
    reference = _plain_outputs(bundle, made)
    for encoder in (made, loaded):
        for text, expected in zip(TEXTS, reference, strict=True):
            got = _run(encoder.session, bundle, encoder, text)
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    for a, b in zip(made.encode(TEXTS), loaded.encode(TEXTS), strict=True):
        assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.token_word, b.token_word)


@pytest.mark.parametrize("damage", ["weight", "graph", "missing weights", "digests"])
def test_a_damaged_kept_graph_is_made_again(bundle: Bundle, cache_home: Path, damage: str) -> None:
    first = TextEncoder(bundle, "cpu", QUERY_THREADS)
    kept = optimized_path(text_graph_key(bundle))
    if damage in ("weight", "graph"):
        target = kept / (KEPT_WEIGHTS if damage == "weight" else KEPT_GRAPH)
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF  # a flipped byte in a weight would still load
        target.write_bytes(bytes(data))
    elif damage == "missing weights":
        (kept / KEPT_WEIGHTS).unlink()
    else:
        (kept / KEPT_DIGESTS).write_text("not digests\n")
    again = TextEncoder(bundle, "cpu", QUERY_THREADS)
    assert _kept_digests(kept) == {name: sha256_file(kept / name) for name in KEPT_FILES}
    assert [p.name for p in kept.parent.iterdir()] == [kept.name]  # nothing set aside is left
    for a, b in zip(first.encode(TEXTS), again.encode(TEXTS), strict=True):
        assert np.array_equal(a.vectors, b.vectors)


# ---------------------------------------------------------------- the installed command


def test_the_console_script_answers_as_the_api_does(gallery: Path, tmp_path: Path) -> None:
    done = run_process("query", QUERY, "--gallery", gallery, "--json", "--device", "cpu")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    with assoc_api.Searcher(store=StoreSpec.builtin(gallery), device="cpu") as searcher:
        expected = [hit.to_dict() for hit in searcher.search(QUERY)]
    assert json.loads(done.stdout) == expected
    info = run_process("info", "--gallery", gallery, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["store"]["photos"] == 3
    missing = run_process("query", QUERY, "--gallery", tmp_path / "none", "--json")
    assert_one_line_error(missing, "no gallery at")


DEFAULT_GC = gc.get_threshold()[0]  # Python's own, as a new process starts with
SET_UP = """
import gc, json, os, sys
import assoc.cli.app as app
if sys.argv[1] == "installed":
    app.quick_exit.is_the_command = lambda: True  # as in the console script
app.before_loading(sys.argv[2])
print(json.dumps([gc.get_threshold()[0], os.environ.get("OPENBLAS_NUM_THREADS"), "numpy" in sys.modules]))
"""


@pytest.mark.parametrize(
    ("where", "command", "blas", "expected"),
    [
        ("installed", "query", None, [cli_app.GC_THRESHOLD, "1", False]),
        ("installed", "localize", "4", [cli_app.GC_THRESHOLD, "4", False]),  # the user's own setting stays
        ("in a program", "query", None, [DEFAULT_GC, "1", False]),  # a program goes on after main()
        ("installed", "index", None, [DEFAULT_GC, None, False]),  # batch work: numpy's own threads
    ],
)
def test_a_short_command_is_set_up_before_numpy_loads(
    where: str, command: str, blas: str | None, expected: list, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if blas is not None:
        env["OPENBLAS_NUM_THREADS"] = blas
    done = subprocess.run(
        [sys.executable, "-c", SET_UP, where, command], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


def test_assoc_check_hashes_the_bundle_in_full(
    gallery: Path, bundle: Bundle, cache_home: Path, hashing: list[Path]
) -> None:
    ok("info", "--gallery", gallery)  # the shipped bundle's hashes are now remembered
    hashing.clear()
    ok("info", "--gallery", gallery)
    assert hashing == []
    report = json.loads(ok("check", "--gallery", gallery, "--json").stdout)
    assert report["photos"] == 3 and report["damaged"] == []
    assert len(hashing) == len({*bundle.config.files, *bundle.config.vocabulary.files})  # each read again


def test_a_graph_kept_by_another_onnx_runtime_is_removed(bundle: Bundle, cache_home: Path) -> None:
    kept = optimized_path(text_graph_key(bundle))
    older = kept.with_name(f"{text_graph_key(bundle)}-ort0.1")
    older.mkdir(parents=True)
    (older / KEPT_GRAPH).write_bytes(b"an older graph")
    flat = kept.with_name(f"{kept.name}.onnx")  # as graphs were kept before their weights were kept apart
    flat.write_bytes(b"a graph in one file")
    flat.with_name(flat.name + ".sha256").write_text(sha256_file(flat) + "\n")
    other_model = kept.with_name(f"another-{kept.name}")
    other_model.mkdir()
    TextEncoder(bundle, "cpu", QUERY_THREADS)
    assert sorted(p.name for p in kept.parent.iterdir()) == sorted([kept.name, other_model.name])
