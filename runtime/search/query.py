"""What a search ranks by: query vectors (token weights folded in), the score kind and the fused term.

A photo's score for a query is

    score = MISA(grid, vectors) + global_weight * cos(pooled photo vector, pooled query vector)

MISA is the mean over the query's vectors of each one's best patch (with token weights folded into the
vectors it is the weighted mean, assoc.runtime.scoring.token_weights); the pooled photo vector is the
normalised mean of its patches (what every store keeps for its first stage) and the pooled query
vector the normalised mean of the query's vectors. global_weight = 0 is plain MISA. SISA and MIMA
bundles fuse the same way. The bundle declares both halves (config.json "ranking").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import QueryError
from ..scoring.matchmap import SCORES


@dataclass(frozen=True)
class Query:
    """Build it with Query.of."""

    vectors: np.ndarray  # (T, D) float32
    kind: str = "misa"
    global_weight: float = 0.0
    pooled: np.ndarray = field(init=False, repr=False)  # (D,) unit vector (zero for a zero mean)
    transposed: np.ndarray = field(init=False, repr=False)  # (D, T), contiguous: what the kernel takes

    def __post_init__(self) -> None:
        mean = self.vectors.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        object.__setattr__(self, "pooled", mean / norm if norm > 0 else mean)
        object.__setattr__(self, "transposed", np.ascontiguousarray(self.vectors.T))

    @classmethod
    def of(
        cls, vectors: np.ndarray, embed_dim: int, *, kind: str = "misa", global_weight: float = 0.0
    ) -> Query:
        """A checked query: (T, D) finite vectors of the store's dimension, a known score kind."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] != embed_dim:
            raise QueryError(f"a query must be (T, {embed_dim}) vectors with T >= 1, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise QueryError("the query's vectors are not all finite numbers")
        if kind not in SCORES:
            raise QueryError(f"unknown score kind {kind!r}; expected one of {', '.join(SCORES)}")
        if not np.isfinite(global_weight) or global_weight < 0:
            raise QueryError(f"the global score weight must be a number >= 0, not {global_weight}")
        return cls(vectors, kind, float(global_weight))
