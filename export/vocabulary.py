"""A bundle's vocabulary: the content words of its training captions, with their text vectors.

Torch-free (ONNX Runtime only), so `assoc vocab` can add a vocabulary to any bundle, and export
calls the same code for new bundles. Words are the tokenizer's own words (its normaliser and
pre-tokeniser, as a query is split), alphabetic, at least two letters, not in
assoc.runtime.scoring.regions.FUNCTION_WORDS, and seen at least `min_count` times in the captions of
one split; then EVERYDAY_NAMES, the names people give everyday things ("dining table", "teddy bear"),
whether the captions use them or not, since a caption set of people and dogs rarely says "toaster".
Plurals stay apart in the list ("dog", "dogs") and are grouped where regions are named
(regions.word_families). A word's (or name's) vector is what a query of that one word scores with:
the bundle's text encoder run on the word alone, one query at a time (as TextEncoder.encode_one does),
and the mean of its word pieces' vectors, which gives exactly the map a query's word gets in
assoc.runtime.scoring.heatmap (for a name of several words, the mean over all of their pieces).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from ..runtime.encoding.bundle import (
    CONFIG_NAME,
    TEXTUAL_MODEL,
    VocabularyConfig,
    load_bundle,
    sha256_file,
)
from ..runtime.errors import AssocError, BundleError
from ..runtime.scoring.regions import FUNCTION_WORDS

DEFAULT_MIN_COUNT = 5
DEFAULT_SPLIT = "train"
# The 80 object categories of COCO (Lin et al. 2014), the usual list of everyday things in photos, as
# people write them ("hair dryer" for COCO's "hair drier", "ball" for its "sports ball").
EVERYDAY_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair dryer", "toothbrush",
)  # fmt: skip


def count_words(captions: Iterable[str], tokenizer: Tokenizer, names: Iterable[str] = ()) -> Counter[str]:
    """How often each content word, and each of `names` (one word or several), occurs, split and
    normalised as the tokenizer splits a query."""
    counts: Counter[str] = Counter()
    phrases = {tuple(name.split()) for name in names if " " in name}
    lengths = sorted({len(p) for p in phrases})
    for caption in captions:
        words = _split(caption, tokenizer)
        counts.update(word for word in words if len(word) > 1 and word.isalpha() and word not in FUNCTION_WORDS)
        for n in lengths:
            counts.update(" ".join(g) for g in zip(*(words[i:] for i in range(n)), strict=False) if g in phrases)
    return counts


def choose_words(counts: Counter[str], min_count: int, names: Iterable[str] = ()) -> list[str]:
    """Words seen at least min_count times, most frequent first (ties in alphabetical order), then the
    names not among them, in their order."""
    words = sorted((w for w, n in counts.items() if n >= min_count and " " not in w), key=lambda w: (-counts[w], w))
    chosen = set(words)
    return words + [name for name in dict.fromkeys(names) if name not in chosen]


def _split(text: str, tokenizer: Tokenizer) -> list[str]:
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    text = normalizer.normalize_str(text) if normalizer is not None else text
    return [w for w, _ in pre_tokenizer.pre_tokenize_str(text)] if pre_tokenizer is not None else text.split()


def build_vocabulary(
    bundle_dir: Path, data: Path, split: str = DEFAULT_SPLIT, min_count: int = DEFAULT_MIN_COUNT, device: str = "cpu"
) -> VocabularyConfig:
    """Choose the words from one split of a caption data set and store them in the bundle."""
    from ..models.datasets import load_split  # torch-free: caption files only

    if min_count < 1:
        raise AssocError(f"the minimum word count (--min-count) must be at least 1, not {min_count}")
    bundle = load_bundle(bundle_dir, check_vocabulary=False)
    items, report = load_split(Path(data), split)
    captions = [caption for item in items for caption in item.captions]
    tokenizer = Tokenizer.from_file(str(bundle.tokenizer_path))
    names = [" ".join(_split(name, tokenizer)) for name in EVERYDAY_NAMES]  # as the tokenizer writes them
    counts = count_words(captions, tokenizer, names)
    words = choose_words(counts, min_count)
    if not words:
        raise AssocError(  # the bundle is fine: the data, or the count asked of it, is not
            f"{data} ({split}): no content word occurs at least {min_count} times in {len(captions)} captions;"
            " ask for fewer with --min-count"
        )
    built = {
        "data": str(data),
        "split": split,
        "captions": len(captions),
        "min_count": min_count,
        "rule": "alphabetic tokenizer words of 2+ letters, no function words, then everyday names;"
        " vector = mean of the word's pieces",
        "names": len([name for name in dict.fromkeys(names) if name not in words]),
    }
    words = choose_words(counts, min_count, names)
    return write_vocabulary(Path(bundle_dir), words, [counts[w] for w in words], built, device)


def refresh_vocabulary(bundle_dir: Path, device: str = "cpu") -> VocabularyConfig | None:
    """Encode the vocabulary's words again with the bundle's current text encoder (after it changed,
    e.g. was quantised); None if the bundle has no vocabulary."""
    bundle = load_bundle(bundle_dir, check_vocabulary=False)
    declared = bundle.config.vocabulary
    if declared is None:
        return None
    path = Path(bundle_dir) / declared.words
    if not path.is_file() or sha256_file(path) != declared.files.get(declared.words):
        raise BundleError(
            f"model bundle {bundle_dir}: {declared.words} is missing or changed; build the vocabulary again"
        )
    stored = json.loads(path.read_text(encoding="utf-8"))
    return write_vocabulary(Path(bundle_dir), stored["words"], stored["counts"], declared.built, device)


def write_vocabulary(
    bundle_dir: Path, words: list[str], counts: list[int], built: dict[str, Any], device: str = "cpu"
) -> VocabularyConfig:
    """Encode `words` with the bundle's text encoder, write the vocabulary files and declare them in
    config.json (replacing any vocabulary it had); bundle_id does not change."""
    from ..runtime.encoding.encoders import TextEncoder

    bundle = load_bundle(bundle_dir, check_vocabulary=False)
    encoder = TextEncoder(bundle, device)
    vectors = np.stack([encoder.encode_one(word).vectors.mean(axis=0) for word in words]).astype(np.float16)
    declared = VocabularyConfig(count=len(words), files={}, textual_sha256=bundle.config.files[TEXTUAL_MODEL])
    root = Path(bundle_dir)
    (root / declared.words).parent.mkdir(parents=True, exist_ok=True)
    (root / declared.vectors).parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(root / declared.words, (json.dumps({"words": words, "counts": counts}) + "\n").encode())
    with open(root / (declared.vectors + ".tmp"), "wb") as fh:
        np.save(fh, vectors, allow_pickle=False)
    os.replace(root / (declared.vectors + ".tmp"), root / declared.vectors)
    files = {name: sha256_file(root / name) for name in (declared.words, declared.vectors)}
    declared = replace(declared, files=files, built=dict(built))
    # Only the vocabulary entry changes: every other byte of config.json stays as the bundle wrote it.
    raw = json.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
    raw["vocabulary"] = asdict(declared)
    _write_atomic(root / CONFIG_NAME, (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode())
    return declared


def _write_atomic(path: Path, data: bytes) -> None:
    staged = path.with_name(path.name + ".tmp")
    staged.write_bytes(data)
    os.replace(staged, path)
