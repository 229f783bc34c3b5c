"""The incremental indexer with the real bundle on ONNX Runtime, real photos and a real gallery."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from assoc.runtime.encoding.bundle import Bundle, FirstStageConfig
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.imaging.images import load_image
from assoc.runtime.indexing.indexer import (
    IndexSummary,
    IndexWriter,
    index_paths,
    photo_encoder,
    plan_index,
    prepare,
    run_stages,
)
from assoc.runtime.search.pipeline import search
from assoc.runtime.stores.gallery import Gallery


@pytest.fixture(scope="module")
def sources(flickr8k: Path, coco_boxes: Path) -> list[Path]:
    """Ten real photos of two sizes."""
    flickr = sorted((flickr8k / "images").glob("*.jpg"))[:7]
    coco = sorted((coco_boxes / "images").glob("*.jpg"))[:3]
    return flickr + coco


def open_gallery(folder: Path, bundle: Bundle) -> Gallery:
    return Gallery.open(folder, bundle.bundle_id, bundle.config.embed_dim)


def copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def grid_alone(path: Path, encoder: ImageEncoder) -> np.ndarray:
    """The photo encoded by itself, outside the indexer, in float16 as a gallery keeps it."""
    height, width = encoder.config.image_size
    grid = encoder.encode([load_image(path, min_size=(width, height)).image])[0]
    return grid.astype(np.float16).astype(np.float32)


def counts(summary: IndexSummary) -> tuple[int, int, int, int, int, int]:
    s = summary
    return s.added, s.updated, s.reused, s.removed, s.unchanged, len(s.skipped)


def test_index_then_query(tmp_path: Path, sources: list[Path], bundle: Bundle, encoder: ImageEncoder) -> None:
    library = tmp_path / "library"
    photos = [copy(src, library / f"{i % 3}" / src.name) for i, src in enumerate(sources)]
    progress: list[tuple[int, int]] = []
    with open_gallery(tmp_path / "g", bundle) as g:
        summary = index_paths(
            g, encoder, [library], batch_size=4, workers=2, on_progress=lambda d, t: progress.append((d, t))
        )
        assert counts(summary) == (10, 0, 0, 0, 0, 0)
        assert progress == [(i, 10) for i in range(11)]
        records = g.records()
        assert sorted(records) == sorted(str(p) for p in photos)

        coco = photos[-1]
        rec = records[str(coco)]
        st = coco.stat()
        assert (rec.size, rec.mtime_ns, rec.grid) == (st.st_size, st.st_mtime_ns, bundle.config.visual.grid)
        assert (rec.width, rec.height) == load_image(coco).image.size

        for photo in (photos[0], coco):
            alone = grid_alone(photo, encoder)
            np.testing.assert_allclose(g.get_grid(str(photo)), alone, atol=2e-3)
            hits = search(g, alone.reshape(-1, alone.shape[-1]), k=3)  # query by the photo's own patches
            assert hits[0].path == str(photo) and hits[0].score > 0.99

        query = TextEncoder(bundle, device="cpu").encode_one("a dog runs on the grass")
        hits = search(g, query.vectors, k=20)
        assert sorted(h.path for h in hits) == sorted(records)
        assert hits == search(g, query.vectors, k=20)


def test_incremental_runs_add_update_reuse_and_remove(
    tmp_path: Path, sources: list[Path], bundle: Bundle, encoder: ImageEncoder
) -> None:
    library = tmp_path / "library"
    for src in sources[:6]:
        copy(src, library / src.name)
    a, b, c, d, e, f = (library / src.name for src in sources[:6])
    with open_gallery(tmp_path / "g", bundle) as g:
        assert counts(index_paths(g, encoder, [library], batch_size=4, workers=2)) == (6, 0, 0, 0, 0, 0)
        assert counts(index_paths(g, encoder, [library])) == (0, 0, 0, 0, 6, 0)
        grid_b, grid_c = g.get_grid(str(b)), g.get_grid(str(c))

        copy(sources[6], library / "new" / sources[6].name)  # a new photo
        copy(sources[7], a)  # a changed in place
        b.rename(library / "renamed.jpg")  # a rename
        copy(c, library / "copy" / "c.jpg")  # a duplicate
        d.unlink()  # gone
        os.utime(e, ns=(e.stat().st_atime_ns, e.stat().st_mtime_ns + 10**9))  # touched, same content
        summary = index_paths(g, encoder, [library], batch_size=4, workers=2)
        assert counts(summary) == (1, 1, 3, 2, 2, 0)  # reused: renamed, copy, touched; removed: b, d

        records = g.records()
        assert set(records) == {
            str(a),
            str(c),
            str(e),
            str(f),
            str(library / "renamed.jpg"),
            str(library / "copy" / "c.jpg"),
            str(library / "new" / sources[6].name),
        }
        np.testing.assert_array_equal(g.get_grid(str(library / "renamed.jpg")), grid_b)
        np.testing.assert_array_equal(g.get_grid(str(library / "copy" / "c.jpg")), grid_c)
        np.testing.assert_allclose(g.get_grid(str(a)), grid_alone(sources[7], encoder), atol=2e-3)
        assert records[str(e)].mtime_ns == e.stat().st_mtime_ns
        assert counts(index_paths(g, encoder, [library])) == (0, 0, 0, 0, 7, 0)


def test_only_what_was_walked_can_be_removed(
    tmp_path: Path, sources: list[Path], bundle: Bundle, encoder: ImageEncoder
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    copy(sources[0], one / "a.jpg")
    copy(sources[1], one / "b.jpg")
    copy(sources[2], two / "c.jpg")
    with open_gallery(tmp_path / "g", bundle) as g:
        index_paths(g, encoder, [one, two])
        (two / "c.jpg").unlink()
        (one / "b.jpg").unlink()
        summary = index_paths(g, encoder, [one])  # two is not walked: its photo stays
        assert counts(summary) == (0, 0, 0, 1, 1, 0)
        assert set(g.records()) == {str(one / "a.jpg"), str(two / "c.jpg")}

        shutil.move(one, tmp_path / "unmounted")  # a root that is not there removes nothing
        summary = index_paths(g, encoder, [one])
        assert summary.skipped == [(str(one), "no such file or folder")] and summary.removed == 0
        assert len(g) == 2


def test_an_emptied_root_keeps_its_photos(
    tmp_path: Path, sources: list[Path], bundle: Bundle, encoder: ImageEncoder
) -> None:
    nas, disk = tmp_path / "nas", tmp_path / "disk"
    on_nas = [copy(src, nas / "2020" / src.name) for src in sources[:3]]
    on_disk = [copy(src, disk / src.name) for src in sources[3:5]]
    with open_gallery(tmp_path / "g", bundle) as g:
        index_paths(g, encoder, [nas, disk])
        shutil.rmtree(nas / "2020")  # the share is disconnected: its mount point is left, empty
        (nas / ".DS_Store").write_bytes(b"\0")  # dot-names do not count as content
        on_disk[0].unlink()  # gone from a root that still has content: removed as before
        summary = index_paths(g, encoder, [nas, disk])
        assert counts(summary) == (0, 0, 0, 1, 1, 0)
        assert summary.kept_in_empty == [(str(nas), 3)]
        assert set(g.records()) == {str(p) for p in [*on_nas, on_disk[1]]}

        (nas / "2020").mkdir()  # back, but with an empty subfolder: the root has content, the photos are gone
        summary = index_paths(g, encoder, [nas, disk])
        assert (summary.removed, summary.kept_in_empty) == (3, [])
        assert set(g.records()) == {str(on_disk[1])}

        on_disk[1].unlink()
        (nas / "2020").rmdir()
        summary = index_paths(g, encoder, [nas, disk])  # both empty; the store holds nothing under nas
        assert (summary.removed, summary.kept_in_empty) == (0, [(str(disk), 1)])


def huge_png(path: Path, width: int = 30_000, height: int = 30_000) -> None:
    """A valid PNG header claiming 900 megapixels, with no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_bad_files_are_skipped_and_never_shift_a_grid(
    tmp_path: Path, sources: list[Path], bundle: Bundle, encoder: ImageEncoder
) -> None:
    library = tmp_path / "library"
    good = [copy(src, library / f"{i}-good.jpg") for i, src in enumerate(sources[:4])]
    (library / "0-truncated.jpg").write_bytes(sources[5].read_bytes()[:3000])
    (library / "1-empty.jpg").write_bytes(b"")
    (library / "2-text.jpg").write_text("this is a shopping list, not a photo\n")
    huge_png(library / "3-huge.png")
    with open_gallery(tmp_path / "g", bundle) as g:
        summary = index_paths(g, encoder, [library], batch_size=3, workers=2)
        assert counts(summary) == (4, 0, 0, 0, 0, 4)
        reasons = dict(summary.skipped)
        assert reasons[str(library / "1-empty.jpg")] == "empty file"
        assert reasons[str(library / "2-text.jpg")] == "not a recognised image format"
        assert reasons[str(library / "0-truncated.jpg")].startswith("cannot decode")
        assert "pixels" in reasons[str(library / "3-huge.png")]
        assert set(g.records()) == {str(p) for p in good}
        grids = [g.get_grid(str(p)) for p in good]

    for photo, grid in zip(good, grids, strict=True):
        with open_gallery(tmp_path / f"alone-{photo.stem}", bundle) as alone:
            index_paths(alone, encoder, [photo])
            np.testing.assert_allclose(grid, alone.get_grid(str(photo)), atol=2e-3)
    for i in range(1, len(grids)):  # the photos differ, so a shifted grid could not pass the check above
        assert np.abs(grids[i] - grids[i - 1]).max() > 0.1

    (library / "0-truncated.jpg").write_bytes(sources[5].read_bytes())  # repaired
    copy(sources[4], good[0])
    (library / "2-text.jpg").unlink()
    with open_gallery(tmp_path / "g", bundle) as g:
        good[1].write_text("overwritten by mistake")  # known, now unreadable: its grid is stale
        summary = index_paths(g, encoder, [library], batch_size=3, workers=2)
        assert counts(summary) == (1, 1, 0, 1, 2, 3)
        assert str(good[1]) not in g.records() and str(library / "0-truncated.jpg") in g.records()


def test_files_prepared_and_encoded_elsewhere_go_through_the_same_loop(
    tmp_path: Path, sources: list[Path], bundle: Bundle, encoder: ImageEncoder
) -> None:
    """run_stages as a Ray executor drives it: files prepared and encoded away from the writer, handed
    over out of order in batches of another size, make the gallery index_paths makes."""
    library = tmp_path / "library"
    for i, src in enumerate(sources[:6]):
        copy(src, library / f"{i}.jpg")
    (library / "bad.jpg").write_text("not a photo")
    with open_gallery(tmp_path / "local", bundle) as g:
        local = index_paths(g, encoder, [library], batch_size=4, workers=2)
        local_vectors = {path: g.get_vectors(path) for path in g.records()}

    encode = photo_encoder(encoder, FirstStageConfig())
    with open_gallery(tmp_path / "remote", bundle) as g:
        plan = plan_index(g, [library])
        writer = IndexWriter(g, plan, bundle.config.visual, encode=lambda pixels: pytest.fail("encoded twice"))
        prepared = [prepare(file, bundle.config.visual, {}) for file in reversed(plan.todo)]
        made = iter(encode(np.stack([p.pixels for p in prepared if p.error is None])))
        remote = [replace(p, pixels=None, vectors=next(made)) if p.error is None else p for p in prepared]
        progress: list[tuple[int, int]] = []
        summary = run_stages(writer, remote, len(remote), 3, lambda d, t: progress.append((d, t)))
        assert counts(summary) == counts(local) == (6, 0, 0, 0, 0, 1)
        assert summary.skipped == local.skipped
        assert progress == [(i, 7) for i in range(8)]
        assert set(g.records()) == set(local_vectors)
        for path, vectors in local_vectors.items():
            stored = g.get_vectors(path)
            for field in ("grid", "pooled", "centroids"):
                # encoded in other batches: equal up to float16 rounding of batch-dependent sums
                np.testing.assert_allclose(getattr(stored, field), getattr(vectors, field), atol=2e-3)


CHILD = """
import sys, time
from assoc.runtime.encoding.bundle import load_bundle
from assoc.runtime.encoding.encoders import ImageEncoder
from assoc.runtime.stores.gallery import Gallery
from assoc.runtime.indexing.indexer import index_paths

bundle = load_bundle(sys.argv[1])
gallery = Gallery.open(sys.argv[2], bundle.bundle_id, bundle.config.embed_dim)
encoder = ImageEncoder(bundle, device="cpu", threads=1)

def progress(done, total):
    print(done, flush=True)
    time.sleep(0.2)  # slow enough for the parent to kill mid-run

index_paths(gallery, encoder, [sys.argv[3]], batch_size=2, workers=1, on_progress=progress)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_index_run_resumes_where_it_stopped(
    tmp_path: Path, sources: list[Path], bundle: Bundle, bundle_dir: Path, encoder: ImageEncoder
) -> None:
    library = tmp_path / "library"
    for src in sources:
        copy(src, library / src.name)
    folder = tmp_path / "g"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(bundle_dir), str(folder), str(library)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        while int(child.stdout.readline()) < 6:
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    with open_gallery(folder, bundle) as g:
        done = len(g)
        assert 4 <= done < len(sources)
        summary = index_paths(g, encoder, [library], batch_size=4, workers=2)
        assert counts(summary) == (len(sources) - done, 0, 0, 0, done, 0)
        for path in g.records():
            np.testing.assert_allclose(g.get_grid(path), grid_alone(Path(path), encoder), atol=2e-3)
