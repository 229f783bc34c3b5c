"""The two halves of a bundle on ONNX Runtime: photos -> patch grids, queries -> word vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BundleError, QueryError
from ..scoring.token_weights import fold_weights, query_weights
from .bundle import TEXTUAL_MODEL, Bundle
from .providers import open_session
from .tokenizer import QueryTokenizer

if TYPE_CHECKING:  # Pillow loads with the first photo: a text query needs none
    from PIL import Image

# A query is encoded in windows of the bundle's max_length tokens (QueryTokenizer.windows), every token
# once. One of more than MAX_QUERY_TOKENS tokens (word pieces: a word is one or more) is refused: MaxSim
# averages over every token, so such a text searches for nothing in particular, and its cost grows
# with its length. Text of more than MAX_QUERY_CHARS characters is refused before it is tokenized.
MAX_QUERY_TOKENS = 1000
MAX_QUERY_CHARS = 32 * MAX_QUERY_TOKENS


class ImageEncoder:
    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None) -> None:
        self.config = bundle.config.visual
        self.localize_size = bundle.config.localize_size
        self.session = open_session(bundle.visual_path, device, threads)
        _check_visual(self.session, bundle)
        if self.localize_size != self.config.image_size and not self.takes_any_size:
            height, width = self.config.image_size
            raise BundleError(
                f"model bundle {bundle.root}: config.json localizes at {self.localize_size[0]}x{self.localize_size[1]}"
                f" but the visual model takes only {height}x{width} inputs"
            )

    @property
    def takes_any_size(self) -> bool:
        """Whether the visual model's input height and width are free (bundles exported since localize
        settings exist) rather than fixed at the bundle's input size."""
        return not any(isinstance(d, int) for d in self.session.get_inputs()[0].shape[2:])

    def prepare(self, img: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
        """(3, H, W) model input at `size` (height, width); the bundle's input size by default."""
        from ..imaging.preprocess import image_to_array

        return image_to_array(img, size or self.config.image_size, self.config.mean, self.config.std)

    def encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, h, w, D) float32 patch grids (L2-normalised per patch)."""
        (out,) = self.session.run([self.config.output_name], {self.config.input_name: batch})
        return out

    def encode_with_globals(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3, H, W) float32 -> the patch grids and, where the bundle has a global output, the
        photos' global vectors (N, D) (what a store keeps besides the grid: first_stage.PhotoVectors)."""
        if self.config.global_output is None:
            return self.encode_arrays(batch), None
        grids, globals_ = self.session.run(
            [self.config.output_name, self.config.global_output], {self.config.input_name: batch}
        )
        return grids, globals_

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        """Photos -> (N, h, w, D) grids at the bundle's input size: what galleries store and search."""
        return self.encode_arrays(np.stack([self.prepare(img) for img in images]))

    def encode_for_localizing(self, image: Image.Image) -> np.ndarray:
        """One photo -> its (h, w, D) grid at the bundle's localize size (see LocalizeConfig)."""
        return self.encode_arrays(self.prepare(image, self.localize_size)[None])[0]


@dataclass(frozen=True)
class EncodedQuery:
    text: str
    vectors: np.ndarray  # (T, D) one per scoring token
    token_word: np.ndarray  # (T,) index into words of the word each vector belongs to
    words: list[str]
    weights: np.ndarray | None = None  # (T,) how much each token counts in the score (None: all alike)
    sentence: np.ndarray | None = None  # (D,) the textual model's sentence vector, where it has one

    @property
    def ranking_vectors(self) -> np.ndarray:
        """The vectors a search ranks by: the token weights folded in (assoc.runtime.scoring.token_weights)."""
        return self.vectors if self.weights is None else fold_weights(self.vectors, self.weights)


# The threads of a searcher's text encoder (assoc.api.searcher): a query is a few dozen tokens, which one
# ONNX Runtime thread encodes as fast as a pool does (on two busy cores faster: 1.3 against 2.0 ms for 5
# words, 34 against 46 ms for 200) and starts sooner. Batch work (evaluation, vocabularies) keeps the pool.
QUERY_THREADS = 1


class TextEncoder:
    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None) -> None:
        self.config = bundle.config.textual
        where = f"model bundle {bundle.root}: config.json"
        self.tokenizer = QueryTokenizer(bundle.tokenizer_path, self.config.max_length, source=where)
        self.session = open_session(bundle.textual_path, device, threads, keep_optimized=text_graph_key(bundle))
        self.token_weights = bundle.read_token_weights()
        _check_textual(self.session, bundle, self.tokenizer)

    def encode(self, texts: list[str]) -> list[EncodedQuery]:
        """Texts -> per text the vectors of the tokens that take part in a score.

        A text longer than the bundle's max_length tokens is encoded in windows of that many tokens
        (QueryTokenizer.windows), every word once; one over MAX_QUERY_TOKENS is a QueryError."""
        for text in texts:
            if not text.strip():
                raise QueryError("the query is empty")
            if len(text) > MAX_QUERY_CHARS:
                raise _too_long(f"{len(text):,} characters")
        windows = self.tokenizer.windows(texts)
        for count in windows.lengths:
            if count > MAX_QUERY_TOKENS:
                raise _too_long(f"{count:,} tokens")
        batch = windows.tokens
        ids_name, mask_name = self.config.input_names
        outputs = [self.config.output_name] + ([self.config.sentence_output] if self.config.sentence_output else [])
        tokens, *sentences = self.session.run(outputs, {ids_name: batch.input_ids, mask_name: batch.attention_mask})
        out = []
        for text, rows in zip(texts, windows.rows, strict=True):
            keep = [batch.word_mask[row] for row in rows]
            if not any(k.any() for k in keep):
                raise QueryError(f"the query {text!r} has no words to search for")
            vectors = np.concatenate([tokens[row][k] for row, k in zip(rows, keep, strict=True)])
            token_word = np.concatenate([batch.word_index[row][k] for row, k in zip(rows, keep, strict=True)])
            ids = np.concatenate([batch.input_ids[row][k] for row, k in zip(rows, keep, strict=True)])
            weights = None if self.token_weights is None else query_weights(self.token_weights, ids)
            # A text of several windows: the mean of their sentence vectors (Query normalises it).
            sentence = sentences[0][rows].mean(axis=0) if sentences else None
            out.append(EncodedQuery(text, vectors, token_word, batch.words[rows[0]], weights, sentence))
        return out

    def encode_one(self, text: str) -> EncodedQuery:
        return self.encode([text])[0]


def text_graph_key(bundle: Bundle) -> str:
    """The name the text model's optimised graph is kept under (assoc.runtime.encoding.providers): it
    changes with the model's bytes (its sha256 in config.json)."""
    return f"{bundle.config.model_name}-textual-{bundle.config.files[TEXTUAL_MODEL][:16]}"


def _too_long(size: str) -> QueryError:
    return QueryError(
        f"the query is too long ({size}): a query may have up to {MAX_QUERY_TOKENS:,} tokens (a word is one or more)"
    )


def _declared(dim: object) -> int | None:
    """A dimension the graph fixes, or None for a free (named or unknown) one."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _check_visual(session, bundle: Bundle) -> None:
    """The visual graph against config.json: input and output names, pixels (N, 3, H, W) float32 at the
    image size where the graph fixes it, patches (N, h, w, embed_dim) on the grid. Output sizes the
    graph leaves free are found by encoding one blank input at the image size."""
    config, where = bundle.config, f"model bundle {bundle.root}"
    visual = config.visual
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if visual.input_name not in inputs:
        raise BundleError(
            f"{where}: config.json visual input_name {visual.input_name!r} is not an input of the visual model"
            f" (it takes {', '.join(map(repr, inputs))})"
        )
    if visual.output_name not in outputs:
        raise BundleError(
            f"{where}: config.json visual output_name {visual.output_name!r} is not an output of the visual model"
            f" (it gives {', '.join(map(repr, outputs))})"
        )
    pixels, patches = inputs[visual.input_name], outputs[visual.output_name]
    if len(pixels.shape) != 4 or _declared(pixels.shape[1]) not in (None, 3) or pixels.type != "tensor(float)":
        raise BundleError(
            f"{where}: the visual model takes {pixels.type} {pixels.shape}, not float pixels (N, 3, H, W)"
        )
    fixed = tuple(_declared(d) for d in pixels.shape[2:])
    if any(d is not None and d != want for d, want in zip(fixed, visual.image_size, strict=True)):
        raise BundleError(
            f"{where}: config.json visual image_size is {visual.image_size[0]}x{visual.image_size[1]} but the visual"
            f" model takes {'x'.join(str(d) if d else '?' for d in fixed)} inputs"
        )
    if len(patches.shape) != 4:
        raise BundleError(f"{where}: the visual model gives {patches.shape}, not patch grids (N, h, w, D)")
    shape = tuple(_declared(d) for d in patches.shape[1:])
    if None in shape:  # free in the graph: what it really gives at the image size
        height, width = visual.image_size
        blank = np.zeros((1, 3, height, width), dtype=np.float32)
        try:
            (out,) = session.run([visual.output_name], {visual.input_name: blank})
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{where}: the visual model cannot encode a {height}x{width} input ({reason})") from None
        shape = tuple(int(d) for d in out.shape[1:]) if out.ndim == 4 else shape
    _check_dim(where, "visual", shape[2], config.embed_dim)
    if shape[:2] != visual.grid:
        raise BundleError(
            f"{where}: config.json visual grid is {visual.grid[0]}x{visual.grid[1]} but the visual model gives"
            f" {'x'.join(str(d) for d in shape[:2])} patches at {visual.image_size[0]}x{visual.image_size[1]}"
        )


def _check_textual(session, bundle: Bundle, tokenizer: QueryTokenizer) -> None:
    """The textual graph against config.json: input and output names, int64 (N, L) inputs, token vectors
    (N, L, embed_dim); a width the graph leaves free is found by encoding one word."""
    config, where = bundle.config, f"model bundle {bundle.root}"
    textual = config.textual
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for name in textual.input_names:
        if name not in inputs:
            raise BundleError(
                f"{where}: config.json textual input_names {name!r} is not an input of the textual model"
                f" (it takes {', '.join(map(repr, inputs))})"
            )
        if len(inputs[name].shape) != 2 or inputs[name].type != "tensor(int64)":
            raise BundleError(f"{where}: the textual model takes {inputs[name].type} {inputs[name].shape} as {name!r}")
    if textual.output_name not in outputs:
        raise BundleError(
            f"{where}: config.json textual output_name {textual.output_name!r} is not an output of the textual model"
            f" (it gives {', '.join(map(repr, outputs))})"
        )
    tokens = outputs[textual.output_name]
    if len(tokens.shape) != 3:
        raise BundleError(f"{where}: the textual model gives {tokens.shape}, not token vectors (N, L, D)")
    dim = _declared(tokens.shape[2])
    if dim is None:
        probe = tokenizer(["a"])
        ids_name, mask_name = textual.input_names
        try:
            (out,) = session.run([textual.output_name], {ids_name: probe.input_ids, mask_name: probe.attention_mask})
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BundleError(f"{where}: the textual model cannot encode a word ({reason})") from None
        dim = int(out.shape[-1])
    _check_dim(where, "textual", dim, config.embed_dim)


def _check_dim(where: str, branch: str, dim: int | None, embed_dim: int) -> None:
    if dim != embed_dim:
        raise BundleError(f"{where}: config.json embed_dim is {embed_dim} but the {branch} model gives {dim}-d vectors")
