"""`assoc serve` under load and over a library that changes: what the server holds in memory, how many
huge photos it decodes at once, photos replaced or deleted on disk while it runs, the page's limits
coming from the server, and the module's route list. A real uvicorn on loopback (in this process where a
test looks inside the app's caches, else `assoc serve` in a subprocess), real photos, real Chromium."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from cli_support import SELF_SCORE, copy_photos
from PIL import Image, ImageDraw
from web_support import LocalServer, Server, get_json, memory_mb, request, reset_peak_memory, wait

pytest.importorskip("starlette", reason="assoc serve needs the serve extra: pip install 'assoc[serve]'")
pytest.importorskip("uvicorn", reason="assoc serve needs the serve extra: pip install 'assoc[serve]'")

pytestmark = pytest.mark.slow  # servers, the model, and photos of 12 and 49 megapixels

REPO = Path(__file__).resolve().parents[1]
QUERY = "a dog in the woods"
DOG = "000000442450.jpg"  # examples/photos: a dog in the woods
LARGE = 3  # 12-megapixel photos localized through the server
LARGE_SIZE = (4000, 3000)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path, coco_boxes: Path) -> tuple[Path, Path]:
    """Real photos indexed once: three example photos, a Flickr8k one as other.jpg, two that the tests
    replace and delete (replaced.jpg, doomed.jpg), and three real photos enlarged to 12 megapixels."""
    import assoc

    root = tmp_path_factory.mktemp("web-defects")
    library = root / "photos"
    examples = sorted((REPO / "examples" / "photos").glob("*.jpg"))
    copy_photos([p for p in examples if p.name == DOG] + examples[:2], library)
    shutil.copyfile(flickr8k / "fullres" / "10815824_2997e03d76.jpg", library / "other.jpg")  # 500 x 333
    shutil.copyfile(examples[3], library / "replaced.jpg")  # 640 x 427
    shutil.copyfile(examples[4], library / "doomed.jpg")
    for k, source in enumerate(sorted((coco_boxes / "images").glob("*.jpg"))[:LARGE]):
        big = Image.open(source).convert("RGB").resize(LARGE_SIZE, Image.BICUBIC)
        big.save(library / f"large-{k}.jpg", quality=90)
    with assoc.Searcher(store=assoc.StoreSpec.builtin(root / "gallery"), device="cpu") as searcher:
        assert searcher.index([library]).photos == 6 + LARGE
    return root / "gallery", library


@pytest.fixture(scope="module")
def searcher(gallery: tuple[Path, Path]) -> Any:
    import assoc

    with assoc.Searcher(store=assoc.StoreSpec.builtin(gallery[0]), device="cpu") as opened:
        yield opened


def serve_here(searcher: Any, cache: Path, **limits: int) -> tuple[LocalServer, Any]:
    """The web app over `searcher` under uvicorn in this process, and its Photos to look inside; limits:
    page_size (create_app) and upload_bytes (Photos), else the defaults."""
    from assoc.web.app import create_app
    from assoc.web.photos import Photos

    photos = Photos(searcher, [cache], **{k: v for k, v in limits.items() if k == "upload_bytes"})
    pages = {k: v for k, v in limits.items() if k == "page_size"}
    return LocalServer(create_app(photos, token=None, loopback_only=True, **pages)), photos


@pytest.fixture(scope="module")
def local(searcher: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalServer, Any]:
    served = serve_here(searcher, tmp_path_factory.mktemp("thumbnails"))
    yield served
    served[0].stop()


def ids(base: str) -> dict[str, str]:
    """Each indexed photo's id by its file name."""
    return {Path(h["path"]).name: h["id"] for h in get_json(f"{base}/api/search?{urlencode({'q': QUERY, 'k': 40})}")}


def localize(base: str, photo_id: str, phrase: str = QUERY) -> dict:
    return get_json(f"{base}/api/localize?{urlencode({'id': photo_id, 'q': phrase})}")


def heatmap(base: str, photo_id: str, phrase: str = QUERY) -> tuple[dict[str, str], bytes]:
    status, headers, body = request(f"{base}/api/photos/{photo_id}/heatmap.png?{urlencode({'q': phrase})}")
    assert status == 200, body
    return headers, body


def held(value: Any, seen: set[int] | None = None) -> tuple[int, list[tuple[int, int]]]:
    """(bytes of pixel and array data, sizes of the PIL images) reachable from a cached value."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0, []
    seen.add(id(value))
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands()), [value.size]
    if isinstance(value, np.ndarray):
        return value.nbytes, []
    if isinstance(value, bytes | bytearray):
        return len(value), []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts: list[Any] = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        parts = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        parts = list(value)
    else:
        return 0, []
    total, images = 0, []
    for part in parts:
        size, found = held(part, seen)
        total, images = total + size, images + found
    return total, images


# ---------------------------------------------------------------------------------------------- 1: memory


def test_localizations_are_cached_without_the_full_size_photo(local: tuple[LocalServer, Any]) -> None:
    from assoc.web.photos import HEATMAP_PIXELS

    server, photos = local
    found = ids(server.base)
    for k in range(LARGE):
        where = localize(server.base, found[f"large-{k}.jpg"])
        assert (where["width"], where["height"]) == LARGE_SIZE
        assert Image.open(io.BytesIO(heatmap(server.base, found[f"large-{k}.jpg"])[1])).size == (512, 384)
    entries = list(photos._localized._items.values())
    assert len(entries) >= LARGE
    for entry in entries:
        size, images = held(entry)
        assert all(max(image) <= HEATMAP_PIXELS for image in images), images  # no photo-sized picture
        assert size <= HEATMAP_PIXELS * HEATMAP_PIXELS * 4, size  # at most one display-sized RGBA picture


# ---------------------------------------------------------------------------------------------- 2: decodes


def huge_png(seed: int, side: int = 7000) -> bytes:
    """A ~200 KB PNG of side x side pixels (49 megapixels at 7000: under the indexer's cap)."""
    image = Image.new("RGB", (side, side), (seed * 40 % 255, 90, 160))
    draw = ImageDraw.Draw(image)
    for k in range(12):
        top = k * 300 + seed * 50
        draw.ellipse((k * 500, top, k * 500 + 900, top + 700), fill=(200, k * 20, seed * 60 % 255))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=9)
    return out.getvalue()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads peak memory from Linux's /proc")
def test_concurrent_huge_pixel_uploads_are_decoded_within_a_budget(gallery: tuple[Path, Path], tmp_path: Path) -> None:
    from assoc.runtime.imaging.pillow_decode import DECODE_PEAK_BYTES, MAX_MEGAPIXELS
    from assoc.web.photos import VIEW_PIXELS

    pngs = [huge_png(seed) for seed in range(5)]
    assert all(len(p) < 300_000 for p in pngs)
    over = io.BytesIO()
    Image.new("L", (11000, 10000)).save(over, "PNG")  # 110 megapixels in a small file: over the cap
    served = Server("--gallery", gallery[0], "--device", "cpu", cache=tmp_path)
    try:
        pid, url, kind = served.process.pid, f"{served.base}/api/uploads", {"content-type": "image/png"}
        status, _, body = request(url, data=over.getvalue(), headers=kind)
        assert status == 413 and f"over the {MAX_MEGAPIXELS:g} megapixel limit" in json.loads(body)["error"]

        start = reset_peak_memory(pid)
        status, _, body = request(url, data=pngs[4], headers=kind)
        assert status == 200 and json.loads(body)["width"] == VIEW_PIXELS
        one = memory_mb(pid, "VmHWM") - start

        start = reset_peak_memory(pid)
        answers: list[tuple[int, bytes] | None] = [None] * 4

        def upload(k: int) -> None:
            answers[k] = request(url, data=pngs[k], headers=kind)[::2]

        threads = [threading.Thread(target=upload, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        four = memory_mb(pid, "VmHWM") - start
        assert [a and (a[0], json.loads(a[1])["width"]) for a in answers] == [(200, VIEW_PIXELS)] * 4, answers
        print(f"peak growth: one upload {one} MiB, four at once {four} MiB")
        # Decodes at once are held to one photo at the cap's worth (DECODE_PEAK_BYTES): two of these, not four.
        assert four <= DECODE_PEAK_BYTES >> 20 and four < 2.6 * one, (one, four)
    finally:
        served.stop()


# ---------------------------------------------------------------------------------------------- 3: changes


def test_a_photo_replaced_on_disk_gets_a_fresh_heatmap(
    local: tuple[LocalServer, Any], gallery: tuple[Path, Path]
) -> None:
    server, _ = local
    library = gallery[1]
    found = ids(server.base)
    replaced, other = found["replaced.jpg"], found["other.jpg"]
    before = localize(server.base, replaced)
    before_headers, before_png = heatmap(server.base, replaced)
    photo_before = request(f"{server.base}/api/photos/{replaced}/photo.jpg")
    assert photo_before[0] == 200

    target = library / "replaced.jpg"
    shutil.copyfile(library / "other.jpg", target)  # another photo under the same name, not indexed again
    later = target.stat().st_mtime_ns + 5_000_000_000
    os.utime(target, ns=(later, later))

    after = localize(server.base, replaced)
    after_headers, after_png = heatmap(server.base, replaced)
    want = localize(server.base, other)
    _, want_png = heatmap(server.base, other)
    for answer in (before, after, want):
        answer.pop("image")
    assert after == want and after != before
    assert after_png == want_png and after_png != before_png
    assert Image.open(io.BytesIO(after_png)).size == (500, 333)  # the new photo's size, not the indexed one's
    assert after_headers["etag"] != before_headers["etag"]  # a browser's copy is not taken for the new one
    _, photo_headers, photo_after = request(f"{server.base}/api/photos/{replaced}/photo.jpg")
    assert Image.open(io.BytesIO(photo_after)).size == (500, 333)
    assert photo_headers["etag"] != photo_before[1]["etag"]
    unchanged = request(
        f"{server.base}/api/photos/{replaced}/photo.jpg", headers={"If-None-Match": photo_headers["etag"]}
    )
    assert unchanged[0] == 304 and unchanged[2] == b""


def test_more_like_this_of_a_deleted_photo_uses_its_stored_grid(
    local: tuple[LocalServer, Any], gallery: tuple[Path, Path]
) -> None:
    server, _ = local
    doomed = ids(server.base)["doomed.jpg"]
    (gallery[1] / "doomed.jpg").unlink()
    status, _, body = request(f"{server.base}/api/search?{urlencode({'like': doomed, 'k': 3})}")
    assert status == 200, body
    hits = json.loads(body)
    assert hits[0]["id"] == doomed and hits[0]["score"] == pytest.approx(SELF_SCORE, abs=1e-3)


# ---------------------------------------------------------------------------------------------- 4, 5: one home


def test_the_page_takes_its_limits_from_the_server(
    browser: Any, local: tuple[LocalServer, Any], searcher: Any, gallery: tuple[Path, Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from assoc.web.app import PAGE_DEFAULT
    from assoc.web.photos import UPLOAD_BYTES

    script = (REPO / "web" / "static" / "app.js").read_text()
    assert str(PAGE_DEFAULT) not in re.findall(r"\d+", script) and "1024 * 1024" not in script
    server, _ = serve_here(searcher, tmp_path, page_size=4, upload_bytes=1 << 20)
    try:
        page = request(server.base + "/")[2].decode()
        assert 'data-page-size="4"' in page and f'data-upload-bytes="{1 << 20}"' in page
        total = len(ids(server.base))
        browser.get(f"{server.base}/?{urlencode({'q': QUERY})}")
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#grid .tile")) == total)
        asked = browser.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)"
            ".filter((n) => n.includes('/api/search'))"
        )
        pages = [dict(re.findall(r"(k|offset)=(\d+)", name)) for name in asked]
        assert pages[:3] == [{"k": "4", "offset": "0"}, {"k": "4", "offset": "4"}, {"k": "4", "offset": "8"}]

        big = gallery[1] / "large-0.jpg"
        assert big.stat().st_size > 1 << 20
        browser.find_element(By.ID, "file").send_keys(str(big))
        message = browser.find_element(By.ID, "message")
        wait(browser, lambda b: "over the 1 MB upload limit" in message.text)
        sent = browser.execute_script(
            "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/uploads')).length"
        )
        assert sent == 0  # refused in the page, by the server's number
    finally:
        server.stop()
    plain = request(local[0].base + "/")[2].decode()
    assert f'data-page-size="{PAGE_DEFAULT}"' in plain and f'data-upload-bytes="{UPLOAD_BYTES}"' in plain


def test_the_module_docstring_lists_every_route(local: tuple[LocalServer, Any]) -> None:
    from starlette.routing import Mount, Route

    import assoc.web.app as web_app

    listed = set()
    for line in (web_app.__doc__ or "").splitlines():
        match = re.match(r"\s+(GET|POST)\s+(/\S*)", line)
        if match:
            path = re.sub(r"[?\[].*$", "", match.group(2)).replace("ID", "{id}").replace("FILE", "")
            listed.add((match.group(1), path))
    guard = web_app.create_app(local[1], token=None, loopback_only=True)
    served = set()
    for route in guard.app.routes:
        if isinstance(route, Route):
            served |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
        elif isinstance(route, Mount):
            served.add(("GET", route.path + "/"))
    assert listed == served


# ---------------------------------------------------------------------------------------------- the viewer


def test_click_on_peak_lists_phrase_word_first(browser: Any, local: tuple[LocalServer, Any]) -> None:
    """Each content word's heatmap shown, a click on its peak lists that word first."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    server, _ = local
    dog = ids(server.base)[DOG]
    where = localize(server.base, dog)
    browser.get(f"{server.base}/?{urlencode({'q': QUERY})}")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'#grid .tile[data-id="{dog}"]'))
    browser.find_element(By.CSS_SELECTOR, f'#grid .tile[data-id="{dog}"]').click()
    firsts = {}
    for k, word in enumerate(w["word"] for w in where["words"]):
        if word not in ("dog", "woods"):
            continue
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#chips .chip")) == 6)
        browser.find_elements(By.CSS_SELECTOR, "#chips .chip")[k + 1].click()
        wait(browser, lambda b, k=k: f"word={k}" in (b.find_element(By.ID, "frame").get_attribute("data-heat") or ""))
        photo = browser.find_element(By.ID, "photo")
        box = photo.rect
        x, y = where["words"][k]["peak"]
        dx = (x + 0.5) / where["width"] * box["width"] - box["width"] / 2
        dy = (y + 0.5) / where["height"] * box["height"] - box["height"] / 2
        browser.execute_script("document.getElementById('here').hidden = true")
        ActionChains(browser).move_to_element_with_offset(photo, round(dx), round(dy)).click().perform()
        wait(browser, lambda b: b.find_element(By.ID, "here").is_displayed())
        firsts[word] = browser.find_elements(By.CSS_SELECTOR, "#here-words li")[0].text.split()[0]
    assert firsts == {"dog": "dog", "woods": "woods"}
