"""Health of stored embeddings: finite values, unit norm, one model and one dimension."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pyarrow as pa


@dataclass
class EmbeddingHealth:
    rows: int = 0
    non_finite_rows: int = 0
    max_norm_deviation: float = 0.0
    dims: set[int] = field(default_factory=set)
    models: dict[str, int] = field(default_factory=dict)

    def unit_norm(self, tol: float) -> bool:
        return self.max_norm_deviation <= tol


def embedding_health(
    batches: Iterable[pa.RecordBatch], columns: tuple[str, ...] = ("image_emb", "text_emb")
) -> EmbeddingHealth:
    """Scan batches (streaming) for NaN/inf rows, the largest | ||v|| - 1 |, the vector
    dimensions and the rows per model id."""
    h = EmbeddingHealth()
    for batch in batches:
        h.rows += batch.num_rows
        bad = np.zeros(batch.num_rows, bool)
        for name in columns:
            col = batch.column(name)
            dim = col.type.list_size
            h.dims.add(dim)
            x = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
            finite = np.isfinite(x).all(axis=1)
            bad |= ~finite
            if finite.any():
                dev = np.abs(np.linalg.norm(x[finite].astype(np.float64), axis=1) - 1.0)
                h.max_norm_deviation = max(h.max_norm_deviation, float(dev.max()))
        h.non_finite_rows += int(bad.sum())
        if "model" in batch.schema.names:
            for model, count in zip(
                *np.unique(batch.column("model").to_numpy(zero_copy_only=False), return_counts=True)
            ):
                h.models[str(model)] = h.models.get(str(model), 0) + int(count)
    return h
