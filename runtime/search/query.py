"""What a search ranks by: query vectors (token weights folded in), the score kind and the fused term.

A photo's score for a query is

    score = (1 - λ) * MISA(grid, vectors) + λ * cos(photo's global vector, query's sentence vector)

MISA is the mean over the query's vectors of each one's best patch (with token weights folded into the
vectors it is the weighted mean, assoc.runtime.scoring.token_weights). The photo's global vector is
what every store keeps for its first stage (assoc.runtime.scoring.first_stage.PhotoVectors: the
visual model's own global output, else the normalised mean of its patches, as float16); the query's
sentence vector is the textual model's own sentence output, else the normalised mean of the query's
vectors. λ (global_weight, 0 to 1) = 0 is plain MISA; 1 is the global cosine alone, which for a
bundle converted from CLIP is CLIP's own score. SISA and MIMA bundles fuse the same way. The bundle
declares λ and the token weights (config.json "ranking").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import QueryError
from ..scoring.matchmap import SCORES
from ..scoring.quantize import quantize_query

if TYPE_CHECKING:
    from ..encoding.bundle import BundleConfig
    from ..encoding.encoders import EncodedQuery


@dataclass(frozen=True)
class Query:
    """Build it with Query.of."""

    vectors: np.ndarray  # (T, D) float32
    kind: str = "misa"
    global_weight: float = 0.0
    sentence: np.ndarray | None = field(default=None, repr=False)  # (D,) the textual model's own, if any
    pooled: np.ndarray = field(init=False, repr=False)  # (D,) unit sentence vector (zero for a zero mean)
    transposed: np.ndarray = field(init=False, repr=False)  # (D, T), contiguous: what the kernel takes
    codes: np.ndarray = field(init=False, repr=False)  # (D, T) int8: the words as the exact scan multiplies them
    word_scales: np.ndarray = field(init=False, repr=False)  # (T,) float32: each word's scale (quantize_query)

    def __post_init__(self) -> None:
        mean = self.vectors.mean(axis=0) if self.sentence is None else self.sentence
        norm = float(np.linalg.norm(mean))
        object.__setattr__(self, "pooled", (mean / norm if norm > 0 else mean).astype(np.float32))
        object.__setattr__(self, "transposed", np.ascontiguousarray(self.vectors.T))
        codes, scales = quantize_query(self.transposed)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "word_scales", scales)

    @property
    def global_only(self) -> bool:
        """Whether the score is the global cosine alone (λ = 1): the grids add nothing to it."""
        return self.global_weight == 1.0

    @classmethod
    def of(
        cls,
        vectors: np.ndarray,
        embed_dim: int,
        *,
        kind: str = "misa",
        global_weight: float = 0.0,
        sentence: np.ndarray | None = None,
    ) -> Query:
        """A checked query: (T, D) finite vectors of the store's dimension, a known score kind, λ in
        [0, 1], and the textual model's sentence vector (D,) where it has one."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] != embed_dim:
            raise QueryError(f"a query must be (T, {embed_dim}) vectors with T >= 1, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise QueryError("the query's vectors are not all finite numbers")
        if kind not in SCORES:
            raise QueryError(f"unknown score kind {kind!r}; expected one of {', '.join(SCORES)}")
        if not (np.isfinite(global_weight) and 0 <= global_weight <= 1):
            raise QueryError(f"the global score weight must be a number from 0 to 1, not {global_weight}")
        if sentence is not None:
            sentence = np.asarray(sentence, dtype=np.float32)
            if sentence.shape != (embed_dim,) or not np.isfinite(sentence).all():
                raise QueryError(f"a query's sentence vector must be ({embed_dim},) finite numbers")
        return cls(vectors, kind, float(global_weight), sentence)

    @classmethod
    def of_text(cls, encoded: EncodedQuery, config: BundleConfig) -> Query:
        """The query a bundle ranks an encoded text by: its token weights, score kind, λ and sentence vector."""
        return cls.of(
            encoded.ranking_vectors,
            config.embed_dim,
            kind=config.score,
            global_weight=config.ranking.global_weight,
            sentence=encoded.sentence,
        )
