"""Caption loaders on the real Flickr8k folder, and on small files in every format built from real
Flickr8k / COCO captions and photos, with deliberately broken rows whose counts are asserted exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assoc.models.datasets import (
    CaptionedImage,
    DatasetError,
    five_caption_eval_set,
    load_split,
)

TOKEN = "Flickr8k.token.txt"


def real_captions(flickr8k: Path) -> dict[str, list[str]]:
    """Image name -> its five captions, straight from the real token file."""
    captions: dict[str, list[str]] = {}
    for line in (flickr8k / TOKEN).read_text().splitlines():
        key, caption = line.split("\t")
        captions.setdefault(key.split("#")[0], []).append(caption)
    return captions


def split_list(flickr8k: Path, split: str) -> list[str]:
    return (flickr8k / f"Flickr_8k.{split}Images.txt").read_text().split()


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def counts(report: object) -> tuple[int, ...]:
    names = (
        "images",
        "captions",
        "missing_images",
        "duplicate_lines",
        "bad_rows",
        "empty_captions",
        "uncaptioned_images",
    )
    return tuple(getattr(report, name) for name in names)


# ---- the real Flickr8k folder -----------------------------------------------------------------------


def test_real_flickr8k_dev_is_1000_images_with_5_captions(flickr8k: Path) -> None:
    items, report = load_split(flickr8k, "dev")
    assert counts(report) == (1000, 5000, 0, 0, 0, 0, 0)
    assert report.summary() == "1000 images, 5000 captions"
    assert report.examples == []
    assert all(len(item.captions) == 5 for item in items)
    assert [item.image for item in items] == sorted(item.image for item in items)
    assert {item.image.name for item in items} == set(split_list(flickr8k, "dev"))
    first = next(item for item in items if item.image.name == "2090545563_a4e66ec76b.jpg")
    assert first.image == flickr8k.absolute() / "images" / "2090545563_a4e66ec76b.jpg"
    assert first.captions[1] == "Two girls play on a skateboard in a courtyard ."
    assert first.captions[4] == "two young children on a skateboard going across a sidewalk"  # case kept


def test_real_flickr8k_train_and_all(flickr8k: Path) -> None:
    items, report = load_split(flickr8k, "train")
    assert counts(report) == (6000, 30000, 0, 0, 0, 0, 0)
    # Two annotators wrote the same sentence (#2 and #3): separate captions, not a duplicate line.
    dog = next(item for item in items if item.image.name == "2305437797_e6c3460190.jpg")
    assert dog.captions.count("A dog swimming with a stick in its mouth .") == 2
    _, everything = load_split(flickr8k, "all")
    assert (everything.images, everything.captions) == (7091, 35455)


def test_real_flickr8k_test_split_is_absent(flickr8k: Path) -> None:
    with pytest.raises(DatasetError, match="Flickr_8k.testImages.txt"):
        load_split(flickr8k, "test")


def test_five_caption_eval_set_on_real_dev(flickr8k: Path) -> None:
    items, _ = load_split(flickr8k, "dev")
    images, captions, caption_image = five_caption_eval_set(items)
    assert five_caption_eval_set(items).dropped == 0
    assert len(images) == 1000 and len(captions) == 5000
    assert caption_image[:7] == [0, 0, 0, 0, 0, 1, 1] and caption_image[-1] == 999
    assert captions[5:10] == list(items[1].captions)


# ---- Flickr8k layout with problems ------------------------------------------------------------------


@pytest.fixture
def broken_flickr8k(tmp_path: Path, flickr8k: Path) -> tuple[Path, list[str]]:
    """A Flickr8k folder: dev images a, b, c linked, d not on disk, e without captions, f from train."""
    dev = split_list(flickr8k, "dev")[:5]
    train_image = split_list(flickr8k, "train")[0]
    real = real_captions(flickr8k)
    a, b, c, d, _ = dev
    for name in (a, b, c, train_image):
        link(flickr8k / "images" / name, tmp_path / "Flicker8k_Dataset" / name)
    lines = [f"{name}#{n}\t{cap}\n" for name in (a, b, c, d, train_image) for n, cap in enumerate(real[name])]
    lines[10:15] = [line.replace("\n", "\r\n") for line in lines[10:15]]  # c's lines end in CRLF
    lines += [
        lines[0],  # exact repeat of a#0: duplicate
        lines[20],  # repeat from the train image: not this split's business
        f"{c}#5\t   \n",  # empty caption
        "a line with no tab at all\n",  # bad
        f"{b}\tcaption without #N\n",  # bad
        "\n",  # blank: skipped
    ]
    data = "".join(lines).encode() + f"{b}#6\tcaf".encode() + b"\xe9 latin-1 byte\n"  # bad: not UTF-8
    (tmp_path / TOKEN).write_bytes(data)
    (tmp_path / "Flickr_8k.devImages.txt").write_text("\n".join(dev) + "\n")
    return tmp_path, dev


def test_flickr8k_problems_are_counted_not_raised(broken_flickr8k: tuple[Path, list[str]], flickr8k: Path) -> None:
    folder, (a, b, c, d, e) = broken_flickr8k
    items, report = load_split(folder, "dev")
    assert counts(report) == (3, 15, 1, 1, 3, 1, 1)
    assert report.summary() == (
        "3 images, 15 captions; 1 missing image, 1 duplicate line, 3 bad rows, 1 empty caption, "
        "1 image without captions"
    )
    assert [item.image.name for item in items] == sorted([a, b, c])
    by_name = {item.image.name: item for item in items}
    assert list(by_name[c].captions) == real_captions(flickr8k)[c]  # CRLF and spaces stripped
    assert by_name[a].image == (folder / "Flicker8k_Dataset" / a).absolute()  # the link, not its target
    assert f"{TOKEN}:26: duplicate line for {a}" in report.examples
    assert f"{TOKEN}:28: empty caption for {c}" in report.examples
    assert f"{TOKEN}:29: bad row, expected IMAGE#N<TAB>caption" in report.examples
    assert f"{TOKEN}:32: bad row, not valid UTF-8 text" in report.examples
    assert f"missing image {(folder / 'Flicker8k_Dataset' / d).absolute()}" in report.examples
    assert f"no captions for {e}, dropped" in report.examples

    # "val" is "dev"; images_dir replaces the photo folder (every photo is in the real one).
    _, report = load_split(folder, "val", images_dir=flickr8k / "images")
    assert counts(report) == (4, 20, 0, 1, 3, 1, 1)


def test_flickr8k_lemma_file_is_used_only_without_the_token_file(
    broken_flickr8k: tuple[Path, list[str]],
) -> None:
    folder, (a, *_) = broken_flickr8k
    (folder / "Flickr8k.lemma.token.txt").write_text(f"{a}#0\ta lemma caption\n")
    _, report = load_split(folder, "dev")
    assert report.captions == 15
    (folder / TOKEN).unlink()
    items, report = load_split(folder, "dev")
    assert items == [CaptionedImage((folder / "Flicker8k_Dataset" / a).absolute(), ("a lemma caption",))]
    assert report.uncaptioned_images == 4
    items_from_file, _ = load_split(folder / "Flickr8k.lemma.token.txt", "dev")
    assert items_from_file == items


# ---- Karpathy split JSON ----------------------------------------------------------------------------


@pytest.fixture
def karpathy(tmp_path: Path, flickr8k: Path) -> tuple[Path, list[str]]:
    names = split_list(flickr8k, "train")[:7]
    real = real_captions(flickr8k)
    a, b, c, d, e, f, g = names
    for name in (a, b, c, e, f):
        link(flickr8k / "images" / name, tmp_path / "images" / name)
    link(flickr8k / "images" / g, tmp_path / "images" / "sub" / g)

    def record(name: str, split: str | None, sentences: list[object] | None = None) -> dict[str, object]:
        if sentences is None:
            sentences = [{"raw": cap, "sentid": n} for n, cap in enumerate(real[name])]
        rec: dict[str, object] = {"filename": name, "sentences": sentences}
        if split is not None:
            rec["split"] = split
        return rec

    e_sentences: list[object] = [
        {"raw": 5},  # bad
        {"raw": "  "},  # empty
        {"tokens": ["a"]},  # bad
        {"raw": real[e][0]},
    ]
    records: list[object] = [
        record(a, "train"),
        record(b, "restval"),
        record(c, "val"),
        record(d, "test"),  # not on disk
        record(a, "train"),  # the same record again: 5 duplicate lines
        "not an object",  # bad
        {"split": "train", "sentences": []},  # bad: no filename
        record(e, "train", e_sentences),
        record(f, "train", []),  # no captions
        {**record(g, None), "filepath": "sub"},  # no split: bad when a split is asked for
    ]
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps({"images": records, "dataset": "flickr8k"}))
    return path, names


def test_karpathy_splits_and_problems(karpathy: tuple[Path, list[str]]) -> None:
    path, (a, b, c, d, e, f, g) = karpathy
    items, report = load_split(path.parent, "train")  # found in the folder; train includes restval
    assert counts(report) == (3, 11, 0, 5, 5, 1, 1)
    assert [item.image.name for item in items] == sorted([a, b, e])
    assert report.examples.count(f"no captions for {f}, dropped") == 1
    assert f"{path.name} images[7].sentences[0]: bad row, needs a string 'raw'" in report.examples

    items, report = load_split(path, "dev")
    assert [item.image.name for item in items] == [c] and report.bad_rows == 3
    assert counts(load_split(path, "restval")[1])[:2] == (1, 5)
    assert counts(load_split(path, "test")[1])[:3] == (0, 0, 1)

    items, report = load_split(path, "all")
    assert counts(report) == (5, 21, 1, 5, 4, 1, 1)
    assert path.parent / "images" / "sub" / g in [item.image for item in items]


# ---- COCO captions JSON -----------------------------------------------------------------------------


@pytest.fixture
def coco(tmp_path: Path, coco_boxes: Path) -> tuple[Path, list[dict[str, Any]]]:
    """annotations/captions_val2017.json with photos in val2017/: p, q, r linked, s missing, t no captions."""
    records = json.loads((coco_boxes / "manifest.json").read_text())["images"][:5]
    for rec in records[:3] + records[4:]:
        link(coco_boxes / rec["file"], tmp_path / "val2017" / Path(rec["file"]).name)
    images: list[object] = [{"id": rec["image_id"], "file_name": Path(rec["file"]).name} for rec in records]
    images += [{"id": "7", "file_name": "x.jpg"}, {"id": records[0]["image_id"], "file_name": "again.jpg"}]
    annotations: list[object] = [
        {"id": 1000 * i + n, "image_id": rec["image_id"], "caption": cap}
        for i, rec in enumerate(records[:4])
        for n, cap in enumerate(rec["captions"])
    ]
    p, q, r = (rec["image_id"] for rec in records[:3])
    annotations += [
        annotations[0],  # the same annotation again: duplicate
        {"id": 99, "image_id": q, "caption": records[1]["captions"][0]},
        {"id": 98, "image_id": 999999, "caption": "nobody"},  # bad: unknown image
        {"id": 97, "image_id": p, "caption": None},  # bad
        "not an object",  # bad
        {"id": 96, "image_id": r, "caption": ""},  # empty
    ]
    path = tmp_path / "annotations" / "captions_val2017.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations}))
    return path, records


def test_coco_captions_file(coco: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    path, records = coco
    items, report = load_split(tmp_path, "dev")
    assert counts(report) == (3, 16, 1, 1, 5, 1, 1)
    assert [item.image for item in items] == sorted(
        tmp_path / "val2017" / Path(rec["file"]).name for rec in records[:3]
    )
    q = next(item for item in items if item.image.name == Path(records[1]["file"]).name)
    # The same sentence under a new annotation id is another annotator's caption: kept.
    assert q.captions == (*records[1]["captions"], records[1]["captions"][0])
    assert load_split(path, "val")[0] == items

    eval_set = five_caption_eval_set(items)
    assert len(eval_set.captions) == 15 and eval_set.dropped == 0
    assert eval_set.captions[5:10] == list(records[1]["captions"])

    with pytest.raises(DatasetError, match="holds the val split, not train"):
        load_split(path, "train")
    with pytest.raises(DatasetError, match="need one COCO captions file for split 'train'"):
        load_split(tmp_path, "train")


# ---- users' own captions.jsonl / captions.csv --------------------------------------------------------


@pytest.fixture
def photos(tmp_path: Path, flickr8k: Path) -> list[str]:
    """Three real full-resolution photos linked into tmp_path/mine/photos/."""
    names = sorted(p.name for p in (flickr8k / "fullres").iterdir())[:3]
    for name in names:
        link(flickr8k / "fullres" / name, tmp_path / "mine" / "photos" / name)
    return [f"photos/{name}" for name in names]


def test_jsonl_with_split_field(tmp_path: Path, photos: list[str], flickr8k: Path) -> None:
    a, b, _ = photos
    real = real_captions(flickr8k)
    cap_a, cap_b = real[Path(a).name], real[Path(b).name]
    rows = [json.dumps({"image": a, "caption": cap, "split": "train"}) for cap in cap_a[:3]]
    rows += [json.dumps({"image": b, "caption": cap, "split": "dev"}) for cap in cap_b[:2]]
    rows += [
        json.dumps({"image": "photos/not-here.jpg", "caption": cap_a[3], "split": "train"}),  # missing
        rows[0],  # duplicate
        json.dumps({"image": b, "caption": " ", "split": "val"}),  # empty
        '{"image": "photos/x.jpg", "caption": ',  # bad: not JSON
        "[1, 2]",  # bad: not an object
        json.dumps({"image": a, "caption": 3, "split": "train"}),  # bad: caption not a string
        json.dumps({"image": a, "caption": cap_a[4]}),  # no split: bad only when filtering
        json.dumps({"caption": cap_a[4], "split": "train"}),  # bad: no image
    ]
    path = tmp_path / "mine" / "captions.jsonl"
    path.write_text("\n".join(rows) + "\n")

    items, report = load_split(path.parent, "train")
    assert items == [CaptionedImage(tmp_path / "mine" / a, tuple(cap_a[:3]))]
    assert counts(report) == (1, 3, 1, 1, 5, 0, 0)
    assert sum("bad row" in example for example in report.examples) == 3  # examples are capped

    items, report = load_split(path, "val")
    assert items == [CaptionedImage(tmp_path / "mine" / b, tuple(cap_b[:2]))]
    assert counts(report) == (1, 2, 0, 0, 5, 1, 0)

    items, report = load_split(path, "all")
    assert counts(report) == (2, 6, 1, 1, 4, 1, 0)
    assert items[0].captions[-1] == cap_a[4]

    eval_set = five_caption_eval_set(items)
    assert (eval_set.images, eval_set.dropped) == ([], 2)


def test_jsonl_without_split_field_needs_all(tmp_path: Path, photos: list[str]) -> None:
    path = tmp_path / "mine" / "captions.jsonl"
    path.write_text(json.dumps({"image": photos[0], "caption": "a photo"}) + "\n")
    with pytest.raises(DatasetError, match="no 'split' field"):
        load_split(path, "train")
    assert load_split(path, "all")[1].summary() == "1 image, 1 caption"


def test_csv(tmp_path: Path, photos: list[str], flickr8k: Path) -> None:
    a, b, c = photos
    cap_a = real_captions(flickr8k)[Path(a).name]
    cap_c = real_captions(flickr8k)[Path(c).name]
    text = (
        "\r\n".join(
            [
                "image,caption",
                *(f'{a},"{cap}"' for cap in cap_a),
                f'{c},"{cap_c[0]}, and more"',  # a quoted comma
                f'{a},"{cap_a[0]}"',  # duplicate
                f"{b},",  # empty caption: b has no caption left
                f"{c},{cap_c[1]},extra",  # bad: three fields
                f"{c}",  # bad: one field
                "",  # blank: skipped
                "photos/gone.jpg,a caption",  # missing
            ]
        )
        + "\r\n"
    )
    data = b"\xef\xbb\xbf" + text.encode() + f"{c},na".encode() + b"\xefve\n"  # BOM; bad: not UTF-8
    path = tmp_path / "mine" / "captions.csv"
    path.write_bytes(data)

    items, report = load_split(tmp_path / "mine", "all")
    assert counts(report) == (2, 6, 1, 1, 3, 1, 1)
    assert items == [
        CaptionedImage(tmp_path / "mine" / a, tuple(cap_a)),
        CaptionedImage(tmp_path / "mine" / c, (f"{cap_c[0]}, and more",)),
    ]
    assert "captions.csv:10: bad row, 3 fields where the header has 2" in report.examples
    assert five_caption_eval_set(items).dropped == 1

    with pytest.raises(DatasetError, match="no 'split' column"):
        load_split(path, "train")


def test_csv_split_column(tmp_path: Path, photos: list[str]) -> None:
    a, b, _ = photos
    path = tmp_path / "mine" / "captions.csv"
    path.write_text(f"Image,Caption,Split\n{a},a red door,train\n{b},a field,dev\n{b},no split,\n")
    items, report = load_split(path, "val")
    assert items == [CaptionedImage(tmp_path / "mine" / b, ("a field",))]
    assert report.bad_rows == 1


def test_unreadable_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_split(tmp_path / "nothing", "train")
    with pytest.raises(DatasetError, match="no caption data found"):
        load_split(tmp_path, "train")
    (tmp_path / "dataset_coco.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_split(tmp_path, "train")
    (tmp_path / "captions.csv").write_text("path,text\nx.jpg,a dog\n")
    with pytest.raises(DatasetError, match="must name 'image' and 'caption'"):
        load_split(tmp_path, "all")
