"""Tests of laionlab.laionet.stats: seed 001's (LAIONet) intra-class similarity test, Wilson
per-class recall, equally-/LAION-weighted accuracy and the text-threshold sweep."""

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from laionlab.laionet import (
    THRESHOLD_SWEEP,
    WILSON_Z,
    class_sample,
    class_samples,
    compare_intra_class,
    compare_intra_class_sets,
    intra_class_pairs,
    intra_class_similarity,
    laion_weights,
    lower_triangle_similarities,
    per_class_recall,
    threshold_curve,
    weighted_accuracy,
    wilson_interval,
)


def unit(rng, n, d=16):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def seed_vec(x):
    """The seed's notebook helper: the strict lower triangle of a similarity matrix."""
    msk = np.tril(np.eye(len(x)) < 0.5)
    return x[msk]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- lower_triangle_similarities --------------------------------------------------------------


def test_lower_triangle_matches_the_seeds_mask(rng):
    E = unit(rng, 12)
    sims = lower_triangle_similarities(E)
    assert sims.dtype == np.float32 and sims.shape == (66,)
    np.testing.assert_allclose(sims, seed_vec(E @ E.T), rtol=1e-6, atol=1e-6)
    # Row-major order of (i, j), i > j.
    assert sims[0] == pytest.approx(float(E[1] @ E[0]), abs=1e-6)
    assert sims[2] == pytest.approx(float(E[2] @ E[1]), abs=1e-6)


def test_lower_triangle_small(rng):
    E = unit(rng, 2)
    assert lower_triangle_similarities(E[:1]).shape == (0,)
    np.testing.assert_allclose(lower_triangle_similarities(E), [E[1] @ E[0]], atol=1e-6)


def test_lower_triangle_bad_inputs(rng):
    E = unit(rng, 5)
    with pytest.raises(ValueError, match="emb: expected a 2-D array"):
        lower_triangle_similarities(E[0])
    with pytest.raises(ValueError, match="emb: expected a 2-D array"):
        lower_triangle_similarities(E[None])
    bad = E.copy()
    bad[3] *= 1.5
    with pytest.raises(ValueError, match="emb: expected L2-normalised rows, row 3 has norm 1.5"):
        lower_triangle_similarities(bad)
    bad = E.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="emb: contains NaN or inf"):
        lower_triangle_similarities(bad)
    # Within the tolerance (float16 CLIP embeddings) is fine.
    lower_triangle_similarities(E * 1.005)


# --- class_sample ------------------------------------------------------------------------------


def test_class_sample_first_is_the_seeds_first_n():
    idx = np.array([40, 7, 33, 2, 18])
    np.testing.assert_array_equal(class_sample(idx, 3, "first"), [40, 7, 33])
    np.testing.assert_array_equal(class_sample(idx, 10, "first"), idx)
    np.testing.assert_array_equal(class_sample(idx, 10, "random"), idx)


def test_seed_compat_is_the_first_n_rule():
    idx = np.array([40, 7, 33, 2, 18])
    np.testing.assert_array_equal(class_sample(idx, 3, "seed_compat"), [40, 7, 33])
    E = unit(np.random.default_rng(1), 30)
    labels = np.array(["a", "b", "c"] * 10)
    assert intra_class_similarity(E, labels, 4, mode="seed_compat").equals(
        intra_class_similarity(E, labels, 4, mode="first")
    )
    _, rows = class_samples(labels, 4, mode="seed_compat")
    assert [r.tolist() for r in rows] == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]


def test_class_sample_random_is_seeded_and_keeps_order():
    idx = np.arange(1000, 1100)[::-1]  # descending, so "original order" is not sorted order
    a = class_sample(idx, 10, "random", seed=1)
    assert a.size == 10 and np.unique(a).size == 10
    assert set(a) <= set(idx)
    pos = [int(np.flatnonzero(idx == v)[0]) for v in a]
    assert pos == sorted(pos)
    np.testing.assert_array_equal(a, class_sample(idx, 10, "random", seed=1))
    assert not np.array_equal(a, class_sample(idx, 10, "random", seed=2))
    assert not np.array_equal(a, class_sample(idx, 10, "first"))


def test_class_sample_bad_inputs():
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        class_sample([1, 2], 0)
    with pytest.raises(ValueError, match=r"mode: expected 'random' or 'seed_compat' \(alias 'first'\)"):
        class_sample([1, 2], 1, "all")
    with pytest.raises(ValueError, match="indices: expected a 1-D"):
        class_sample(np.zeros((2, 2)), 1)


# --- intra_class_similarity ---------------------------------------------------------------------


def brute_stats(E):
    s = seed_vec(E @ E.T).astype(np.float64)
    mean, sd = s.mean(), s.std()
    half = 1.96 * sd / math.sqrt(s.size - 1)
    return s.size, mean, sd, mean - half, mean + half


def test_intra_class_matches_the_seed_formula(rng):
    E = unit(rng, 23)
    labels = np.array(["b"] * 9 + ["a"] * 12 + ["c"] * 2)
    perm = rng.permutation(23)
    E, labels = E[perm], labels[perm]
    out = intra_class_similarity(E, labels, n_per_class=None)
    assert out.columns == ["label", "n_images", "n_pairs", "mean", "sd", "lo", "hi"]
    assert out["label"].to_list() == ["a", "b", "c"]
    for row in out.iter_rows(named=True):
        rows = np.flatnonzero(labels == row["label"])
        assert row["n_images"] == rows.size
        if rows.size > 2:
            n_pairs, mean, sd, lo, hi = brute_stats(E[rows])
            assert row["n_pairs"] == n_pairs
            assert row["mean"] == pytest.approx(mean, abs=1e-6)
            assert row["sd"] == pytest.approx(sd, abs=1e-6)
            assert row["lo"] == pytest.approx(lo, abs=1e-6)
            assert row["hi"] == pytest.approx(hi, abs=1e-6)
    c = out.row(2, named=True)  # two images: one pair, no interval
    assert c["n_pairs"] == 1 and c["sd"] == 0.0 and c["lo"] is None and c["hi"] is None
    rows = np.flatnonzero(labels == "c")
    assert c["mean"] == pytest.approx(float(E[rows[1]] @ E[rows[0]]), abs=1e-6)


def test_intra_class_singletons_get_null_stats(rng):
    E = unit(rng, 4)
    out = intra_class_similarity(E, [5, 7, 7, 7])
    one = out.row(0, named=True)
    assert one == {"label": 5, "n_images": 1, "n_pairs": 0, "mean": None, "sd": None, "lo": None, "hi": None}
    assert out.schema["label"] == pl.Int64
    assert out.row(1, named=True)["n_pairs"] == 3


def test_intra_class_first_mode_takes_the_first_rows_in_order(rng):
    E = unit(rng, 12)
    labels = np.array([0, 1] * 6)
    out = intra_class_similarity(E, labels, n_per_class=3, mode="first")
    for label in (0, 1):
        first3 = np.flatnonzero(labels == label)[:3]
        row = out.filter(pl.col("label") == label).row(0, named=True)
        assert row["n_images"] == 3 and row["n_pairs"] == 3
        assert row["mean"] == pytest.approx(brute_stats(E[first3])[1], abs=1e-6)


def test_intra_class_random_mode_per_class_seeds(rng):
    E = unit(rng, 60)
    labels = np.array(["a"] * 30 + ["b"] * 30)
    full = intra_class_similarity(E, labels, n_per_class=5, seed=3)
    only_a = intra_class_similarity(E[:30], labels[:30], n_per_class=5, seed=3)
    # A class's sample does not depend on the other classes.
    assert full.row(0) == only_a.row(0)
    assert full.equals(intra_class_similarity(E, labels, n_per_class=5, seed=3))
    assert not full.equals(intra_class_similarity(E, labels, n_per_class=5, seed=4))
    assert full["n_images"].to_list() == [5, 5]
    # Two classes holding the same rows draw different members (seeded per label).
    twin = intra_class_similarity(np.vstack([E[:30], E[:30]]), labels, n_per_class=5, seed=3)
    assert twin["mean"][0] != twin["mean"][1]


def test_intra_class_bad_inputs(rng):
    E = unit(rng, 6)
    with pytest.raises(ValueError, match=r"labels: expected shape \(6,\)"):
        intra_class_similarity(E, [0] * 5)
    with pytest.raises(ValueError, match="labels: expected integer or str labels"):
        intra_class_similarity(E, np.zeros(6))
    with pytest.raises(ValueError, match="n_per_class: expected an integer >= 1"):
        intra_class_similarity(E, [0] * 6, n_per_class=0)
    with pytest.raises(ValueError, match="mode: expected"):
        intra_class_similarity(E, [0] * 6, mode="last")
    bad = E.copy()
    bad[4] *= 2
    # The message names the row of emb, not its row inside the class block.
    with pytest.raises(ValueError, match="emb: expected L2-normalised rows, row 4 has norm 2"):
        intra_class_similarity(bad, [0, 1, 0, 1, 1, 0])


# --- intra_class_pairs (the histogram) ---------------------------------------------------------


def big_class(rng, n_big=300, n_small=5):
    """One class much larger than n_per_class and one small class, rows interleaved."""
    E = unit(rng, n_big + n_small, d=32)
    labels = np.array(["big"] * n_big + ["small"] * n_small)
    perm = rng.permutation(labels.size)
    return E[perm], labels[perm]


def test_histogram_pairs_come_only_from_the_first_n_sample(rng, monkeypatch):
    import laionlab.laionet.stats as stats

    # A 300-image class whose first 100 rows (the seed_compat sample) point near e0 and whose
    # other rows are random in the other 255 dimensions: a pair of the sample has cosine > 0.9,
    # a pair with any other row < 0.5, so every value tells where it came from.
    n, d = 100, 256
    labels = rng.permutation(np.array(["big"] * 300 + ["small"] * 5))
    E = unit(rng, labels.size, d)
    big = np.flatnonzero(labels == "big")
    sample, rest = big[:n], big[n:]
    E[sample] = 0.01 * rng.normal(size=(n, d))
    E[sample, 0] = 1.0
    E[rest, 0] = 0.0
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    inside = lower_triangle_similarities(E[sample])
    assert inside.min() > 0.9 and np.abs(E[rest] @ E[big].T - np.eye(len(rest), len(big), k=n)).max() < 0.5

    seen_rows = []
    real = stats.lower_triangle_similarities
    monkeypatch.setattr(stats, "lower_triangle_similarities", lambda X: seen_rows.append(len(X)) or real(X))
    every = intra_class_pairs(E, labels, n_per_class=n, mode="seed_compat", pairs_per_class=None)
    # memory stays bounded: no similarity block larger than the sample
    assert max(seen_rows) == n
    assert every.size == n * (n - 1) // 2 + 5 * 4 // 2  # 4950 + 10 pairs, not 300·299/2 + 10
    np.testing.assert_array_equal(every[: n * (n - 1) // 2], inside)  # classes in label order

    drawn = intra_class_pairs(E, labels, n_per_class=n, mode="seed_compat", pairs_per_class=100, rng=3)
    assert drawn.size == 100 + 10  # min(#pairs, 100) per class
    assert drawn[:100].min() > 0.9 and set(drawn[:100].tolist()) <= set(inside.tolist())
    # the per-class statistics use the same sample
    row = intra_class_similarity(E, labels, n_per_class=n, mode="seed_compat").row(0, named=True)
    assert row["n_pairs"] == 4950 and row["mean"] == pytest.approx(float(inside.astype(np.float64).mean()), abs=1e-9)


def test_histogram_pairs_use_the_same_random_sample_as_the_statistics(rng):
    E, labels = big_class(rng)
    stats_frame_ = intra_class_similarity(E, labels, n_per_class=50, seed=7)
    every = intra_class_pairs(E, labels, n_per_class=50, seed=7, pairs_per_class=None)
    big = stats_frame_.row(0, named=True)
    assert big["label"] == "big" and big["n_pairs"] == 1225
    assert float(every[:1225].astype(np.float64).mean()) == pytest.approx(big["mean"], abs=1e-9)
    classes, rows = class_samples(labels, 50, seed=7)
    assert classes.tolist() == ["big", "small"] and rows[0].size == 50
    np.testing.assert_array_equal(every[:1225], lower_triangle_similarities(E[rows[0]]))
    with pytest.raises(ValueError, match="pairs_per_class: expected an integer >= 1"):
        intra_class_pairs(E, labels, pairs_per_class=0)


def test_compare_sets_samples_each_set_once(rng):
    E, labels = big_class(rng)
    R = unit(rng, 40, d=32)
    ref_labels = np.array(["big", "small"] * 20)
    out = compare_intra_class_sets(
        E, labels, R, ref_labels, n_per_class=60, mode="random", min_pairs=2, hist_pairs_per_class=30, seed=5
    )
    assert out.stats_a.equals(intra_class_similarity(E, labels, n_per_class=60, seed=5))
    assert out.stats_b.equals(intra_class_similarity(R, ref_labels, n_per_class=None, seed=5))
    per_class, summary = compare_intra_class(out.stats_a, out.stats_b, min_pairs=2)
    assert out.per_class.equals(per_class) and out.summary == summary
    assert out.pairs_a.size == 30 + 10 and out.pairs_b.size == 30 + 30
    _, rows = class_samples(labels, 60, seed=5)
    assert set(out.pairs_a[:30].tolist()) <= set(lower_triangle_similarities(E[rows[0]]).tolist())
    with pytest.raises(ValueError, match="mode: expected"):
        compare_intra_class_sets(E, labels, R, ref_labels, mode="last")


# --- compare_intra_class ------------------------------------------------------------------------


def stats_frame(rows):
    return pl.DataFrame(rows, schema=["label", "n_pairs", "mean", "sd"], orient="row")


def test_compare_intra_class_known_answers():
    # sd / sqrt(n_pairs - 1) = 0.1 / 10 = 0.01 for every compared class.
    a = stats_frame(
        [
            ("x", 101, 0.50, 0.1),  # 0.50 - 0.60: significantly lower
            ("y", 101, 0.70, 0.1),  # significantly higher
            ("z", 101, 0.59, 0.1),  # lower, not significantly
            ("w", 6, 0.10, 0.1),  # too few pairs in a
            ("v", 101, 0.10, 0.1),  # only in a
            ("u", 7, 0.30, 0.0),  # exactly min_pairs: kept
        ]
    )
    b = stats_frame(
        [
            ("x", 101, 0.60, 0.1),
            ("y", 101, 0.60, 0.1),
            ("z", 101, 0.60, 0.1),
            ("w", 101, 0.60, 0.1),
            ("u", 7, 0.30, 0.0),
        ]
    )
    per_class, summary = compare_intra_class(a, b)
    assert per_class["label"].to_list() == ["u", "x", "y", "z"]
    half = 1.96 * math.sqrt(2) * 0.01
    x = per_class.filter(pl.col("label") == "x").row(0, named=True)
    assert x["diff"] == pytest.approx(-0.1)
    assert x["lo"] == pytest.approx(-0.1 - half) and x["hi"] == pytest.approx(-0.1 + half)
    assert x["significantly_lower"] and not x["significantly_higher"]
    assert per_class["significantly_lower"].to_list() == [False, True, False, False]
    assert per_class["significantly_higher"].to_list() == [False, False, True, False]
    assert summary == {
        "n_classes": 4,
        "n_lower": 2,
        "share_lower": 0.5,
        "n_significantly_lower": 1,
        "share_significantly_lower": 0.25,
        "n_significantly_higher": 1,
        "share_significantly_higher": 0.25,
    }
    _, strict = compare_intra_class(a, b, min_pairs=8)
    assert strict["n_classes"] == 3


def test_compare_intra_class_end_to_end(rng):
    d = 32
    centre = np.zeros(d, np.float32)
    centre[0] = 1

    def cluster(spread, n):
        x = centre + spread * rng.normal(size=(n, d))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    # Class "p": set A tight, set B loose; class "q": the other way round.
    ea = np.vstack([cluster(0.05, 20), cluster(1.0, 20)])
    eb = np.vstack([cluster(1.0, 20), cluster(0.05, 20)])
    lab = ["p"] * 20 + ["q"] * 20
    per_class, summary = compare_intra_class(intra_class_similarity(ea, lab), intra_class_similarity(eb, lab))
    assert per_class["significantly_higher"].to_list() == [True, False]
    assert per_class["significantly_lower"].to_list() == [False, True]
    assert summary["share_lower"] == 0.5


def test_compare_intra_class_empty_and_bad_inputs():
    a = stats_frame([("x", 3, 0.5, 0.1)])
    per_class, summary = compare_intra_class(a, a)
    assert per_class.height == 0 and summary["n_classes"] == 0
    assert math.isnan(summary["share_significantly_lower"])
    with pytest.raises(ValueError, match="min_pairs: expected an integer >= 2"):
        compare_intra_class(a, a, min_pairs=1)
    with pytest.raises(ValueError, match=r"b: expected columns .* missing \['sd'\]"):
        compare_intra_class(a, a.drop("sd"))
    ints = a.with_columns(pl.lit(1).alias("label"))
    with pytest.raises(ValueError, match="b: expected 'label' of dtype String"):
        compare_intra_class(a, ints)
    with pytest.raises(ValueError, match="a: expected one row per label"):
        compare_intra_class(pl.concat([a, a]), a)


# --- Wilson interval ------------------------------------------------------------------------------


def wilson_by_roots(k, n, z):
    """Wilson's bounds as the roots of (p̂ - π)² = z² π (1 - π) / n, solved independently."""
    p = k / n
    a, b, c = 1 + z * z / n, -(2 * p + z * z / n), p * p
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


def test_wilson_known_value():
    lo, hi = wilson_interval(8, 10)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert lo == pytest.approx(0.4901624715, abs=1e-9)
    assert hi == pytest.approx(0.9433178485, abs=1e-9)


def test_wilson_default_z_is_statsmodels_critical_value():
    assert WILSON_Z == norm.isf(0.025)


def test_wilson_matches_the_quadratic_roots_vectorised():
    k = np.array([0, 1, 3, 17, 50, 49, 100])
    n = np.array([5, 1, 10, 40, 50, 100, 100])
    lo, hi = wilson_interval(k, n)
    assert lo.shape == (7,)
    for i in range(7):
        want = wilson_by_roots(k[i], n[i], WILSON_Z)
        assert lo[i] == pytest.approx(want[0], abs=1e-12)
        assert hi[i] == pytest.approx(want[1], abs=1e-12)
    lo2, hi2 = wilson_interval(k, n, z=1.0)
    assert lo2[3] == pytest.approx(wilson_by_roots(17, 40, 1.0)[0], abs=1e-12)
    assert (hi2 - lo2 < hi - lo).all()


def test_wilson_broadcasts_and_handles_n_zero():
    lo, hi = wilson_interval(np.array([[0], [2]]), np.array([2, 4, 8]))
    assert lo.shape == (2, 3)
    assert lo[1, 2] == pytest.approx(wilson_by_roots(2, 8, WILSON_Z)[0])
    assert lo[0, 1] == pytest.approx(0.0, abs=1e-15)
    lo, hi = wilson_interval(np.array([0, 1]), np.array([0, 2]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and not np.isnan(lo[1])
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_wilson_matches_statsmodels_when_installed():
    sm = pytest.importorskip("statsmodels.stats.proportion")
    k, n = np.array([0, 3, 8, 20]), np.array([4, 9, 10, 20])
    np.testing.assert_allclose(wilson_interval(k, n), sm.proportion_confint(k, n, method="wilson"), atol=1e-14)


def test_wilson_bad_inputs():
    with pytest.raises(ValueError, match="successes: expected successes <= n"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="n: expected finite counts >= 0"):
        wilson_interval(0, -1)
    with pytest.raises(ValueError, match="z: expected a finite number"):
        wilson_interval(1, 2, z=0)
    with pytest.raises(ValueError, match="successes: shape"):
        wilson_interval([1, 2], [3, 4, 5])


# --- per-class recall and accuracy -------------------------------------------------------------


def test_per_class_recall_top1():
    true = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "b", "a", "b", "b", "a"]
    out = per_class_recall(true, pred)
    assert out.columns == ["class", "n", "correct", "recall", "lo", "hi", "se"]
    assert out["class"].to_list() == ["a", "b", "c"]
    assert out["n"].to_list() == [3, 2, 1]
    assert out["correct"].to_list() == [2, 2, 0]
    assert out["recall"].to_list() == pytest.approx([2 / 3, 1.0, 0.0])
    lo, hi = wilson_interval(2, 3)
    a = out.row(0, named=True)
    assert (a["lo"], a["hi"]) == pytest.approx((lo, hi))
    assert a["se"] == pytest.approx((hi - lo) / 2 / 1.96)


def test_per_class_recall_topk_and_classes():
    true = np.array([3, 3, 5, 5, 9])
    pred = np.array([[1, 3], [2, 4], [5, 0], [0, 5], [9, 9]])
    out = per_class_recall(true, pred, classes=[5, 3, 7])
    # Class 9 is left out; class 7 has no row.
    assert out["class"].to_list() == [5, 3, 7]
    assert out["n"].to_list() == [2, 2, 0]
    assert out["correct"].to_list() == [2, 1, 0]
    assert out["recall"].to_list() == [1.0, 0.5, None]
    assert out.row(2, named=True)["se"] is None
    # Top-1 is the first column only.
    assert per_class_recall(true, pred[:, 0])["correct"].to_list() == [0, 1, 1]


def test_per_class_recall_bad_inputs():
    with pytest.raises(ValueError, match=r"pred: expected shape \(3,\) or \(3, k>=1\)"):
        per_class_recall(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="pred: expected str labels as in true, got integer"):
        per_class_recall(["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="classes: expected unique labels"):
        per_class_recall(["a", "b"], ["a", "a"], classes=["a", "a"])
    with pytest.raises(ValueError, match="true: expected integer or str labels"):
        per_class_recall(["a", None], ["a", "b"])
    with pytest.raises(ValueError, match="true: expected no nulls"):
        per_class_recall(pl.Series(["a", None]), ["a", "b"])


@pytest.fixture
def recalls():
    return pl.DataFrame({"class": ["a", "b", "c", "d"], "recall": [0.5, 1.0, 0.0, None], "se": [0.1, 0.2, 0.3, None]})


def test_equally_weighted_accuracy(recalls):
    acc, se = weighted_accuracy(recalls)
    assert acc == pytest.approx(0.5)  # d has no recall and is skipped
    assert se == pytest.approx(math.sqrt(0.01 + 0.04 + 0.09) / 3)


def test_laion_weighted_accuracy(recalls):
    # "x" is not in the frame (ignored); "c" is missing from the weights (weight 0).
    acc, se = weighted_accuracy(recalls, {"a": 1.0, "b": 3.0, "d": 2.0, "x": 5.0})
    assert acc == pytest.approx((0.5 * 1 + 1.0 * 3) / 4)
    assert se == pytest.approx(math.sqrt((0.1 * 1) ** 2 + (0.2 * 3) ** 2) / 4)
    # Normalisation: scaling every weight changes nothing.
    assert weighted_accuracy(recalls, {"a": 10.0, "b": 30.0}) == pytest.approx((acc, se))


def test_laion_weights():
    w = laion_weights({"a": 1, "b": 3, "c": 0})
    assert w == {"a": 0.25, "b": 0.75, "c": 0.0}
    assert list(w) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="class_counts: expected a positive total"):
        laion_weights({"a": 0})
    with pytest.raises(ValueError, match=r"class_counts\['a'\]: expected an integer >= 0"):
        laion_weights({"a": -1})
    with pytest.raises(ValueError, match="class_counts: expected a non-empty mapping"):
        laion_weights({})


def test_weighted_accuracy_end_to_end():
    true = ["a"] * 4 + ["b"] * 2
    pred = ["a", "a", "a", "b", "a", "b"]
    frame = per_class_recall(true, pred)
    acc, _ = weighted_accuracy(frame, laion_weights({"a": 4, "b": 2}))
    # Weighted by class size, the accuracy is the plain top-1 accuracy.
    assert acc == pytest.approx(4 / 6)
    assert weighted_accuracy(frame)[0] == pytest.approx((0.75 + 0.5) / 2)


def test_weighted_accuracy_bad_inputs(recalls):
    with pytest.raises(ValueError, match="weights: expected a positive total weight"):
        weighted_accuracy(recalls, {"c": 0.0, "x": 1.0})
    with pytest.raises(ValueError, match=r"weights\['a'\]: expected a finite number"):
        weighted_accuracy(recalls, {"a": -1.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"recall_frame: expected columns .* missing \['se'\]"):
        weighted_accuracy(recalls.drop("se"))
    with pytest.raises(ValueError, match="recall_frame: expected at least one class with a recall"):
        weighted_accuracy(recalls.filter(pl.col("class") == "d"))
    with pytest.raises(ValueError, match="weights: expected a mapping"):
        weighted_accuracy(recalls, [1, 2])


# --- threshold_curve -------------------------------------------------------------------------------


def test_threshold_curve_known_answer():
    sim = np.array([0.6, 0.85, np.nan, 0.9, 0.82, 0.95])
    labels = ["a", "b", "a", "c", "a", "c"]
    out = threshold_curve(sim, labels, [0.5, 0.82, 0.9, 0.99])
    assert out.columns == ["threshold", "rows", "classes"]
    # 0.82 itself does not pass (strict), nor does NaN.
    assert out["rows"].to_list() == [5, 3, 1, 0]
    assert out["classes"].to_list() == [3, 2, 1, 0]
    # Compared in float64: float32(0.82) is just below 0.82 and does not pass either.
    out32 = threshold_curve(np.float32([0.82, 0.83]), [0, 1], [0.82])
    assert out32["rows"].to_list() == [1]


def test_threshold_curve_default_sweep_matches_brute_force(rng):
    sim = rng.uniform(0.4, 1.0, 500)
    sim[::37] = np.nan
    labels = rng.integers(0, 40, 500)
    out = threshold_curve(sim, labels)
    assert out["threshold"].to_list() == pytest.approx(list(np.linspace(0.5, 0.9, 20)))
    assert len(THRESHOLD_SWEEP) == 20
    for t, rows, classes in out.iter_rows():
        keep = sim > t
        assert rows == keep.sum()
        assert classes == np.unique(labels[keep]).size


def test_threshold_curve_bad_inputs():
    with pytest.raises(ValueError, match="similarity: expected a 1-D real array"):
        threshold_curve(np.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"labels: expected shape \(2,\)"):
        threshold_curve([0.5, 0.6], [0])
    with pytest.raises(ValueError, match="thresholds: expected at least one value"):
        threshold_curve([0.5], [0], [])
    with pytest.raises(ValueError, match="similarity: contains inf"):
        threshold_curve([np.inf], [0], [0.5])
