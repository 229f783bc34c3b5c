"""The model bundle: the contract between training (torch) and search (ONNX Runtime).

A bundle is a folder laid out like the CLIP-ONNX convention::

    config.json            everything needed to preprocess images and queries (this schema)
    visual/model.onnx      pixels (N, 3, H, W) float32 -> patch grid (N, h, w, D), L2-normalised
    textual/model.onnx     input_ids, attention_mask (N, L) int64 -> token vectors (N, L, D), L2-normalised
    textual/tokenizer.json a Hugging Face `tokenizers` file
    vocabulary/            optional: words.json and vectors.npy, words to name photo regions with

The runtime never guesses a mean, an image size or a tokenizer setting: they are all read from here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError
from ..scoring.matchmap import SCORES

BUNDLE_FORMAT = "assoc-bundle"
BUNDLE_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
VISUAL_MODEL = "visual/model.onnx"
TEXTUAL_MODEL = "textual/model.onnx"
TOKENIZER_FILE = "textual/tokenizer.json"
# The encoders' ONNX input and output names: export writes them, config.json records them.
VISUAL_INPUT = "pixels"
VISUAL_OUTPUT = "patches"
TEXTUAL_INPUTS = ("input_ids", "attention_mask")
TEXTUAL_OUTPUT = "tokens"
VOCABULARY_WORDS = "vocabulary/words.json"
VOCABULARY_VECTORS = "vocabulary/vectors.npy"
# Bounds on what config.json may declare, far past any real model, so that a hostile or broken config
# is refused in one line instead of allocating without end: an encoder input side (8 times the
# shipped localize size; 2048 x 2048 float32 pixels are 48 MB), an embedding width, a text window.
MAX_INPUT_SIDE = 2048
MAX_EMBED_DIM = 8192
MAX_TEXT_LENGTH = 4096


@dataclass(frozen=True)
class VisualConfig:
    """How a photo becomes the visual encoder's input, and what comes out."""

    image_size: tuple[int, int]  # (height, width) the whole frame is resized to (aspect not kept)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grid: tuple[int, int]  # (h, w) of the patch grid for image_size
    input_name: str = VISUAL_INPUT
    output_name: str = VISUAL_OUTPUT
    # A second output (N, D) of the visual model: the photo's own global vector (a CLIP image embedding).
    # None: a photo's global vector is its normalised mean patch (assoc.runtime.scoring.first_stage).
    global_output: str | None = None


@dataclass(frozen=True)
class TextualConfig:
    """How a query becomes token ids for the textual encoder."""

    max_length: int
    input_names: tuple[str, str] = TEXTUAL_INPUTS
    output_name: str = TEXTUAL_OUTPUT
    quantized: bool = False
    # A second output (N, D) of the textual model: the sentence vector (a CLIP text embedding). None: a
    # query's sentence vector is the normalised mean of its (weighted) word vectors.
    sentence_output: str | None = None


@dataclass(frozen=True)
class VocabularyConfig:
    """A bundle's optional vocabulary: words and their vectors from the text encoder.

    It is derived from the text encoder (textual_sha256 records which one), so it is not part of the
    bundle id: building it again changes no gallery.
    """

    count: int
    files: dict[str, str]  # relative path -> sha256
    textual_sha256: str
    built: dict[str, Any] = field(default_factory=dict)
    words: str = VOCABULARY_WORDS
    vectors: str = VOCABULARY_VECTORS


@dataclass(frozen=True)
class Vocabulary:
    """A vocabulary as read from a bundle."""

    words: list[str]
    vectors: np.ndarray  # (count, D) float32


@dataclass(frozen=True)
class FirstStageConfig:
    """How a search picks the photos it scores exactly (assoc.runtime.scoring.first_stage).

    Each photo's grid is also stored reduced to its pooled vector and to `vectors` unit vectors (the
    centroids of its patches after `iterations` rounds of k-means). A search ranks every photo by
    its pooled vector and keeps a shortlist (`shortlist` of the gallery, at least `shortlist_min`
    photos), ranks those by their centroids and scores the best `candidates` exactly. A gallery of
    `cells_from` photos or more is also partitioned into cells (assoc.runtime.stores.gallery_cells):
    a search then reads only the `probe` photos of the cells nearest the query before the pooled
    stage. Optional in config.json: bundles written before it get these defaults (chosen by
    bench/first_stage.py, and bench/million.py for the cells).
    """

    vectors: int = 8
    iterations: int = 4
    shortlist: float = 0.1
    shortlist_min: int = 1000
    candidates: int = 200
    cells_from: int = 50_000
    probe: int = 20_000

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FirstStageConfig:
        defaults = cls()
        fields = [name for name in cls.__dataclass_fields__ if name in raw]
        return cls(**{name: type(getattr(defaults, name))(raw[name]) for name in fields})


@dataclass(frozen=True)
class LocalizeConfig:
    """How a heatmap is made where one photo at a time can afford more than indexing (`localize`).

    The image trunk is fully convolutional, so a visual encoder exported with free height and width
    runs on a larger input than the gallery's: `image_size` (height, width; None = the visual input
    size) gives a finer grid, with each cell seeing more of the photo's own pixels. Every word map is
    then averaged over `smooth` x `smooth` cells (1 = not at all) before its peak is taken: a peak
    backed by its neighbours lands in an object more often than a lone cell does. Optional in
    config.json: bundles without it localise at their input size, smoothed. bench/localize_cost.py
    measures both halves on the pointing game and prices them per photo.
    """

    image_size: tuple[int, int] | None = None
    smooth: int = 3

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LocalizeConfig:
        size = raw.get("image_size")
        return cls(image_size=_pair(size) if size is not None else None, smooth=int(raw.get("smooth", cls.smooth)))


@dataclass(frozen=True)
class RankingConfig:
    """How a photo's score is made from its grid and a query (assoc.runtime.search.query).

    token_weights names a float32 file of one weight per token id (an IDF prior of the training
    captions, assoc.runtime.scoring.token_weights) recorded with its sha256; None weighs every token
    alike. global_weight λ, 0 to 1, mixes the global cosine in: (1 - λ) MISA + λ cos (0 = plain MISA,
    1 = the global cosine alone, which for a CLIP bundle is CLIP's own score). Neither
    changes what a gallery stores, so neither is part of the bundle id: changing them re-ranks old
    galleries without indexing again. Optional in config.json.
    """

    token_weights: str | None = None
    token_weights_sha256: str | None = None
    global_weight: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RankingConfig:
        name, digest = raw.get("token_weights"), raw.get("token_weights_sha256")
        if (name is None) != (digest is None):
            raise BundleError("bundle config.json: ranking token_weights needs its file and its sha256")
        weight = float(raw.get("global_weight", 0.0))
        if not (math.isfinite(weight) and 0 <= weight <= 1):
            raise BundleError(f"bundle config.json: ranking global_weight is {weight}, not a number from 0 to 1")
        return cls(str(name) if name is not None else None, str(digest) if digest is not None else None, weight)


@dataclass(frozen=True)
class BundleConfig:
    model_name: str
    embed_dim: int
    score: str
    visual: VisualConfig
    textual: TextualConfig
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    training: dict[str, Any] = field(default_factory=dict)  # data, settings, metrics (informative)
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    vocabulary: VocabularyConfig | None = None
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_FORMAT_VERSION

    @property
    def bundle_id(self) -> str:
        """A short id that changes whenever any model file changes; galleries record it.

        The vocabulary is not part of it (see VocabularyConfig)."""
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(f"{name}={self.files[name]};".encode())
        return f"{self.model_name}-{digest.hexdigest()[:12]}"

    def to_json(self) -> str:
        raw = asdict(self)
        if self.vocabulary is None:  # absent, as in bundles written before vocabularies existed
            del raw["vocabulary"]
        return json.dumps(raw, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BundleConfig:
        if raw.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not an assoc bundle config (format={raw.get('format')!r})")
        version = raw.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version!r} is not supported (this assoc reads {BUNDLE_FORMAT_VERSION})"
            )
        try:
            v, t = raw["visual"], raw["textual"]
            visual = VisualConfig(
                image_size=_pair(v["image_size"]),
                mean=tuple(float(x) for x in v["mean"]),
                std=tuple(float(x) for x in v["std"]),
                grid=_pair(v["grid"]),
                input_name=str(v.get("input_name", VISUAL_INPUT)),
                output_name=str(v.get("output_name", VISUAL_OUTPUT)),
                global_output=_optional_name(v.get("global_output")),
            )
            textual = TextualConfig(
                max_length=int(t["max_length"]),
                input_names=tuple(str(name) for name in t.get("input_names", TEXTUAL_INPUTS)),
                output_name=str(t.get("output_name", TEXTUAL_OUTPUT)),
                quantized=bool(t.get("quantized", False)),
                sentence_output=_optional_name(t.get("sentence_output")),
            )
            first_stage = FirstStageConfig.from_dict(raw.get("first_stage", {}))
            localize = LocalizeConfig.from_dict(raw.get("localize", {}))
            ranking = RankingConfig.from_dict(raw.get("ranking", {}))
            config = cls(
                model_name=str(raw["model_name"]),
                embed_dim=int(raw["embed_dim"]),
                score=str(raw["score"]),
                visual=visual,
                textual=textual,
                files=dict(raw.get("files", {})),
                training=dict(raw.get("training", {})),
                first_stage=first_stage,
                localize=localize,
                ranking=ranking,
                vocabulary=_vocabulary(raw["vocabulary"]) if raw.get("vocabulary") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle config.json is malformed: {exc!r}") from None
        if config.score not in SCORES:
            raise BundleError(f"bundle score {config.score!r} is not one of {', '.join(SCORES)}")
        _check_fields(config)
        if min(first_stage.vectors, first_stage.candidates) < 1 or first_stage.iterations < 0:
            raise BundleError("bundle config.json: first_stage needs vectors and candidates of 1 or more")
        if not 0 <= first_stage.shortlist <= 1:
            raise BundleError("bundle config.json: first_stage shortlist is a share of the gallery, 0 to 1")
        if localize.smooth < 1 or localize.smooth % 2 == 0:
            raise BundleError("bundle config.json: localize smooth is an odd number of cells, 1 or more")
        if localize.image_size is not None:
            _check_size("localize image_size", localize.image_size)
        return config

    @property
    def localize_size(self) -> tuple[int, int]:
        """(height, width) a photo is encoded at for localizing it."""
        return self.localize.image_size or self.visual.image_size

    @property
    def largest_input_size(self) -> tuple[int, int]:
        """(height, width): the most detail one photo is ever encoded at (the input or the localize size,
        the larger on each side)."""
        (h1, w1), (h2, w2) = self.visual.image_size, self.localize_size
        return max(h1, h2), max(w1, w2)


def _optional_name(value: object) -> str | None:
    """An optional output name of config.json: absent or null is None."""
    return None if value is None else str(value)


def _check_fields(config: BundleConfig) -> None:
    """Values a model could never have been exported with: each a BundleError naming its field."""
    visual, textual = config.visual, config.textual
    if not 1 <= config.embed_dim <= MAX_EMBED_DIM:
        raise BundleError(f"bundle config.json: embed_dim is {config.embed_dim}, not 1 to {MAX_EMBED_DIM}")
    _check_size("visual image_size", visual.image_size)
    for name, values in (("mean", visual.mean), ("std", visual.std)):
        if len(values) != 3 or not all(math.isfinite(x) for x in values):
            raise BundleError(f"bundle config.json: visual {name} needs three finite numbers, not {list(values)}")
    if min(visual.std) <= 0:
        raise BundleError(f"bundle config.json: visual std needs three positive numbers, not {list(visual.std)}")
    height, width = visual.image_size
    if not (1 <= visual.grid[0] <= height and 1 <= visual.grid[1] <= width):
        raise BundleError(
            f"bundle config.json: visual grid {visual.grid[0]}x{visual.grid[1]} is not 1x1 to the image size"
            f" {height}x{width}"
        )
    if not 1 <= textual.max_length <= MAX_TEXT_LENGTH:
        raise BundleError(
            f"bundle config.json: textual max_length is {textual.max_length}, not 1 to {MAX_TEXT_LENGTH} tokens"
        )
    if len(textual.input_names) != 2:
        raise BundleError("bundle config.json: textual input_names needs two names (token ids, attention mask)")


def _check_size(field_name: str, size: tuple[int, int]) -> None:
    """An encoder input size (height, width): positive and at most MAX_INPUT_SIDE a side."""
    if not all(1 <= side <= MAX_INPUT_SIDE for side in size):
        raise BundleError(
            f"bundle config.json: {field_name} is {size[0]}x{size[1]}; each side must be 1 to {MAX_INPUT_SIDE} pixels"
        )


def _vocabulary(raw: dict[str, Any]) -> VocabularyConfig:
    vocabulary = VocabularyConfig(
        count=int(raw["count"]),
        files={str(name): str(digest) for name, digest in dict(raw["files"]).items()},
        textual_sha256=str(raw["textual_sha256"]),
        built=dict(raw.get("built", {})),
        words=str(raw.get("words", VOCABULARY_WORDS)),
        vectors=str(raw.get("vectors", VOCABULARY_VECTORS)),
    )
    for name in (vocabulary.words, vocabulary.vectors):
        if name not in vocabulary.files:
            raise BundleError(f"bundle config.json: the vocabulary records no hash for {name}")
    return vocabulary


def _pair(value: Any) -> tuple[int, int]:
    a, b = value
    return int(a), int(b)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


VERIFIED_HASHES_NAME = "verified-hashes.json"  # in the per-user cache folder (platformdirs user_cache_dir)
VERIFIED_HASHES_FORMAT = "assoc-verified-hashes-1"
VERIFIED_HASHES_MAX = 512  # files remembered; the least recently verified are forgotten first
# A file whose last change (ctime or mtime) is more recent than this when it is hashed is not remembered:
# a write in the same tick of the file system's clock (2 s on FAT) would leave the very same stat behind.
SETTLE_NS = 2_000_000_000


class VerifiedHashes:
    """sha256 checks of files, remembered across runs by what stat says of each file.

    A file whose absolute path, device, inode, size, mtime_ns and ctime_ns are all what they were when
    it last matched the same expected sha256 is taken to match without being read; anything else (a
    miss) hashes it in full, and a match is remembered. ctime is what makes the key sound: every write
    to a file, and an os.utime that puts its old mtime back, sets its ctime to the present, and no
    program can set it back. On Windows st_ctime is the creation time, so nothing is remembered there.
    The record is one small JSON file (path None: none), replaced atomically; one that is missing,
    unreadable or malformed counts as empty, and one that cannot be written is no error. trust=False
    hashes every file (a full check) and refreshes the record.
    """

    def __init__(self, path: Path | None, *, trust: bool = True, settle_ns: int = SETTLE_NS) -> None:
        self.path = path if os.name != "nt" else None
        self.trust = trust
        self.settle_ns = settle_ns
        self._files: dict[str, list[Any]] | None = None
        self._changed = False

    @classmethod
    def default(cls, *, trust: bool = True) -> VerifiedHashes:
        """The per-user record (platformdirs user_cache_dir("assoc"), as the walk and the web app use)."""
        from platformdirs import user_cache_dir

        return cls(Path(user_cache_dir("assoc")) / VERIFIED_HASHES_NAME, trust=trust)

    def matches(self, path: Path, expected: str) -> bool:
        """Whether the file's sha256 is `expected`: known from an unchanged stat, else hashed."""
        key = str(Path(path).absolute())
        before = os.stat(path)
        files = self._load()
        if self.trust and files.get(key) == _stat_record(before, expected):
            return True
        if sha256_file(path) != expected:
            if files.pop(key, None) is not None:
                self._changed = True
            return False
        record = _stat_record(before, expected)
        settled = time.time_ns() - max(before.st_ctime_ns, before.st_mtime_ns) >= self.settle_ns
        unchanged = _stat_record(os.stat(path), expected) == record  # nothing wrote to it while it was read
        if self.path is not None and settled and unchanged:
            files.pop(key, None)  # last in the order: the most recently verified
            files[key] = record
            while len(files) > VERIFIED_HASHES_MAX:
                del files[next(iter(files))]
            self._changed = True
        return True

    def save(self) -> None:
        """Write the record if it changed: to a temporary file beside it, then renamed over it."""
        if not self._changed or self.path is None or self._files is None:
            return
        self._changed = False
        import tempfile

        text = json.dumps({"format": VERIFIED_HASHES_FORMAT, "files": self._files})
        temporary = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(temporary, self.path)
        except OSError:  # a read-only or full disk: the next run hashes again
            if temporary is not None:
                with suppress(OSError):
                    os.unlink(temporary)

    def _load(self) -> dict[str, list[Any]]:
        if self._files is None:
            self._files = _read_verified(self.path) if self.path is not None else {}
        return self._files


def _stat_record(st: os.stat_result, sha256: str) -> list[Any]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256]


def _read_verified(path: Path) -> dict[str, list[Any]]:
    """The files a VerifiedHashes record holds; {} for a record that is missing or not one."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    files = raw.get("files") if isinstance(raw, dict) and raw.get("format") == VERIFIED_HASHES_FORMAT else None
    if not isinstance(files, dict):
        return {}
    return {
        key: value
        for key, value in files.items()
        if isinstance(value, list)
        and len(value) == 6
        and all(type(v) is int for v in value[:5])
        and isinstance(value[5], str)
    }


def verify_file(path: Path, expected: str, *, rehash: bool = False) -> bool:
    """Whether one file's sha256 is `expected`, through the per-user VerifiedHashes record."""
    hashes = VerifiedHashes.default(trust=not rehash)
    try:
        return hashes.matches(path, expected)
    finally:
        hashes.save()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    root: Path
    config: BundleConfig

    @property
    def visual_path(self) -> Path:
        return self.root / VISUAL_MODEL

    @property
    def textual_path(self) -> Path:
        return self.root / TEXTUAL_MODEL

    @property
    def tokenizer_path(self) -> Path:
        return self.root / TOKENIZER_FILE

    @property
    def bundle_id(self) -> str:
        return self.config.bundle_id

    def read_token_weights(self) -> np.ndarray | None:
        """The ranking's per-token weights (float32, one per token id), checked; None if it has none."""
        name, digest = self.config.ranking.token_weights, self.config.ranking.token_weights_sha256
        if name is None:
            return None
        path = self.root / name
        if not path.is_file():
            raise BundleError(f"model bundle {self.root} is missing {name} (its token weights)")
        if not verify_file(path, digest):
            raise BundleError(f"model bundle {self.root}: {name} does not match its sha256 in config.json")
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"model bundle {self.root}: {name} cannot be read ({exc})") from None
        if table.ndim != 1 or not len(table) or not np.isfinite(table).all() or table.min() <= 0:
            raise BundleError(f"model bundle {self.root}: {name} is not one positive weight per token")
        return table.astype(np.float32)

    def read_vocabulary(self) -> Vocabulary | None:
        """The vocabulary's words and vectors (checked against config.json), or None if it has none."""
        declared = self.config.vocabulary
        if declared is None:
            return None
        try:
            words = json.loads((self.root / declared.words).read_text(encoding="utf-8"))["words"]
            vectors = np.load(self.root / declared.vectors, allow_pickle=False)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"model bundle {self.root}: the vocabulary cannot be read ({exc})") from None
        expected = (declared.count, self.config.embed_dim)
        if not (isinstance(words, list) and all(isinstance(w, str) for w in words)) or len(words) != declared.count:
            raise BundleError(f"model bundle {self.root}: {declared.words} does not hold {declared.count} words")
        if vectors.shape != expected:
            raise BundleError(f"model bundle {self.root}: {declared.vectors} has shape {vectors.shape}, not {expected}")
        return Vocabulary(words, vectors.astype(np.float32))


def load_bundle(root: str | Path, check_vocabulary: bool = True, *, rehash: bool = False) -> Bundle:
    """Read and check a bundle folder; every problem is a one-line BundleError.

    Every file must match its sha256 in config.json. A file verified before and unchanged since (by
    its stat, VerifiedHashes in the per-user cache folder) is not read again; rehash=True hashes every
    file in full (`assoc check` does). check_vocabulary=False leaves the vocabulary unchecked: only for
    rebuilding a stale or damaged one."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BundleError(f"model bundle not found: {root} is not a folder")
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise BundleError(f"model bundle {root} has no {CONFIG_NAME}")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"model bundle {root}: {CONFIG_NAME} is not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"model bundle {root}: {CONFIG_NAME} is not a JSON object")
    config = BundleConfig.from_dict(raw)
    for required in (VISUAL_MODEL, TEXTUAL_MODEL, TOKENIZER_FILE):
        if required not in config.files:
            raise BundleError(f"model bundle {root}: config.json records no hash for {required}")
    hashes = VerifiedHashes.default(trust=not rehash)
    try:
        _check_files(root, config.files, hashes=hashes)
        if check_vocabulary and config.vocabulary is not None:
            _check_vocabulary(root, config.vocabulary, config.files[TEXTUAL_MODEL], hashes)
    finally:
        hashes.save()  # what matched is remembered even when a later file does not
    return Bundle(root=root, config=config)


def _check_files(root: Path, files: dict[str, str], role: str = "", *, hashes: VerifiedHashes) -> None:
    """Every file there, each matching its recorded sha256; role says what the files are for."""
    for name, expected in files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"model bundle {root} is missing {name}{role}")
        if not hashes.matches(path, expected):
            raise BundleError(f"model bundle {root}: {name} does not match its sha256 in config.json")


def _check_vocabulary(root: Path, vocabulary: VocabularyConfig, textual_sha256: str, hashes: VerifiedHashes) -> None:
    _check_files(root, vocabulary.files, " (its vocabulary)", hashes=hashes)
    if vocabulary.textual_sha256 != textual_sha256:
        raise BundleError(
            f"model bundle {root}: its vocabulary was built with another text encoder; build the vocabulary again"
        )


def write_config(root: Path, config: BundleConfig) -> BundleConfig:
    """Hash the model files under root into config.files and write config.json; return the result."""
    files = {name: sha256_file(root / name) for name in (VISUAL_MODEL, TEXTUAL_MODEL, TOKENIZER_FILE)}
    final = BundleConfig(**{**config.__dict__, "files": files})
    (root / CONFIG_NAME).write_text(final.to_json(), encoding="utf-8")
    return final
