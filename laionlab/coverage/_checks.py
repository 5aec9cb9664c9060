"""Blocked Euclidean distances shared by the coverage metrics (argument checks: laionlab.validate)."""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from laionlab import validate
from laionlab.progress import Progress

log = logging.getLogger(__name__)

# Largest (rows x columns) float64 distance block held at once: 2**23 values = 64 MiB.
BLOCK_ELEMENTS = 2**23


def block_rows(n_cols: int, block: int | None) -> int:
    """Rows per block so that a (rows, n_cols) float64 block stays under BLOCK_ELEMENTS."""
    if block is None:
        return max(1, BLOCK_ELEMENTS // max(1, n_cols))
    return validate.int_at_least("block", block, 1)


def sq_dists_blocks(
    x: np.ndarray, y: np.ndarray, block: int | None = None, what: str = "distances", log_every_s: float = 30.0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, D)`` with ``D[i, j] = ||x[start + i] - y[j]||²`` (float64, >= 0),
    computed as ||x||² - 2 x·y + ||y||² one block of rows of ``x`` at a time; ``what``'s
    progress (rows of ``x`` done, ETA) is logged every ``log_every_s`` seconds."""
    y64 = np.asarray(y, dtype=np.float64)
    y_sq = np.einsum("ij,ij->i", y64, y64)
    step = block_rows(len(y64), block)
    progress = Progress(f"{what} ({len(x):,} x {len(y64):,})", len(x), log_every_s, log, quiet_below_s=log_every_s)
    for start in range(0, len(x), step):
        xb = np.asarray(x[start : start + step], dtype=np.float64)
        d = xb @ y64.T
        d *= -2.0
        d += np.einsum("ij,ij->i", xb, xb)[:, None]
        d += y_sq[None, :]
        np.maximum(d, 0.0, out=d)  # cancellation can leave tiny negatives
        yield start, d
        progress.update(len(d))
    progress.close()
