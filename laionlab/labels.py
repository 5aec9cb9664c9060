"""Class-label arrays checked at the boundary, for the per-class statistics of seed 001
(:mod:`laionlab.laionet.stats`: intra-class similarity, per-class recall) and the linear
probes of seed 002 (:mod:`laionlab.repsim.probe`).

A label is an integer (class index) or a str (wnid, class name); one array holds one kind.
Every check raises ``ValueError`` whose message starts with ``"{name}: expected ..."``.
"""

from __future__ import annotations

import numbers

import numpy as np
import polars as pl

__all__ = ["label_array"]


def label_array(name: str, labels, *, ndim: tuple[int, ...] = (1,), n: int | None = None) -> np.ndarray:
    """``labels`` as an int64 or unicode numpy array, after checking it.

    ``labels``: array-like or polars Series of integers or of str, no nulls (bools are not
    labels). ``ndim``: the allowed ranks. ``n``: the length the first axis must have (one label
    per feature row), or None for any. Returns int64 for integer labels (any width, signed or
    not), ``<U`` for str labels.
    """
    if labels is None:
        raise ValueError(f"{name}: expected labels, got None")
    if isinstance(labels, pl.Series):
        if labels.null_count():
            raise ValueError(f"{name}: expected no nulls, got {labels.null_count()}")
        labels = labels.to_list()
    a = np.asarray(labels)
    if a.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name}: expected a {want} array of labels, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per feature row), got {a.shape[0]}")
    if a.dtype == object:
        items = a.ravel().tolist()
        if all(isinstance(v, str) for v in items):
            a = a.astype(str)
        elif all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer or str labels without nulls")
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind == "U":
        return a
    raise ValueError(f"{name}: expected integer or str labels, got dtype {a.dtype}")
