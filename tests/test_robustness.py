"""Robustness on real parts: hostile bundle configs, queries past the text encoder's window, photos over
the decode cap, a gallery inside an indexed folder, two index runs at once, and a local Ray cluster
whose driver is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_line_error, assoc, assoc_command, run_process
from PIL import Image
from tokenizers import Tokenizer

from assoc.api.searcher import Searcher
from assoc.api.stores import StoreSpec
from assoc.runtime.encoding.bundle import CONFIG_NAME, Bundle, load_bundle
from assoc.runtime.encoding.encoders import MAX_QUERY_TOKENS, ImageEncoder, TextEncoder
from assoc.runtime.errors import BundleError, GalleryIndexingError, QueryError
from assoc.runtime.imaging.images import load_image
from assoc.runtime.imaging.pillow_decode import MAX_MEGAPIXELS
from assoc.runtime.indexing.indexer import index_paths
from assoc.runtime.indexing.lock import index_lock
from assoc.runtime.indexing.walk import GALLERY_REASON, walk
from assoc.runtime.stores.catalogue import DB_NAME
from assoc.runtime.stores.gallery import Gallery

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="flock, SIGKILL and /proc are POSIX")


def open_gallery(folder: Path, bundle: Bundle) -> Gallery:
    return Gallery.open(folder, bundle.bundle_id, bundle.config.embed_dim)


def copy_photos(sources: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(src, folder / src.name)) for src in sources]


# ---------------------------------------------------------------------------------------------------- 1. bundle config


@pytest.fixture
def edited_bundle(tmp_path: Path, bundle_dir: Path) -> Callable[[Callable[[dict], None]], Path]:
    """A bundle of links to the shipped model files with an edited config.json (whose recorded hashes
    cover only the model files, so they still match)."""

    def make(edit: Callable[[dict], None]) -> Path:
        root = tmp_path / f"bundle{len(list(tmp_path.glob('bundle*')))}"
        root.mkdir()
        for part in ("visual", "textual", "vocabulary"):
            (root / part).symlink_to(bundle_dir / part, target_is_directory=True)
        raw = json.loads((bundle_dir / CONFIG_NAME).read_text(encoding="utf-8"))
        edit(raw)
        (root / CONFIG_NAME).write_text(json.dumps(raw), encoding="utf-8")
        return root

    return make


def _set(*keys: str, value: object) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        target = raw
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set("visual", "image_size", value=[100000, 100000]), "visual image_size"),
        (_set("localize", "image_size", value=[100000, 100000]), "localize image_size"),
        (_set("visual", "image_size", value=[0, 320]), "visual image_size"),
        (_set("visual", "std", value=[0.0, 0.5, 0.5]), "visual std"),
        (_set("visual", "std", value=[-0.5, 0.5, 0.5]), "visual std"),
        (_set("visual", "mean", value=[float("nan"), 0.5, 0.5]), "visual mean"),
        (_set("visual", "grid", value=[0, 10]), "visual grid"),
        (_set("visual", "grid", value=[400, 400]), "visual grid"),
        (_set("textual", "max_length", value=0), "max_length"),
        (_set("textual", "max_length", value=-5), "max_length"),
        (_set("embed_dim", value=0), "embed_dim"),
        (_set("embed_dim", value=10**9), "embed_dim"),
    ],
)
def test_an_absurd_config_value_is_refused_when_the_bundle_opens(
    edited_bundle: Callable, edit: Callable, field: str
) -> None:
    with pytest.raises(BundleError) as err:
        load_bundle(edited_bundle(edit))
    assert_one_line(err, "config.json", field)


@pytest.mark.parametrize(
    ("edit", "field", "encoders"),
    [
        (_set("embed_dim", value=128), "embed_dim is 128", (ImageEncoder, TextEncoder)),
        (_set("visual", "grid", value=[7, 7]), "visual grid is 7x7", (ImageEncoder,)),
        (_set("visual", "input_name", value="pictures"), "visual input_name 'pictures'", (ImageEncoder,)),
        (_set("visual", "output_name", value="grid"), "visual output_name 'grid'", (ImageEncoder,)),
        (_set("textual", "output_name", value="words"), "textual output_name 'words'", (TextEncoder,)),
        (_set("textual", "input_names", value=["ids", "mask"]), "textual input_names 'ids'", (TextEncoder,)),
        (_set("textual", "max_length", value=2), "max_length", (TextEncoder,)),
    ],
)
def test_a_config_that_contradicts_its_onnx_graphs_is_refused_when_the_session_opens(
    edited_bundle: Callable, edit: Callable, field: str, encoders: tuple[type, ...]
) -> None:
    bundle = load_bundle(edited_bundle(edit))  # the cheap checks pass: only the graphs tell
    for encoder in encoders:
        with pytest.raises(BundleError) as err:
            encoder(bundle, device="cpu")
        assert_one_line(err, str(bundle.root), field)


def test_the_shipped_bundle_passes_every_check(bundle: Bundle) -> None:
    ImageEncoder(bundle, device="cpu")
    TextEncoder(bundle, device="cpu")


def test_cli_refuses_a_broken_config_in_one_line_and_makes_no_gallery(
    edited_bundle: Callable, tmp_path: Path, flickr8k: Path
) -> None:
    library = tmp_path / "library"
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:2], library)
    zero_std = edited_bundle(_set("visual", "std", value=[0, 0, 0]))
    assert_one_line_error(assoc("info", "--model", zero_std, "--gallery", tmp_path / "g"), "visual std")
    wrong_dim = edited_bundle(_set("embed_dim", value=128))
    result = assoc("index", library, "--model", wrong_dim, "--gallery", tmp_path / "g", "--device", "cpu")
    assert_one_line_error(result, "embed_dim is 128")
    assert not (tmp_path / "g").exists()  # the gallery is made only once the model is known to fit


# ----------------------------------------------------------------------------------------------------- 2. long queries


@pytest.fixture(scope="module")
def texts(bundle: Bundle) -> TextEncoder:
    return TextEncoder(bundle, device="cpu")


def _content_tokens(bundle: Bundle, text: str) -> int:
    """Word pieces of a text with nothing cut: no special tokens, no truncation, no padding."""
    tok = Tokenizer.from_file(str(bundle.tokenizer_path))
    tok.no_truncation()
    tok.no_padding()
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_every_word_of_a_long_query_takes_part(bundle: Bundle, texts: TextEncoder) -> None:
    vocabulary = json.loads((bundle.root / "vocabulary" / "words.json").read_text(encoding="utf-8"))
    words = [w for w in vocabulary["words"] if w.isalpha()][::37][:60]
    assert len(set(words)) == 60
    query = " ".join(words)
    tokens = _content_tokens(bundle, query)
    assert tokens > bundle.config.textual.max_length  # past one window
    encoded = texts.encode_one(query)
    assert encoded.words == words
    assert encoded.vectors.shape == (tokens, bundle.config.embed_dim)
    assert encoded.token_word.shape == (tokens,)
    assert sorted(set(encoded.token_word.tolist())) == list(range(60))
    assert (np.diff(encoded.token_word) >= 0).all()  # in the query's order
    assert np.isfinite(encoded.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(encoded.vectors, axis=1), 1.0, atol=1e-3)
    # The last word counts: another last word gives other vectors (cut at max_length, both were the same).
    other = texts.encode_one(" ".join([*words[:-1], "dog"]))
    assert other.words[-1] == "dog" and other.words[:-1] == words[:-1]
    assert other.vectors.shape == encoded.vectors.shape  # "dog" and the last word are one token each
    cosine = (other.vectors * encoded.vectors).sum(axis=1)
    last = encoded.token_word == 59
    assert cosine[last].max() < 0.7 and np.median(cosine[~last]) > 0.9


def test_a_query_within_one_window_is_encoded_as_before(bundle: Bundle, texts: TextEncoder) -> None:
    captions = ["a dog runs on the grass .", "A skateboarder jumps", "two children , a ball and a red kite"]
    batch = texts.tokenizer(captions)  # the one-window encoding training uses
    ids_name, mask_name = bundle.config.textual.input_names
    (tokens,) = texts.session.run(
        [bundle.config.textual.output_name], {ids_name: batch.input_ids, mask_name: batch.attention_mask}
    )
    for row, encoded in enumerate(texts.encode(captions)):
        keep = batch.word_mask[row]
        np.testing.assert_allclose(encoded.vectors, tokens[row][keep], atol=1e-5)
        assert encoded.token_word.tolist() == batch.word_index[row][keep].tolist()
        assert encoded.words == batch.words[row]


def test_a_huge_query_is_refused_in_one_line(texts: TextEncoder, tmp_path: Path) -> None:
    huge = ("a dog runs on the grass by the sea " * 3000)[:100_000]  # 100 KB
    with pytest.raises(QueryError) as err:
        texts.encode_one(huge)
    assert_one_line(err, "too long", f"{MAX_QUERY_TOKENS:,} tokens")
    over = " ".join(["dog"] * (MAX_QUERY_TOKENS + 1))  # short in characters, over in tokens
    with pytest.raises(QueryError) as err:
        texts.encode_one(over)
    assert_one_line(err, "too long", f"{MAX_QUERY_TOKENS + 1:,} tokens")
    texts.encode_one(" ".join(["dog"] * MAX_QUERY_TOKENS))  # the bound itself is searched
    with Searcher(store=StoreSpec.builtin(tmp_path / "g"), device="cpu") as searcher, pytest.raises(QueryError) as err:
        searcher.search(huge, words=True)
    assert_one_line(err, "too long")


# ----------------------------------------------------------------------------------------------------- 3. large photos


@pytest.fixture(scope="module")
def large_photo(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Iterator[tuple[Path, Path]]:
    """A real photo upscaled to 12000x9000 (108 MP, over the decode cap) as a small low-quality JPEG,
    with the original; deleted afterwards."""
    folder = tmp_path_factory.mktemp("large")
    original = Path(shutil.copyfile(flickr8k / "fullres" / "10815824_2997e03d76.jpg", folder / "original.jpg"))
    big = folder / "big" / "phone.jpg"
    big.parent.mkdir()
    with Image.open(original) as img:
        img.convert("RGB").resize((12000, 9000), Image.BILINEAR).save(big, quality=20)
    yield big, original
    shutil.rmtree(folder, ignore_errors=True)


def test_localize_opens_a_photo_over_the_decode_cap_as_index_does(
    large_photo: tuple[Path, Path], tmp_path: Path, bundle: Bundle, encoder: ImageEncoder
) -> None:
    big, original = large_photo
    assert MAX_MEGAPIXELS * 1e6 < 12000 * 9000
    with open_gallery(tmp_path / "indexed", bundle) as g:  # what index does with it
        summary = index_paths(g, encoder, [big.parent], workers=1)
        assert (summary.added, summary.skipped) == (1, [])
        assert (g.records()[str(big)].width, g.records()[str(big)].height) == (12000, 9000)
    with Searcher(store=StoreSpec.builtin(tmp_path / "g"), device="cpu") as searcher:
        found = searcher.localize(big, "a dog on the grass")
        small = searcher.localize(original, "a dog on the grass")
        labels = searcher.region_words(big, at=(6000, 4500), top=3)
    assert (found.width, found.height) == (12000, 9000)  # the photo's own pixels
    assert 0 <= found.peak[0] < 12000 and 0 <= found.peak[1] < 9000
    assert found.photo is not None and found.photo.width * found.photo.height <= MAX_MEGAPIXELS * 1e6
    # The same picture as its original, decoded at a reduced scale: the same heatmap, near enough.
    a, b = found.heatmaps.phrase_map.ravel(), small.heatmaps.phrase_map.ravel()
    assert float(np.corrcoef(a, b)[0, 1]) > 0.8
    assert (labels.width, labels.height) == (12000, 9000) and len(labels.words) == 3
    result = assoc("localize", big, "dog", "--json", "--gallery", tmp_path / "g", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert (json.loads(result.stdout)["width"], json.loads(result.stdout)["height"]) == (12000, 9000)


def test_a_photo_within_the_cap_is_still_opened_whole(large_photo: tuple[Path, Path]) -> None:
    _, original = large_photo
    loaded = load_image(original, min_size_if_large=(640, 640))
    assert loaded.image.size == (loaded.width, loaded.height) == (500, 333)  # overlays stay full size


# ------------------------------------------------------------------------------------------- 4. galleries in a library


def test_a_gallery_and_the_cache_inside_an_indexed_folder_are_not_indexed(
    tmp_path: Path, flickr8k: Path, bundle: Bundle, encoder: ImageEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = sorted((flickr8k / "images").glob("*.jpg"))[:5]
    library = tmp_path / "library"
    mine = copy_photos(photos[:3], library / "2019")
    inner = library / "assoc-gallery"  # a gallery someone keeps inside the library, with thumbnails
    with open_gallery(inner, bundle) as g:
        index_paths(g, encoder, [library / "2019"], workers=1)
    copy_photos(photos[3:], inner / "thumbnails")
    monkeypatch.setenv("XDG_CACHE_HOME", str(library / "cache"))  # assoc's per-user cache, also inside
    copy_photos(photos[3:], library / "cache" / "assoc" / "thumbnails" / "0123abcd")
    assert (inner / DB_NAME).is_file()

    found = walk([library])
    assert [f.path for f in found.files] == sorted(str(p) for p in mine)
    assert found.skipped == []
    with open_gallery(tmp_path / "outside", bundle) as g:
        summary = index_paths(g, encoder, [library], workers=1)
        assert summary.added == 3 and sorted(g.records()) == sorted(str(p) for p in mine)
    named = walk([inner])  # a gallery named as the folder to index: said so, nothing read
    assert named.files == [] and named.skipped == [(str(inner), GALLERY_REASON)]


# ------------------------------------------------------------------------------------------------------- 5. one writer


HOLDER = """
import sys, time
from pathlib import Path
from assoc.runtime.encoding.bundle import load_bundle
from assoc.runtime.encoding.encoders import ImageEncoder
from assoc.runtime.indexing.indexer import index_paths
from assoc.runtime.stores.gallery import Gallery

bundle = load_bundle(sys.argv[1])
encoder = ImageEncoder(bundle, device="cpu")
gallery = Gallery.open(Path(sys.argv[2]), bundle.bundle_id, bundle.config.embed_dim)

def hold(done, total):
    if done == 0:
        print("indexing", flush=True)
        sys.stdin.readline()  # holds the run (and its lock) until told to go on

summary = index_paths(gallery, encoder, [sys.argv[3]], batch_size=2, workers=1, on_progress=hold)
print("added", summary.added, flush=True)
"""


@pytest.mark.slow
@POSIX
def test_a_second_index_run_on_a_gallery_fails_at_once_and_a_killed_one_leaves_no_lock(
    tmp_path: Path, flickr8k: Path, bundle: Bundle, bundle_dir: Path
) -> None:
    library = tmp_path / "library"
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:6], library)
    folder = tmp_path / "g"

    def first_run() -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(bundle_dir), str(folder), str(library)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "indexing"
        return child

    child = first_run()
    try:
        started = time.monotonic()
        second = run_process("index", library, "--gallery", folder, "--device", "cpu")
        assert_one_line_error(second, f"gallery {folder} is being indexed by another process (pid {child.pid})")
        assert "wait for it or stop it" in second.stderr and time.monotonic() - started < 60
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["added", "6"]
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()

    assert run_process("index", library, "--gallery", folder, "--device", "cpu").returncode == 0  # freed

    (library / "new").mkdir()
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[6:8], library / "new")
    child = first_run()  # holds the lock, then is killed -9: the kernel drops its lock
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    third = run_process("index", library, "--gallery", folder, "--device", "cpu", "--json")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["added"] == 2


@POSIX
def test_the_index_lock_is_one_per_gallery_and_none_for_other_stores(tmp_path: Path, bundle: Bundle) -> None:
    with open_gallery(tmp_path / "a", bundle) as a, open_gallery(tmp_path / "b", bundle) as b:
        with index_lock(a):
            with pytest.raises(GalleryIndexingError) as err, index_lock(a):
                pass
            assert_one_line(err, f"gallery {tmp_path / 'a'} is being indexed by another process (pid {os.getpid()})")
            with index_lock(b):  # another gallery: its own lock
                pass
        with index_lock(a):  # released
            pass


# ------------------------------------------------------------------------------------------------ 6. local Ray cluster


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _process(pid: int) -> tuple[str, str] | None:
    """(start time, name) of a live process; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else (fields[19], name)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_driver_takes_its_local_ray_cluster_with_it(tmp_path: Path, flickr8k: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (assoc[ray])")
    library = tmp_path / "library"
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:200], library)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSOC_", "RAY_"))}
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - closed below; not a pipe that a survivor holds
    driver = subprocess.Popen(
        [*assoc_command(), "index", str(library), "--gallery", str(tmp_path / "g"), "--ray", "local"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    started: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            for pid in _descendants(driver.pid):
                seen = _process(pid)
                if seen is not None:
                    started[pid] = seen  # its latest name: Ray's agents retitle themselves
            names = " ".join(name for _, name in started.values())
            if "raylet" in names and "ray::DashboardAgent" in names and "ray::RuntimeEnvAgent" in names:
                break
            time.sleep(0.5)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-2000:]
        assert "raylet" in " ".join(name for _, name in started.values()), "the cluster never came up"
        for pid in _descendants(driver.pid):  # the whole tree at the moment of the kill
            seen = _process(pid)
            if seen is not None:
                started[pid] = seen
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = {pid: name for pid, (start, name) in started.items() if (_process(pid) or ("",))[0] == start}
            if not left:
                break
            time.sleep(0.5)
        assert not left, f"left running after the driver was killed: {left}"
    finally:
        log.close()
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
        for pid, (start, _) in started.items():  # never leak what this test started
            if (_process(pid) or ("",))[0] == start:
                os.kill(pid, signal.SIGKILL)
