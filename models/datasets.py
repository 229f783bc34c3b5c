"""Caption datasets on disk -> (image path, captions) records for training and evaluation. No torch.

`load_split` reads one split of any of these, detected from `source` (a folder or a file):

- Flickr8k as distributed: a folder with `Flickr8k.token.txt` (`IMAGE.jpg#N<TAB>caption`; the
  `Flickr8k.lemma.token.txt` variant when the token file is absent), the split lists
  `Flickr_8k.{train,dev,test}Images.txt` and the photos in `images/`, `Flicker8k_Dataset/` or
  `Flickr8k_Dataset/`. A split whose list is absent is an error naming the missing file.
- Karpathy split JSON (`dataset_flickr8k.json`, `dataset_flickr30k.json`, `dataset_coco.json`). "train"
  includes "restval", as in Karpathy & Fei-Fei's COCO setup (the 113K training images); ask for
  "restval" to get it alone. Photos are looked up in `images/` beside the file, else beside the file,
  under the record's `filepath` when it has one.
- COCO `captions_<split><year>.json`: the file is the split. Given a folder, the file is looked up there or
  in `annotations/`; photos in `<split><year>/` next to the annotation folder, or in `images/`.
- `captions.jsonl` (`{"image", "caption"}` a line) or `captions.csv` (header `image,caption`): image
  paths relative to the file's folder. "all" takes every row; any other split filters on a `split`
  field, which must then exist.

A folder is checked for these in that order; the first present wins. "dev" and "val" name the same split
everywhere. `images_dir` replaces the photo folder of any format.

Problems in rows are counted in a LoadReport, never raised: missing photos, duplicate lines, bad rows
(unparsable, missing field, wrong type, not UTF-8), empty captions, and images left without captions
(dropped). Rows that cannot be parsed are counted even when they might belong to another split. A
duplicate is a record repeated exactly: the same image and caption under the same caption id where the
format has one (Flickr8k's `#N`, Karpathy's `sentid`, COCO's annotation `id`). Annotators who wrote the
same sentence for the same photo are therefore kept, which keeps Flickr8k at 5 captions per image.
Only a source that cannot be read at all raises DatasetError.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.errors import AssocError

EXAMPLES_PER_KIND = 3
EVAL_CAPTIONS_PER_IMAGE = 5

FLICKR8K_TOKEN_FILES = ("Flickr8k.token.txt", "Flickr8k.lemma.token.txt")
FLICKR8K_IMAGE_DIRS = ("images", "Flicker8k_Dataset", "Flickr8k_Dataset")
FLICKR8K_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
KARPATHY_SPLITS = {"train": {"train", "restval"}, "val": {"val"}, "test": {"test"}, "restval": {"restval"}}
_COCO_FILE = re.compile(r"captions_([a-z]+?)(\d*)\.json")
_SURROGATE = re.compile("[\ud800-\udfff]")


class DatasetError(AssocError):
    """A caption source cannot be read at all (bad rows inside a readable one are only counted)."""


@dataclass(frozen=True)
class CaptionedImage:
    image: Path  # absolute
    captions: tuple[str, ...]


@dataclass
class LoadReport:
    """What a load kept and what it skipped; `examples` holds a few of each kind of problem."""

    images: int = 0
    captions: int = 0
    missing_images: int = 0
    duplicate_lines: int = 0
    bad_rows: int = 0
    empty_captions: int = 0
    uncaptioned_images: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. "6000 images, 30000 captions; 2 missing images, 1 duplicate line"."""
        head = f"{_count(self.images, 'image')}, {_count(self.captions, 'caption')}"
        problems = [
            _count(n, singular, plural)
            for n, singular, plural in (
                (self.missing_images, "missing image", "missing images"),
                (self.duplicate_lines, "duplicate line", "duplicate lines"),
                (self.bad_rows, "bad row", "bad rows"),
                (self.empty_captions, "empty caption", "empty captions"),
                (self.uncaptioned_images, "image without captions", "images without captions"),
            )
            if n
        ]
        return f"{head}; {', '.join(problems)}" if problems else head


@dataclass(frozen=True)
class EvalSet:
    """The 5-captions-per-image retrieval protocol. Unpacks as (images, captions, caption_image)."""

    images: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption i describes images[caption_image[i]]
    dropped: int  # images left out for having fewer than 5 captions

    def __iter__(self) -> Iterator[list[Any]]:
        return iter((self.images, self.captions, self.caption_image))


def five_caption_eval_set(items: list[CaptionedImage]) -> EvalSet:
    """Each image with its first 5 captions; images with fewer are dropped and counted."""
    kept = [item for item in items if len(item.captions) >= EVAL_CAPTIONS_PER_IMAGE]
    captions = [c for item in kept for c in item.captions[:EVAL_CAPTIONS_PER_IMAGE]]
    index = [i for i in range(len(kept)) for _ in range(EVAL_CAPTIONS_PER_IMAGE)]
    return EvalSet([item.image for item in kept], captions, index, dropped=len(items) - len(kept))


def load_split(source: Path, split: str, images_dir: Path | None = None) -> tuple[list[CaptionedImage], LoadReport]:
    """Images of one split (sorted by path) with their captions, and a report of what was skipped."""
    source = Path(source)
    split = _canonical_split(split)
    if images_dir is not None:
        images_dir = Path(os.path.abspath(images_dir))
        if not images_dir.is_dir():
            raise DatasetError(f"{images_dir}: images folder not found")
    out = _Collector()
    if source.is_dir():
        _read_folder(source, split, images_dir, out)
    elif source.is_file():
        _read_file(source, split, images_dir, out)
    else:
        raise DatasetError(f"{source}: no such file or folder")
    return out.build()


# ---- dispatch ---------------------------------------------------------------------------------------


def _read_folder(folder: Path, split: str, images_dir: Path | None, out: _Collector) -> None:
    for name in FLICKR8K_TOKEN_FILES:
        if (folder / name).is_file():
            _read_flickr8k(folder / name, split, images_dir, out)
            return
    if (folder / "captions.jsonl").is_file():
        _read_jsonl(folder / "captions.jsonl", split, images_dir, out)
        return
    if (folder / "captions.csv").is_file():
        _read_csv(folder / "captions.csv", split, images_dir, out)
        return
    karpathy = sorted(folder.glob("dataset_*.json"))
    if len(karpathy) > 1:
        names = ", ".join(p.name for p in karpathy)
        raise DatasetError(f"{folder}: several Karpathy split files ({names}); pass one of them")
    if karpathy:
        _read_karpathy(karpathy[0], _read_json(karpathy[0]), split, images_dir, out)
        return
    coco = sorted([*folder.glob("captions_*.json"), *folder.glob("annotations/captions_*.json")])
    if coco:
        path = _pick_coco_file(folder, coco, split)
        _read_coco(path, _read_json(path), split, images_dir, out)
        return
    raise DatasetError(
        f"{folder}: no caption data found (looked for {', '.join(FLICKR8K_TOKEN_FILES)}, captions.jsonl, "
        "captions.csv, dataset_*.json, captions_*.json)"
    )


def _read_file(path: Path, split: str, images_dir: Path | None, out: _Collector) -> None:
    name = path.name.lower()
    if name.endswith(".token.txt"):
        _read_flickr8k(path, split, images_dir, out)
    elif name.endswith(".jsonl"):
        _read_jsonl(path, split, images_dir, out)
    elif name.endswith(".csv"):
        _read_csv(path, split, images_dir, out)
    elif name.endswith(".json"):
        doc = _read_json(path)
        if isinstance(doc, dict) and "annotations" in doc:
            _read_coco(path, doc, split, images_dir, out)
        elif isinstance(doc, dict) and "images" in doc:
            _read_karpathy(path, doc, split, images_dir, out)
        else:
            raise DatasetError(f"{path}: neither COCO captions nor a Karpathy split file")
    else:
        raise DatasetError(f"{path}: unknown caption format (expected .token.txt, .jsonl, .csv or .json)")


# ---- formats ----------------------------------------------------------------------------------------


def _read_flickr8k(token_file: Path, split: str, images_dir: Path | None, out: _Collector) -> None:
    folder = token_file.parent
    images = images_dir or _flickr8k_images(folder)
    wanted: set[str] | None = None
    if split != "all":
        if split not in FLICKR8K_SPLIT_FILES:
            raise DatasetError(f"Flickr8k has no split {split!r} (use train, dev, test or all)")
        list_file = folder / FLICKR8K_SPLIT_FILES[split]
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: split list not found, so the {split} split cannot be loaded")
        wanted = {line.strip() for _, line in _lines(list_file)}
        for name in sorted(wanted):
            out.expect(_image_path(images, name))
    for lineno, line in _lines(token_file):
        where = f"{token_file.name}:{lineno}"
        key, tab, caption = line.partition("\t")
        name, hash_sign, number = key.strip().rpartition("#")
        if not (tab and hash_sign and name and number.isascii() and number.isdigit()):
            out.bad_row(where, "expected IMAGE#N<TAB>caption")
            continue
        if wanted is None or name in wanted:
            out.add(_image_path(images, name), caption, where, key=int(number))


def _flickr8k_images(folder: Path) -> Path:
    for name in FLICKR8K_IMAGE_DIRS:
        if (folder / name).is_dir():
            return Path(os.path.abspath(folder / name))
    raise DatasetError(f"{folder}: no images folder ({', '.join(FLICKR8K_IMAGE_DIRS)}); pass images_dir")


def _read_karpathy(path: Path, doc: Any, split: str, images_dir: Path | None, out: _Collector) -> None:
    records = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: no 'images' list")
    if split != "all" and split not in KARPATHY_SPLITS:
        raise DatasetError(f"{path.name} has no split {split!r} (use train, val, test, restval or all)")
    accept = None if split == "all" else KARPATHY_SPLITS[split]
    images = images_dir or _first_dir(path.parent / "images", path.parent)
    for i, record in enumerate(records):
        where = f"{path.name} images[{i}]"
        if not isinstance(record, dict):
            out.bad_row(where, "not an object")
            continue
        filename, filepath = record.get("filename"), record.get("filepath", "")
        sentences = record.get("sentences")
        if not (_text(filename) and isinstance(filepath, str) and isinstance(sentences, list)):
            out.bad_row(where, "needs a string 'filename' and a 'sentences' list")
            continue
        if accept is not None:
            record_split = record.get("split")
            if not _text(record_split):
                out.bad_row(where, "no 'split'")
                continue
            if record_split not in accept:
                continue
        image = _image_path(images / filepath, filename)
        out.expect(image)
        for j, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(raw, str):
                out.bad_row(f"{where}.sentences[{j}]", "needs a string 'raw'")
                continue
            sentid = sentence.get("sentid")
            key = ("sentid", sentid) if _integer(sentid) else ("index", j)
            out.add(image, raw, f"{where}.sentences[{j}]", key)


def _pick_coco_file(folder: Path, files: list[Path], split: str) -> Path:
    matching = [p for p in files if split == "all" or _coco_split(p) == split]
    if len(matching) != 1:
        found = ", ".join(p.name for p in (matching or files))
        raise DatasetError(f"{folder}: need one COCO captions file for split {split!r}, found: {found}")
    return matching[0]


def _coco_split(path: Path) -> str | None:
    match = _COCO_FILE.fullmatch(path.name)
    return _canonical_split(match.group(1)) if match else None


def _read_coco(path: Path, doc: Any, split: str, images_dir: Path | None, out: _Collector) -> None:
    file_split = _coco_split(path)
    if split != "all" and file_split is not None and file_split != split:
        raise DatasetError(f"{path.name} holds the {file_split} split, not {split}")
    image_records = doc.get("images") if isinstance(doc, dict) else None
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(image_records, list) or not isinstance(annotations, list):
        raise DatasetError(f"{path}: needs 'images' and 'annotations' lists")
    match = _COCO_FILE.fullmatch(path.name)
    photo_folder = "".join(match.groups()) if match else "images"  # captions_train2017 -> train2017
    images = images_dir or _first_dir(
        path.parent.parent / photo_folder, path.parent / photo_folder, path.parent / "images", path.parent
    )
    by_id: dict[int, str] = {}
    for i, record in enumerate(image_records):
        where = f"{path.name} images[{i}]"
        image_id = record.get("id") if isinstance(record, dict) else None
        file_name = record.get("file_name") if isinstance(record, dict) else None
        if not (_integer(image_id) and _text(file_name)):
            out.bad_row(where, "needs an integer 'id' and a string 'file_name'")
        elif image_id in by_id:
            out.bad_row(where, f"image id {image_id} listed twice")
        else:
            by_id[image_id] = _image_path(images, file_name)
            out.expect(by_id[image_id])
    for i, annotation in enumerate(annotations):
        where = f"{path.name} annotations[{i}]"
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        caption = annotation.get("caption") if isinstance(annotation, dict) else None
        if not (_integer(image_id) and isinstance(caption, str)):
            out.bad_row(where, "needs an integer 'image_id' and a string 'caption'")
        elif image_id not in by_id:
            out.bad_row(where, f"image_id {image_id} is not in 'images'")
        else:
            annotation_id = annotation.get("id")
            out.add(by_id[image_id], caption, where, annotation_id if _integer(annotation_id) else None)


def _read_jsonl(path: Path, split: str, images_dir: Path | None, out: _Collector) -> None:
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for lineno, line in _lines(path):
        where = f"{path.name}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError:
            out.bad_row(where, "not valid JSON")
            continue
        if isinstance(row, dict):
            rows.append((where, row))
        else:
            out.bad_row(where, "not a JSON object")
    if split != "all" and not any("split" in row for _, row in rows):
        raise DatasetError(f"{path}: no 'split' field to select {split!r} by; load it with split 'all'")
    base = images_dir or Path(os.path.abspath(path.parent))
    for where, row in rows:
        _add_plain_row(row, split, base, where, out)


def _read_csv(path: Path, split: str, images_dir: Path | None, out: _Collector) -> None:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    if "image" not in columns or "caption" not in columns:
        raise DatasetError(f"{path}: the header must name 'image' and 'caption' columns")
    if split != "all" and "split" not in columns:
        raise DatasetError(f"{path}: no 'split' column to select {split!r} by; load it with split 'all'")
    base = images_dir or Path(os.path.abspath(path.parent))
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.bad_row(f"{path.name}:{reader.line_num}", f"not valid CSV ({exc})")
            continue
        where = f"{path.name}:{reader.line_num}"
        if not fields:
            continue
        if len(fields) != len(columns):
            out.bad_row(where, f"{len(fields)} fields where the header has {len(columns)}")
            continue
        _add_plain_row(dict(zip(columns, fields, strict=True)), split, base, where, out)


def _add_plain_row(row: Mapping[str, Any], split: str, base: Path, where: str, out: _Collector) -> None:
    image, caption = row.get("image"), row.get("caption")
    if not (_text(image) and isinstance(caption, str)):
        out.bad_row(where, "needs a string 'image' and 'caption'")
        return
    if split != "all":
        row_split = row.get("split")
        if not _text(row_split):
            out.bad_row(where, "no 'split'")
            return
        if _canonical_split(row_split) != split:
            return
    out.add(_image_path(base, image), caption, where)


# ---- collecting rows --------------------------------------------------------------------------------


class _Collector:
    """Gathers the rows of one load in file order, counting problems as they come."""

    def __init__(self) -> None:
        self.report = LoadReport()
        self._captions: dict[str, list[str]] = {}  # absolute image path -> captions in file order
        self._seen: set[tuple[str, object, str]] = set()
        self._shown: Counter[str] = Counter()

    def expect(self, image: str) -> None:
        """An image that belongs to the split: counted as uncaptioned if no caption arrives."""
        self._captions.setdefault(image, [])

    def bad_row(self, where: str, why: str) -> None:
        self.report.bad_rows += 1
        self._example("bad", f"{where}: bad row, {why}")

    def add(self, image: str, caption: str, where: str, key: object = None) -> None:
        """One caption row; `key` is the format's caption id, part of what makes a line a duplicate."""
        if _has_surrogates(image) or _has_surrogates(caption):
            self.bad_row(where, "not valid UTF-8 text")
            return
        self.expect(image)
        text = caption.strip()
        if not text:
            self.report.empty_captions += 1
            self._example("empty", f"{where}: empty caption for {os.path.basename(image)}")
            return
        if (image, key, text) in self._seen:
            self.report.duplicate_lines += 1
            self._example("duplicate", f"{where}: duplicate line for {os.path.basename(image)}")
            return
        self._seen.add((image, key, text))
        self._captions[image].append(text)

    def build(self) -> tuple[list[CaptionedImage], LoadReport]:
        items: list[CaptionedImage] = []
        for image in sorted(self._captions):
            captions = self._captions[image]
            if not captions:
                self.report.uncaptioned_images += 1
                self._example("uncaptioned", f"no captions for {os.path.basename(image)}, dropped")
            elif not os.path.isfile(image):
                self.report.missing_images += 1
                self._example("missing", f"missing image {image}")
            else:
                items.append(CaptionedImage(Path(image), tuple(captions)))
        self.report.images = len(items)
        self.report.captions = sum(len(item.captions) for item in items)
        return items, self.report

    def _example(self, kind: str, text: str) -> None:
        self._shown[kind] += 1
        if self._shown[kind] <= EXAMPLES_PER_KIND:
            self.report.examples.append(text)


# ---- small helpers ----------------------------------------------------------------------------------


def _canonical_split(split: str) -> str:
    name = split.strip().lower()
    return "val" if name in ("dev", "val", "validation") else name


def _read_text(path: Path) -> str:
    """UTF-8 (BOM dropped); undecodable bytes survive as lone surrogates so their rows count as bad."""
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with 1-based numbers. Splits on newlines only: captions may hold other separators."""
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None


def _has_surrogates(text: str) -> bool:
    """Lone surrogates: undecodable bytes (see _read_text) or a JSON escape like "\\ud800"."""
    return _SURROGATE.search(text) is not None


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_path(base: Path, name: str) -> str:
    """Absolute path as a string (Path objects cost more than the parsing on 35K-row files).

    abspath, not resolve(): a symlinked photo keeps the path the dataset gave it.
    """
    return os.path.abspath(os.path.join(base, name.strip()))


def _first_dir(*candidates: Path) -> Path:
    """The first existing folder; the last candidate is the fallback and must exist."""
    folder = next((c for c in candidates if c.is_dir()), candidates[-1])
    return Path(os.path.abspath(folder))


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
