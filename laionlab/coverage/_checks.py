"""Input validation and blocked Euclidean distances shared by the coverage metrics."""

from __future__ import annotations

from typing import Iterator

import numpy as np

# Largest (rows x columns) float64 distance block held at once: 2**23 values = 64 MiB.
BLOCK_ELEMENTS = 2**23


def as_matrix(name: str, x, *, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite 2-D array with at least ``min_rows`` rows, or ValueError naming it."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] < min_rows or a.shape[1] == 0:
        raise ValueError(f"{name}: expected at least {min_rows} row(s) and 1 column, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def same_dim(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_b}: dimension {b.shape[1]} does not match {name_a} dimension {a.shape[1]}"
        )


def positive_int(name: str, v, *, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {v!r}")
    return int(v)


def block_rows(n_cols: int, block: int | None) -> int:
    """Rows per block so that a (rows, n_cols) float64 block stays under BLOCK_ELEMENTS."""
    if block is None:
        return max(1, BLOCK_ELEMENTS // max(1, n_cols))
    return positive_int("block", block)


def sq_dists_blocks(x: np.ndarray, y: np.ndarray, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, D)`` with ``D[i, j] = ||x[start + i] - y[j]||²`` (float64, >= 0),
    computed as ||x||² - 2 x·y + ||y||² one block of rows of ``x`` at a time."""
    y64 = np.asarray(y, dtype=np.float64)
    y_sq = np.einsum("ij,ij->i", y64, y64)
    step = block_rows(len(y64), block)
    for start in range(0, len(x), step):
        xb = np.asarray(x[start : start + step], dtype=np.float64)
        d = xb @ y64.T
        d *= -2.0
        d += np.einsum("ij,ij->i", xb, xb)[:, None]
        d += y_sq[None, :]
        np.maximum(d, 0.0, out=d)  # cancellation can leave tiny negatives
        yield start, d
