"""Regions and words, the other way round: `assoc localize IMG [--at X,Y | --box X,Y,W,H]`, labelled
photos, and the bundle vocabulary behind them, on real COCO photos with known boxes and the shipped bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import assert_one_line_error, assoc, ok, ok_json, strip_ansi
from PIL import Image

from assoc.api.searcher import Searcher
from assoc.export.vocabulary import EVERYDAY_NAMES, choose_words, count_words, refresh_vocabulary, write_vocabulary
from assoc.runtime.encoding.bundle import CONFIG_NAME, load_bundle
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.errors import BundleError
from assoc.runtime.imaging.images import load_image
from assoc.runtime.scoring.regions import (
    FUNCTION_WORDS,
    box_cells,
    cells_to_box,
    pick_labels,
    point_cells,
    region_scores,
    word_families,
    word_maps,
)

FAMILY = "images/000000000790.jpg"  # 640 x 422: a birthday table, a dog in the lower right corner
DOG_BOX = (509.63, 345.38, 102.1, 72.32)
DOG_POINT = (560, 380)  # inside DOG_BOX
PHRASE = "a dog and a cake on the table"


@pytest.fixture()
def family(coco_boxes: Path, tmp_path: Path) -> Path:
    manifest = json.loads((coco_boxes / "manifest.json").read_text(encoding="utf-8"))
    record = next(r for r in manifest["images"] if r["file"] == FAMILY)
    assert [round(v, 2) for v in DOG_BOX] in [b["bbox_xywh"] for b in record["boxes"] if b["category"] == "dog"]
    return Path(shutil.copyfile(coco_boxes / FAMILY, tmp_path / "family.jpg"))


@pytest.fixture()
def bare_bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    """The shipped bundle's model files with a config.json that declares no vocabulary."""
    root = tmp_path / "bare-bundle"
    root.mkdir()
    for part in ("visual", "textual"):
        (root / part).symlink_to(bundle_dir / part, target_is_directory=True)
    raw = json.loads((bundle_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    raw.pop("vocabulary", None)
    (root / CONFIG_NAME).write_text(json.dumps(raw), encoding="utf-8")
    return root


def where(*args: str | Path, tmp_path: Path) -> object:
    return ok_json("localize", *args, "--gallery", tmp_path / "no-gallery", "--device", "cpu")


# ---------------------------------------------------------------- the vocabulary in the bundle


def test_the_shipped_bundle_has_a_vocabulary_outside_its_id(bundle_dir: Path, bare_bundle: Path) -> None:
    shipped = load_bundle(bundle_dir)
    vocabulary = shipped.read_vocabulary()
    assert vocabulary is not None and len(vocabulary.words) == shipped.config.vocabulary.count > 1000
    assert vocabulary.vectors.shape == (len(vocabulary.words), shipped.config.embed_dim)
    assert {"dog", "grass", "frisbee", "beach"} <= set(vocabulary.words)  # frisbee is two word pieces
    assert not FUNCTION_WORDS & set(vocabulary.words)
    assert all(all(part.isalpha() for part in w.split()) and w == w.lower() for w in vocabulary.words)
    assert set(EVERYDAY_NAMES) <= set(vocabulary.words)  # "dining table", "teddy bear", "toaster", ...
    assert shipped.bundle_id == load_bundle(bare_bundle).bundle_id


def test_adding_a_vocabulary_keeps_bundle_id_and_stores_query_vectors(bare_bundle: Path) -> None:
    before = load_bundle(bare_bundle)
    assert before.config.vocabulary is None and before.read_vocabulary() is None
    words = ["dog", "frisbee", "grass"]
    write_vocabulary(bare_bundle, words, [9, 8, 7], {"data": "test"}, device="cpu")
    after = load_bundle(bare_bundle)
    assert after.bundle_id == before.bundle_id
    assert after.config.vocabulary.count == 3 and after.config.vocabulary.built == {"data": "test"}
    vocabulary = after.read_vocabulary()
    assert vocabulary.words == words
    encoder = TextEncoder(after, "cpu")
    expected = np.stack([encoder.encode_one(w).vectors.mean(axis=0) for w in words])
    np.testing.assert_allclose(vocabulary.vectors, expected, atol=2e-3)  # stored as float16


def test_a_changed_or_stale_vocabulary_is_refused_and_can_be_rebuilt(bare_bundle: Path) -> None:
    write_vocabulary(bare_bundle, ["dog", "cat"], [2, 1], {}, device="cpu")
    config_path = bare_bundle / CONFIG_NAME
    raw = json.loads(config_path.read_text(encoding="utf-8"))
    raw["vocabulary"]["textual_sha256"] = "0" * 64  # as if built with another text encoder
    config_path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match="vocabulary was built with another text encoder"):
        load_bundle(bare_bundle)
    refresh_vocabulary(bare_bundle, device="cpu")
    assert load_bundle(bare_bundle).read_vocabulary().words == ["dog", "cat"]
    vectors = bare_bundle / "vocabulary" / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(BundleError, match="vectors.npy does not match its sha256"):
        load_bundle(bare_bundle)


@pytest.mark.slow
def test_vocab_command_builds_from_captions_without_torch(bare_bundle: Path, flickr8k: Path, tmp_path: Path) -> None:
    captions = tmp_path / "captions.jsonl"
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()[:200]
    rows = [{"image": f"{line.split('#')[0]}", "caption": line.split("\t", 1)[1]} for line in lines]
    captions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for row in rows:  # the caption loader wants the photos to exist
        link = tmp_path / row["image"]
        if not link.exists():
            link.symlink_to(flickr8k / "images" / row["image"])
    script = (
        "import sys, json\n"
        "from assoc.cli.app import app\n"
        "try:\n"
        f"    app([{'vocab'!r}, {str(bare_bundle)!r}, '--data', {str(captions)!r}, '--split', 'all',"
        " '--min-count', '8', '--json'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    bundle = load_bundle(bare_bundle)
    assert facts["bundle_id"] == bundle.bundle_id and facts["words"] == bundle.config.vocabulary.count
    words = bundle.read_vocabulary().words
    assert "dog" in words and "a" not in words and not any(w.startswith("#") for w in words)
    assert facts["min_count"] == 8 and facts["captions"] == 200


# ---------------------------------------------------------------- regions as numbers


def test_point_and_box_cells(family: Path) -> None:
    size, grid = (640, 422), (10, 10)
    assert np.argwhere(point_cells(DOG_POINT, grid, size)).tolist() == [[9, 8]]
    dog = box_cells(DOG_BOX, grid, size)
    assert dog[9, 8] and cells_to_box((9, 8, 9, 9), grid, size) == (512, 380, 128, 42)
    tiny = box_cells((DOG_POINT[0] - 2, DOG_POINT[1] - 2, 4, 4), grid, size)  # smaller than a cell
    assert (tiny == point_cells(DOG_POINT, grid, size)).all()
    assert cells_to_box((0, 0, 9, 9), grid, size) == (0, 0, 640, 422)


def test_labels_never_overlap_or_repeat(family: Path, bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    grid = ImageEncoder(bundle, "cpu").encode([load_image(family).image])[0]
    labels = pick_labels(word_maps(grid, bundle.read_vocabulary().vectors), top=8)
    assert len(labels) == 8 and len({label.word for label in labels}) == 8
    taken = np.zeros(grid.shape[:2], dtype=int)
    for label in labels:
        top, left, bottom, right = label.cells
        assert top <= label.cell[0] <= bottom and left <= label.cell[1] <= right
        taken[top : bottom + 1, left : right + 1] += 1
    assert taken.max() == 1
    assert [label.score for label in labels] == sorted((label.score for label in labels), reverse=True)


def test_names_of_several_words_are_counted_and_kept_after_the_caption_words(bundle_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(load_bundle(bundle_dir).tokenizer_path))
    captions = ["A teddy bear on a dining table.", "Two dogs and a teddy bear", "a dog", "the dogs run"]
    counts = count_words(captions, tokenizer, ["teddy bear", "dining table", "hair dryer"])
    assert counts["teddy bear"] == 2 and counts["dining table"] == 1 and counts["hair dryer"] == 0
    assert counts["dogs"] == 2 and counts["bear"] == 2 and "a" not in counts
    words = choose_words(counts, 2, ["teddy bear", "dogs", "hair dryer"])
    assert words == ["bear", "dogs", "teddy", "teddy bear", "hair dryer"]  # counted words first, then names


def test_word_families_group_plurals_with_their_singular() -> None:
    words = ["dog", "dogs", "man", "men", "puppy", "puppies", "bench", "benches", "house", "houses", "short"]
    words += ["shorts", "glass", "glasses", "teddy bear", "teddy bears", "people", "person", "bus", "cats"]
    family = dict(zip(words, (words[k] for k in word_families(words)), strict=True))
    assert [family[w] for w in ("dogs", "men", "puppies", "benches", "houses", "teddy bears", "people", "bus")] == [
        "dog", "man", "puppy", "bench", "house", "teddy bear", "person", "bus"
    ]  # fmt: skip
    assert family["shorts"] == "shorts" and family["glasses"] == "glasses"  # not the plural of short or glass
    assert family["cats"] == "cats"  # no "cat" in the list: its own family


@pytest.mark.slow
def test_labels_and_region_words_name_one_form_of_a_word(coco_boxes: Path) -> None:
    """Among real photos, the first whose raw ranking of the whole photo's words names one word in two
    forms ("man", "men"), and the first whose labels picked without families would: the searcher's
    region words and labels keep the best form of each word only."""
    searcher = Searcher(device="cpu")
    vocabulary = searcher.vocabulary()
    families = word_families(vocabulary.words)

    def family_count(words: list[str]) -> int:
        return len({families[vocabulary.words.index(w)] for w in words})

    ranked_twice = labelled_twice = None
    for photo in sorted((coco_boxes / "images").glob("*.jpg")):
        _, size, _, grid = searcher._localize_grid(photo)
        maps = searcher._vocabulary_maps(grid, vocabulary)
        raw = np.argsort(-region_scores(maps, box_cells((0, 0, *size), grid.shape[:2], size)), kind="stable")
        if ranked_twice is None and len(set(families[raw[:20]])) < 20:
            ranked_twice = (photo, size)
        if labelled_twice is None and family_count([vocabulary.words[a.word] for a in pick_labels(maps, 8)]) < 8:
            labelled_twice = photo
        if ranked_twice and labelled_twice:
            break
    assert ranked_twice is not None and labelled_twice is not None  # so the assertions below can fail
    photo, size = ranked_twice
    named = [w.word for w in searcher.region_words(photo, box=(0, 0, *size), top=20).words]
    assert len(named) == 20 and family_count(named) == 20
    labels = [label.word for label in searcher.label(labelled_twice, top=8).labels]
    assert len(labels) == 8 and family_count(labels) == 8


# ---------------------------------------------------------------- the command


def test_a_point_in_the_dog_box_names_dog_from_the_phrase(family: Path, tmp_path: Path) -> None:
    found = where(family, PHRASE, "--at", "{},{}".format(*DOG_POINT), tmp_path=tmp_path)
    assert list(found) == ["image", "width", "height", "grid", "region", "source", "words"]
    assert (found["image"], found["width"], found["height"], found["grid"]) == (str(family), 640, 422, [20, 20])
    assert found["source"] == "phrase" and found["region"] == [544, 380, 32, 21]  # one cell of the 20x20 grid
    assert all(list(w) == ["word", "score"] for w in found["words"])
    assert [w["word"] for w in found["words"]][0] == "dog"
    assert {w["word"] for w in found["words"]} == {"dog", "cake", "table"}  # function words left out
    elsewhere = where(family, PHRASE, "--at", "320,200", tmp_path=tmp_path)  # the cake on the table
    assert elsewhere["words"][0]["word"] != "dog"


def test_a_box_and_a_point_give_consistent_words(family: Path, tmp_path: Path) -> None:
    box = ",".join(str(v) for v in DOG_BOX)
    point = "{},{}".format(*DOG_POINT)
    for phrase in ([PHRASE], []):
        at_point = where(family, *phrase, "--at", point, tmp_path=tmp_path)
        in_box = where(family, *phrase, "--box", box, tmp_path=tmp_path)
        tiny = where(family, *phrase, "--box", f"{DOG_POINT[0] - 1},{DOG_POINT[1] - 1},2,2", tmp_path=tmp_path)
        assert tiny == at_point  # a box inside one cell is that cell
        x, y, w, h = in_box["region"]
        px, py, pw, ph = at_point["region"]
        assert x <= px and y <= py and px + pw <= x + w and py + ph <= y + h
        point_words = {v["word"]: v["score"] for v in at_point["words"]}
        box_words = {v["word"]: v["score"] for v in in_box["words"]}
        assert at_point["words"][0]["word"] in [v["word"] for v in in_box["words"][:3]]
        for word in point_words.keys() & box_words.keys():  # more cells can only raise a word's best cell
            assert box_words[word] >= point_words[word] - 1e-6
    vocabulary = where(family, "--at", point, "--top", "5", tmp_path=tmp_path)
    assert vocabulary["source"] == "vocabulary" and len(vocabulary["words"]) == 5
    # The region matters: the dog's corner and the cake on the table are named differently (how well the
    # vocabulary names boxes over 80 photos is bench/region_naming.py's figure, not one photo's).
    cake = where(family, "--at", "320,200", "--top", "5", tmp_path=tmp_path)
    assert {w["word"] for w in vocabulary["words"]} != {w["word"] for w in cake["words"]}


def test_a_photo_without_words_gets_labelled_regions(family: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.png"
    labels = where(family, "--top", "4", "--out", out, tmp_path=tmp_path)
    assert isinstance(labels, list) and len(labels) == 4
    assert all(list(label) == ["word", "score", "peak", "box"] for label in labels)
    assert len({label["word"] for label in labels}) == 4
    for label in labels:
        (px, py), (x, y, w, h) = label["peak"], label["box"]
        assert 0 <= x < x + w <= 640 and 0 <= y < y + h <= 422 and x <= px < x + w and y <= py < y + h
    for a in labels:
        for b in labels:
            if a is not b:
                ax, ay, aw, ah = a["box"]
                bx, by, bw, bh = b["box"]
                assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay  # no overlap
    with Image.open(out) as drawn, Image.open(family) as photo:
        assert drawn.size == photo.size == (640, 422)
        assert drawn.convert("RGB").tobytes() != photo.convert("RGB").tobytes()


def test_pipe_lines_and_terminal_picture(family: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gallery = ("--gallery", tmp_path / "g", "--device", "cpu")
    labels = where(family, "--top", "3", tmp_path=tmp_path)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    piped = ok("localize", family, "--top", "3", *gallery).stdout.splitlines()
    assert piped == [
        f"{a['word']}  {a['score']:.4f}  peak (x, y) ({a['peak'][0]}, {a['peak'][1]})  box (x, y, w, h) "
        f"({', '.join(str(v) for v in a['box'])})"
        for a in labels
    ]
    region = ok("localize", family, PHRASE, "--at", "560,380", *gallery).stdout.splitlines()
    assert region[0].startswith("dog  ")
    assert region[-1] == "region (x, y, w, h) (544, 380, 32, 21)  words from the phrase"
    monkeypatch.setenv("FORCE_COLOR", "1")
    drawn = strip_ansi(ok("localize", family, "--top", "3", *gallery).stdout)
    assert drawn.count("\u2580") > 100
    captions = [line for line in drawn.splitlines() if "\u2580" not in line]
    assert [line.split()[1] for line in captions] == [a["word"] for a in labels]


def test_regions_follow_the_displayed_orientation(family: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.jpg"
    with Image.open(family) as img:
        exif = img.getexif()
        exif[0x0112] = 6  # stored landscape, displayed portrait
        img.save(rotated, exif=exif, quality=95)
    whole = where(rotated, "--box", "0,0,422,640", tmp_path=tmp_path)
    assert (whole["width"], whole["height"], whole["region"]) == (422, 640, [0, 0, 422, 640])
    assert_one_line_error(
        assoc("localize", rotated, "--at", "500,100", "--gallery", tmp_path / "g", "--device", "cpu"),
        "outside the photo (422 x 640 pixels)",
    )


def test_no_words_and_no_vocabulary_is_one_line_error(family: Path, bare_bundle: Path, tmp_path: Path) -> None:
    common = ("--model", bare_bundle, "--gallery", tmp_path / "g", "--device", "cpu")
    for region in ([], ["--at", "10,10"], ["--box", "0,0,50,50"]):
        assert_one_line_error(assoc("localize", family, *region, *common), "has no vocabulary", "assoc vocab")
    assert where(family, PHRASE, "--at", "560,380", "--model", bare_bundle, tmp_path=tmp_path)["source"] == "phrase"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--at", "1,2,3"], "--at wants X,Y"),
        (["--at", "x,y"], "--at wants X,Y"),
        (["--box", "1,2,3"], "--box wants X,Y,W,H"),
        (["--box", "0,0,0,10"], "has no area"),
        (["--box", "700,0,10,10"], "outside the photo"),
        (["--at", "640,0"], "outside the photo (640 x 422 pixels)"),
        (["--at", "1,1", "--box", "0,0,5,5"], "not both"),
        (["--top", "0"], "--top must be at least 1"),
        (["--per-word"], "--per-word"),
    ],
)
def test_bad_regions_are_one_line_errors(family: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    result = assoc("localize", family, *args, "--gallery", tmp_path / "g", "--device", "cpu")
    assert_one_line_error(result, fragment)
