"""Tests of laionlab.labels: the class-label check shared by laionet.stats (seed 001) and
repsim.probe (seed 002)."""

import numpy as np
import polars as pl
import pytest

from laionlab.labels import label_array


@pytest.mark.parametrize(
    ("labels", "dtype", "values"),
    [
        ([3, 1, 3], np.int64, [3, 1, 3]),
        (np.array([7, 8], dtype=np.uint8), np.int64, [7, 8]),
        (np.array([1, 2], dtype=object), np.int64, [1, 2]),
        (["b", "a"], np.str_, ["b", "a"]),
        (np.array(["x", "yy"], dtype=object), np.str_, ["x", "yy"]),
        (pl.Series([4, 5], dtype=pl.UInt16), np.int64, [4, 5]),
        (pl.Series(["n01", "n02"]), np.str_, ["n01", "n02"]),
        (pl.Series(["n01", "n02"], dtype=pl.Categorical), np.str_, ["n01", "n02"]),
        ([], np.float64, None),
    ],
)
def test_integer_and_str_labels(labels, dtype, values):
    if values is None:  # an empty list has no kind: numpy makes it float
        with pytest.raises(ValueError, match="x: expected integer or str labels, got dtype float64"):
            label_array("x", labels)
        return
    a = label_array("x", labels)
    assert a.dtype.type is dtype and a.ndim == 1
    assert a.tolist() == values


def test_ranks_and_length():
    assert label_array("pred", [[1, 2], [3, 4]], ndim=(1, 2)).shape == (2, 2)
    with pytest.raises(ValueError, match=r"pred: expected a 1-D array of labels, got shape \(1, 2\)"):
        label_array("pred", [[1, 2]])
    with pytest.raises(ValueError, match=r"pred: expected a 1-D or 2-D array of labels, got shape \(\)"):
        label_array("pred", 5, ndim=(1, 2))
    assert label_array("y", [1, 2], n=2).tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"y: expected 3 labels \(one per feature row\), got 2"):
        label_array("y", [1, 2], n=3)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (None, "y: expected labels, got None"),
        (pl.Series([1, None]), "y: expected no nulls, got 1"),
        (pl.Series(["a", None, None]), "y: expected no nulls, got 2"),
        (["a", None], "y: expected integer or str labels without nulls"),
        (np.array(["a", 1], dtype=object), "y: expected integer or str labels without nulls"),
        (np.array([True, 1], dtype=object), "y: expected integer or str labels without nulls"),
        ([True, False], "y: expected integer or str labels, got dtype bool"),
        ([0.5, 1.0], "y: expected integer or str labels, got dtype float64"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        label_array("y", labels)
