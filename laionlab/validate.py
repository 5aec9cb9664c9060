"""Argument checks shared by laionlab's numeric packages (coverage, ood, sampling, cluster).

Every check raises ``ValueError`` whose message starts with the name of the argument at
fault, by default as ``"{name}: expected ..."``. :func:`matrix`, :func:`all_finite` and
:func:`int_at_least` also speak ``wording="must"`` (``"{name} must be ..."``), the phrasing
``laionlab.cluster`` has always used and its callers match on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Iterable, Literal

import numpy as np

__all__ = ["all_finite", "int_at_least", "int_list", "matrix", "real", "real_list", "same_dim"]

Wording = Literal["expected", "must"]

# Rows checked for NaN/inf at once, so a memory-mapped matrix is read a block at a time
# rather than loaded whole.
FINITE_BLOCK_ROWS = 65_536

_MESSAGES: dict[str, dict[str, str]] = {
    "expected": {
        "ndim": "{name}: expected a 2-D array (n, d), got shape {shape}",
        "size": "{name}: expected at least {min_rows} row(s) and 1 column, got shape {shape}",
        "dtype": "{name}: expected a real numeric array, got dtype {dtype}",
        "finite": "{name}: contains NaN or inf",
        "not_int": "{name}: expected an integer >= {minimum}, got {value!r}",
        "too_small": "{name}: expected an integer >= {minimum}, got {value!r}",
    },
    "must": {
        "ndim": "{name} must be a 2-D (n, d) array, got shape {shape}",
        "size": "{name} must have at least {min_rows} row(s) and 1 column, got shape {shape}",
        "dtype": "{name} must hold real numbers, got dtype {dtype}",
        "finite": "{name} contains NaN or inf",
        "not_int": "{name} must be an integer, got {value!r}",
        "too_small": "{name} must be >= {minimum}, got {value}",
    },
}


def _fail(wording: Wording, key: str, **fields) -> ValueError:
    return ValueError(_MESSAGES[wording][key].format(**fields))


def matrix(name: str, x, *, min_rows: int = 1, finite: bool = True, wording: Wording = "expected") -> np.ndarray:
    """``x`` as a real 2-D array with at least ``min_rows`` rows and one column.

    An ``np.ndarray`` (a ``np.memmap`` included) is returned as it is, never copied or
    converted; anything else goes through ``np.asarray``. Integer dtypes pass (bool and
    complex do not). With ``finite`` (the default) NaN/inf are looked for with
    :func:`all_finite`, block by block; pass ``finite=False`` to scan later, e.g. after
    cheaper checks or during a pass over the data that reads it anyway.
    """
    a = np.asanyarray(x)
    if a.ndim != 2:
        raise _fail(wording, "ndim", name=name, shape=a.shape)
    if a.shape[0] < min_rows or a.shape[1] == 0:
        raise _fail(wording, "size", name=name, shape=a.shape, min_rows=min_rows)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise _fail(wording, "dtype", name=name, dtype=a.dtype)
    if finite:
        all_finite(name, a, wording=wording)
    return a


def all_finite(name: str, a: np.ndarray, *, wording: Wording = "expected") -> None:
    """ValueError naming ``a`` if it holds NaN or inf; reads ``FINITE_BLOCK_ROWS`` rows at a time."""
    for start in range(0, a.shape[0], FINITE_BLOCK_ROWS):
        if not np.isfinite(a[start : start + FINITE_BLOCK_ROWS]).all():
            raise _fail(wording, "finite", name=name)


def int_at_least(name: str, v, minimum: int, *, wording: Wording = "expected") -> int:
    """``v`` as an ``int`` if it is an integer (Python or NumPy, not bool) ``>= minimum``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise _fail(wording, "not_int", name=name, value=v, minimum=minimum)
    if v < minimum:
        raise _fail(wording, "too_small", name=name, value=v, minimum=minimum)
    return int(v)


def real(
    name: str, v, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> float:
    """``v`` as a finite float in the interval given by ``lo``/``hi`` (closed unless *_open;
    ``None`` leaves that side unbounded). Bool is not a number here."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
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


def same_dim(name: str, x: np.ndarray, ref_name: str, ref: np.ndarray | int) -> None:
    """ValueError naming ``x`` unless its columns match ``ref`` (a 2-D array or a dimension)."""
    d = ref if isinstance(ref, numbers.Integral) else ref.shape[1]
    if x.shape[1] != d:
        raise ValueError(f"{name}: dimension mismatch, expected d={d} as in {ref_name}, got d={x.shape[1]}")


def _items(name: str, values: Iterable, what: str) -> list:
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{name}: expected a sequence of {what}, got {values!r}") from None
    if not items:
        raise ValueError(f"{name}: expected at least one value")
    return items


def int_list(name: str, values: Iterable, minimum: int) -> list[int]:
    """A non-empty sequence of integers ``>= minimum``; a bad item is named ``name[i]``."""
    return [int_at_least(f"{name}[{i}]", v, minimum) for i, v in enumerate(_items(name, values, "integers"))]


def real_list(name: str, values: Iterable, **interval) -> list[float]:
    """A non-empty sequence of :func:`real` numbers (``interval``: its ``lo``, ``hi``,
    ``lo_open``, ``hi_open``); a bad item is named ``name[i]``."""
    return [real(f"{name}[{i}]", v, **interval) for i, v in enumerate(_items(name, values, "numbers"))]


def string_series(name: str, values):
    """``values`` (a list of str with None allowed, or a String polars Series) as a polars
    String Series called ``name``; anything else is a ValueError naming ``name``."""
    import polars as pl

    if isinstance(values, pl.Series):
        if values.dtype not in (pl.String, pl.Null):
            raise ValueError(f"{name}: expected a String series, got dtype {values.dtype}")
        return values.cast(pl.String).rename(name)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(
            f"{name}: expected a list of str (None allowed) or a polars Series, got {type(values).__name__}"
        )
    try:
        return pl.Series(name, values, dtype=pl.String, strict=True)
    except (TypeError, pl.exceptions.PolarsError) as err:
        raise ValueError(f"{name}: expected str or None items ({err})") from None
