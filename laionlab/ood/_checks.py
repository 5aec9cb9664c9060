"""Input validation for laionlab.ood: every error names the argument at fault."""

from __future__ import annotations

import math

import numpy as np


def int_at_least(name: str, v, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {v!r}")
    return int(v)


def real(name: str, v, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, hi_open: bool = False) -> float:
    """``v`` as a finite float in the interval given by ``lo``/``hi`` (closed unless *_open)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a real number, got {v!r}")
    f = float(v)
    bad = not math.isfinite(f)
    if lo is not None:
        bad |= f <= lo if lo_open else f < lo
    if hi is not None:
        bad |= f >= hi if hi_open else f > hi
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ValueError(f"{name}: expected a finite number in {rng}, got {v!r}")
    return f


# Rows checked for NaN/inf at once, so a memory-mapped matrix is never loaded whole.
FINITE_BLOCK_ROWS = 65_536


def matrix(name: str, x, *, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite real 2-D array with at least ``min_rows`` rows (a ``np.memmap``
    stays one)."""
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] < min_rows or a.shape[1] == 0:
        raise ValueError(f"{name}: expected at least {min_rows} row(s) and 1 column, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {a.dtype}")
    for start in range(0, a.shape[0], FINITE_BLOCK_ROWS):
        if not np.isfinite(a[start : start + FINITE_BLOCK_ROWS]).all():
            raise ValueError(f"{name}: contains NaN or inf")
    return a


def int_list(name: str, values, minimum: int) -> list[int]:
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{name}: expected a sequence of integers, got {values!r}") from None
    if not items:
        raise ValueError(f"{name}: expected at least one value")
    return [int_at_least(f"{name}[{i}]", v, minimum) for i, v in enumerate(items)]
