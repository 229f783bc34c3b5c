"""The two halves of a bundle on ONNX Runtime: photos -> patch grids, queries -> word vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import BundleError, QueryError
from ..imaging.preprocess import image_to_array
from .bundle import Bundle
from .providers import open_session
from .tokenizer import QueryTokenizer


class ImageEncoder:
    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None) -> None:
        self.config = bundle.config.visual
        self.localize_size = bundle.config.localize_size
        self.session = open_session(bundle.visual_path, device, threads)
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
        return image_to_array(img, size or self.config.image_size, self.config.mean, self.config.std)

    def encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, h, w, D) float32 patch grids (L2-normalised per patch)."""
        (out,) = self.session.run([self.config.output_name], {self.config.input_name: batch})
        return out

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


class TextEncoder:
    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None) -> None:
        self.config = bundle.config.textual
        self.tokenizer = QueryTokenizer(bundle.tokenizer_path, self.config.max_length)
        self.session = open_session(bundle.textual_path, device, threads)

    def encode(self, texts: list[str]) -> list[EncodedQuery]:
        """Texts -> per text the vectors of the tokens that take part in a score."""
        for text in texts:
            if not text.strip():
                raise QueryError("the query is empty")
        batch = self.tokenizer(texts)
        ids_name, mask_name = self.config.input_names
        (tokens,) = self.session.run(
            [self.config.output_name], {ids_name: batch.input_ids, mask_name: batch.attention_mask}
        )
        out = []
        for row, text in enumerate(texts):
            keep = batch.word_mask[row]
            if not keep.any():
                raise QueryError(f"the query {text!r} has no words to search for")
            out.append(EncodedQuery(text, tokens[row][keep], batch.word_index[row][keep], batch.words[row]))
        return out

    def encode_one(self, text: str) -> EncodedQuery:
        return self.encode([text])[0]
