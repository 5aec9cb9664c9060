"""Tests of laionlab.validate, the argument checks shared by coverage, ood, sampling and cluster."""

import numpy as np
import pytest

from laionlab import validate


def test_matrix_keeps_a_memmap_without_copying(tmp_path):
    m = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="w+", shape=(10, 3))
    m[:] = 1.0
    out = validate.matrix("x", m)
    assert out is m and isinstance(out, np.memmap)


def test_matrix_converts_lists_and_keeps_integer_dtype():
    out = validate.matrix("x", [[1, 2], [3, 4]])
    assert isinstance(out, np.ndarray) and out.shape == (2, 2)
    assert np.issubdtype(out.dtype, np.integer)


def test_nan_in_a_later_block_is_found():
    a = np.zeros((validate.FINITE_BLOCK_ROWS + 3, 2), np.float32)
    a[-1, 1] = np.nan
    with pytest.raises(ValueError, match="^a: contains NaN or inf"):
        validate.matrix("a", a)
    assert validate.matrix("a", a, finite=False) is a  # the scan can be left for later


def test_finite_scan_reads_block_by_block(monkeypatch):
    monkeypatch.setattr(validate, "FINITE_BLOCK_ROWS", 2)
    seen = []

    class Spy(np.ndarray):
        def __getitem__(self, item):
            seen.append(item)
            return super().__getitem__(item)

    a = np.zeros((7, 3)).view(Spy)
    validate.all_finite("a", a)
    assert seen == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    a[5, 0] = np.inf
    with pytest.raises(ValueError, match="^a: contains NaN or inf"):
        validate.all_finite("a", a)


@pytest.mark.parametrize(
    "x,fragment",
    [
        (np.ones(3), "expected a 2-D array"),
        (np.ones((0, 3)), "expected at least 1 row"),
        (np.ones((3, 0)), "expected at least 1 row"),
        (np.ones((2, 2), bool), "expected a real numeric array"),
        (np.ones((2, 2), complex), "expected a real numeric array"),
        (np.array([["a"]]), "expected a real numeric array"),
    ],
)
def test_matrix_errors_name_the_argument(x, fragment):
    with pytest.raises(ValueError, match=f"^feats: {fragment}"):
        validate.matrix("feats", x)


def test_matrix_min_rows():
    validate.matrix("x", np.ones((2, 1)), min_rows=2)
    with pytest.raises(ValueError, match=r"^x: expected at least 2 row\(s\)"):
        validate.matrix("x", np.ones((1, 1)), min_rows=2)


def test_must_wording():
    with pytest.raises(ValueError, match=r"^X must be a 2-D \(n, d\) array"):
        validate.matrix("X", np.ones(3), wording="must")
    with pytest.raises(ValueError, match="^X contains NaN or inf"):
        validate.matrix("X", np.full((2, 2), np.nan), wording="must")
    with pytest.raises(ValueError, match="^k must be >= 1, got 0"):
        validate.int_at_least("k", 0, 1, wording="must")
    with pytest.raises(ValueError, match="^k must be an integer"):
        validate.int_at_least("k", 1.0, 1, wording="must")


def test_bool_is_not_an_int():
    for v in (True, False, np.bool_(True)):
        with pytest.raises(ValueError, match="^k: expected an integer >= 0"):
            validate.int_at_least("k", v, 0)
    for v in (1.0, "1", None, np.float64(2)):
        with pytest.raises(ValueError, match="^k: expected an integer"):
            validate.int_at_least("k", v, 0)
    out = validate.int_at_least("k", np.int64(3), 3)
    assert out == 3 and type(out) is int
    with pytest.raises(ValueError, match="^k: expected an integer >= 4, got 3"):
        validate.int_at_least("k", 3, 4)


def test_real_interval_bounds_open_and_closed():
    assert validate.real("p", 0.0, lo=0.0) == 0.0
    assert validate.real("p", 1, lo=0.0, hi=1.0) == 1.0
    with pytest.raises(ValueError, match=r"^p: expected a finite number in \(0.0, 1.0\]"):
        validate.real("p", 0.0, lo=0.0, hi=1.0, lo_open=True)
    assert validate.real("p", 1.0, lo=0.0, hi=1.0, lo_open=True) == 1.0
    with pytest.raises(ValueError, match=r"^p: expected a finite number in \[0.0, 1.0\)"):
        validate.real("p", 1.0, lo=0.0, hi=1.0, hi_open=True)
    with pytest.raises(ValueError, match=r"^p: expected a finite number in \[0.0, inf\]"):
        validate.real("p", -1e-9, lo=0.0)
    for v in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="^p: expected a finite number in"):
            validate.real("p", v)
    for v in (True, "0.5", None, np.array([0.5])):
        with pytest.raises(ValueError, match="^p: expected a real number"):
            validate.real("p", v)
    assert validate.real("p", np.float32(0.5), lo=0.0, hi=1.0) == 0.5


def test_same_dim_against_an_array_or_a_dimension():
    a, b = np.ones((3, 4)), np.ones((5, 4))
    validate.same_dim("b", b, "a", a)
    validate.same_dim("b", b, "the setup", 4)
    with pytest.raises(ValueError, match="^c: dimension mismatch, expected d=4 as in a, got d=2"):
        validate.same_dim("c", np.ones((3, 2)), "a", a)
    with pytest.raises(ValueError, match="^c: dimension mismatch"):
        validate.same_dim("c", np.ones((3, 2)), "the setup", np.int64(4))


def test_int_list_and_real_list():
    assert validate.int_list("counts", (1, np.int32(2)), 1) == [1, 2]
    with pytest.raises(ValueError, match=r"^counts\[1\]: expected an integer >= 1"):
        validate.int_list("counts", [1, 0], 1)
    with pytest.raises(ValueError, match=r"^counts\[0\]: expected an integer"):
        validate.int_list("counts", [True], 0)
    with pytest.raises(ValueError, match="^counts: expected at least one value"):
        validate.int_list("counts", [], 1)
    with pytest.raises(ValueError, match="^counts: expected a sequence of integers"):
        validate.int_list("counts", 3, 1)
    assert validate.real_list("fr", [0.5, 1], lo=0.0, hi=1.0, lo_open=True) == [0.5, 1.0]
    with pytest.raises(ValueError, match=r"^fr\[0\]: expected a finite number in \(0.0, 1.0\]"):
        validate.real_list("fr", [0.0], lo=0.0, hi=1.0, lo_open=True)
    with pytest.raises(ValueError, match="^fr: expected a sequence of numbers"):
        validate.real_list("fr", None)
