"""Tests for laionlab.coverage (seed 000 coverage metrics + Naeem et al. 2020 PRDC)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import genextreme
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from laionlab.coverage import (
    ClusterCoverage,
    cluster_coverage,
    coverage_overlap,
    knn_radii,
    nearest_centroid,
    pca_coverage,
    pca_coverage_baseline,
    prdc,
    random_subset_baseline,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def axis_setup():
    """4 centroids on the axes of R²; 3 points near c0, 4 near c2, 2 near c1, none near c3."""
    centroids = np.array([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0], [0.0, -10.0]])
    ref = np.array(
        [
            [9, 1],
            [11, 0],
            [10, -1],  # c0
            [-9, 0],
            [-11, 1],  # c1
            [0, 9],
            [1, 11],
            [-1, 10],
            [0, 12],
        ],  # c2
        dtype=float,
    )
    return ref, centroids


def _low_rank(rng, n, d=12, rank=4, basis=None, shift=0.0, noise=0.1):
    basis = rng.normal(size=(rank, d)) if basis is None else basis
    return rng.normal(size=(n, rank)) @ basis + noise * rng.normal(size=(n, d)) + shift


# --- cluster occupancy ---------------------------------------------------------------------


def test_cluster_coverage_hand_counts(axis_setup):
    ref, centroids = axis_setup
    cov = cluster_coverage(ref, centroids)
    assert isinstance(cov, ClusterCoverage)
    np.testing.assert_array_equal(cov.counts, [3, 2, 4, 0])
    np.testing.assert_array_equal(cov.covered, [True, False, True, False])
    assert cov.share == 0.5 and cov.min_count == 3


@pytest.mark.parametrize("min_count, share", [(1, 0.75), (2, 0.75), (3, 0.5), (4, 0.25), (5, 0.0)])
def test_cluster_coverage_min_count_edges(axis_setup, min_count, share):
    ref, centroids = axis_setup
    assert cluster_coverage(ref, centroids, min_count=min_count).share == share


def test_nearest_centroid_ties_go_to_lowest_index_like_cdist(axis_setup):
    _, centroids = axis_setup
    x = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, -5.0], [5.0, -5.0]])
    got = nearest_centroid(x, centroids)
    np.testing.assert_array_equal(got, [0, 0, 1, 0])
    np.testing.assert_array_equal(got, cdist(x, centroids).argmin(1))


def test_nearest_centroid_matches_cdist_and_blocking(rng):
    x = rng.normal(size=(700, 16)) * 3 + 1  # raw, unnormalised
    centroids = rng.normal(size=(37, 16)) * 3
    expected = cdist(x, centroids).argmin(1)
    for block in (None, 1, 7, 64, 10_000):
        np.testing.assert_array_equal(nearest_centroid(x, centroids, block=block), expected)
    cov = cluster_coverage(x.astype(np.float32), centroids.astype(np.float32), min_count=20, block=13)
    counts = np.bincount(expected, minlength=37)
    np.testing.assert_array_equal(cov.counts, counts)
    assert cov.share == pytest.approx(np.mean(counts >= 20))


def test_coverage_overlap_two_hand_masks():
    a = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    b = np.array([0, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    rows = {r["region"]: (r["clusters"], r["percent"]) for r in coverage_overlap({"A": a, "B": b})}
    assert rows == {
        "A": (3, 30.0),
        "B": (4, 40.0),
        "A only": (1, 10.0),
        "B only": (2, 20.0),
        "both": (2, 20.0),
        "union": (5, 50.0),
        "neither": (5, 50.0),
    }


def test_coverage_overlap_reproduces_seed_table_and_accepts_cluster_coverage():
    # 5,443 clusters split as in the seed notebook: both 706, THINGS only 717, NSD only 1308.
    k = 5443
    things = np.zeros(k, bool)
    nsd = np.zeros(k, bool)
    things[: 706 + 717] = True
    nsd[:706] = True
    nsd[706 + 717 : 706 + 717 + 1308] = True
    nsd_cov = ClusterCoverage(counts=nsd.astype(np.int64) * 3, covered=nsd, share=nsd.mean(), min_count=3)
    df = pl.DataFrame(coverage_overlap({"THINGS": things, "NSD": nsd_cov}))
    pct = dict(zip(df["region"], df["percent"].round(2)))
    assert pct == {
        "THINGS": 26.14,
        "NSD": 37.0,
        "THINGS only": 13.17,
        "NSD only": 24.03,
        "both": 12.97,
        "union": 50.17,
        "neither": 49.83,
    }


def test_coverage_overlap_three_datasets():
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 1, 1, 0, 1, 0], bool)
    c = np.array([0, 0, 0, 1, 1, 0], bool)
    rows = {r["region"]: r["clusters"] for r in coverage_overlap({"a": a, "b": b, "c": c})}
    assert rows == {"a": 3, "b": 3, "c": 2, "a only": 1, "b only": 1, "c only": 1, "all": 1, "union": 5, "neither": 1}


# --- PCA coverage --------------------------------------------------------------------------


def _ref_pca_coverage(covering, covered, n_components, q=0.95):
    """Seed's test_pca_coverage after the joint scaler, written with numpy SVD."""
    sc = StandardScaler().fit(np.vstack([covered, covering]))
    a, b = sc.transform(covering), sc.transform(covered)
    mu = a.mean(0)
    vt = np.linalg.svd(a - mu, full_matrices=False)[2][:n_components]

    def err(x):
        return np.mean((x - (mu + (x - mu) @ vt.T @ vt)) ** 2, axis=1)

    e_a, e_b = err(a), err(b)
    thr = genextreme.ppf(q, *genextreme.fit(e_a))
    return 100 * np.mean(e_b <= thr), e_b, thr


def test_pca_coverage_matches_direct_computation(rng):
    basis = rng.normal(size=(4, 12))
    covering = _low_rank(rng, 400, basis=basis)
    covered = _low_rank(rng, 300, basis=basis, noise=0.15)
    expected, e_b, thr = _ref_pca_coverage(covering, covered, n_components=4, q=0.9)
    got = pca_coverage(covering, covered, n_components=4, q=0.9)
    # the numpy and sklearn reconstructions differ by rounding; allow one sample to flip
    assert abs(got - expected) <= 100 / len(covered) + 1e-9
    assert 5 < got < 95  # a non-trivial split, so the comparison means something


def test_pca_coverage_variance_fraction_matches_sklearn(rng):
    basis = rng.normal(size=(4, 12))
    covering, covered = _low_rank(rng, 300, basis=basis), _low_rank(rng, 200, basis=basis, noise=0.2)
    sc = StandardScaler().fit(np.vstack([covered, covering]))
    a, b = sc.transform(covering), sc.transform(covered)
    pca = PCA(0.8).fit(a)
    err = lambda x: np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)  # noqa: E731
    thr = genextreme.ppf(0.95, *genextreme.fit(err(a)))
    assert pca_coverage(covering, covered, n_components=0.8) == pytest.approx(100 * np.mean(err(b) <= thr))


def test_pca_coverage_properties(rng):
    basis = rng.normal(size=(4, 12))
    pool = _low_rank(rng, 1500, basis=basis)
    assert pca_coverage(pool[:500], pool) > 85  # same distribution: ~q of it within threshold
    far = _low_rank(rng, 300, shift=6.0)  # another subspace, shifted
    assert pca_coverage(pool[:500], far) < 5


def test_pca_coverage_max_fit_samples(rng):
    basis = rng.normal(size=(4, 12))
    covering, covered = _low_rank(rng, 3000, basis=basis), _low_rank(rng, 500, basis=basis)
    full = pca_coverage(covering, covered, max_fit_samples=None)
    assert pca_coverage(covering, covered, max_fit_samples=5000) == full  # no subsample needed
    sub = pca_coverage(covering, covered, max_fit_samples=1000, random_state=1)
    assert sub == pca_coverage(covering, covered, max_fit_samples=1000, random_state=1)
    assert abs(sub - full) < 5


def test_pca_coverage_seed_compat_is_swapped_all_components(rng):
    covering, covered = _low_rank(rng, 200, d=8), _low_rank(rng, 300, d=8)
    got = pca_coverage(covering, covered, seed_compat=True, max_fit_samples=None)
    # what calculate_coverage.py does: joint scaler on vstack(covered, covering), then
    # test_pca_coverage(covered, covering, n_components=None)
    sc = StandardScaler().fit(np.vstack([covered, covering]))
    a, b = sc.transform(covered), sc.transform(covering)
    pca = PCA(None).fit(a)
    err = lambda x: np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)  # noqa: E731
    assert err(a).max() < 1e-20  # the degenerate, exact reconstruction
    thr = genextreme.ppf(0.95, *genextreme.fit(err(a)))
    assert got == 100 * np.mean(err(b) <= thr)
    # the same as calling the documented semantics with the sets swapped and no truncation,
    # as long as the joint scaler sees the same rows (order only changes rounding)
    sym = np.vstack([covering, covered])
    assert pca_coverage(sym, sym, seed_compat=True) == pca_coverage(sym, sym, n_components=None)


def test_baselines(rng):
    pool = _low_rank(rng, 800)
    vals = random_subset_baseline(pool, lambda s: s[:, 0].mean(), size=100, seeds=range(42, 45))
    expected = [pool[np.sort(np.random.default_rng(s).choice(800, 100, replace=False)), 0].mean() for s in (42, 43, 44)]
    np.testing.assert_allclose(vals, expected)
    mean, sd = pca_coverage_baseline(pool, size=200, seeds=range(42, 46), n_components=4)
    per_seed = [
        pca_coverage(pool[np.sort(np.random.default_rng(s).choice(800, 200, replace=False))], pool, n_components=4)
        for s in range(42, 46)
    ]
    assert mean == pytest.approx(np.mean(per_seed)) and sd == pytest.approx(np.std(per_seed, ddof=1))
    assert mean > 85


# --- PRDC ----------------------------------------------------------------------------------


def _ref_prdc(real, fake, k):
    """The authors' compute_prdc, dense."""

    def radii(x):
        return np.sort(cdist(x, x), axis=1)[:, k]

    r, s, d = radii(real), radii(fake), cdist(real, fake)
    return {
        "precision": (d < r[:, None]).any(0).mean(),
        "recall": (d < s[None, :]).any(1).mean(),
        "density": (d < r[:, None]).sum(0).mean() / k,
        "coverage": (d.min(1) < r).mean(),
    }


def test_prdc_hand_example():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    np.testing.assert_allclose(knn_radii(real, k=1), [1, 1, 1, 1])
    assert prdc(real, fake, k=1) == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5})


def test_prdc_identical_and_disjoint(rng):
    x = rng.normal(size=(150, 6))
    same = prdc(x, x.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(x, rng.normal(size=(120, 6)) + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


@pytest.mark.parametrize("block", [None, 1, 17])
def test_prdc_matches_dense_reference(rng, block):
    real = rng.normal(size=(160, 8))
    fake = rng.normal(size=(110, 8)) * 1.2 + 0.4
    got = prdc(real, fake, k=5, block=block)
    ref = _ref_prdc(real, fake, 5)
    assert got == pytest.approx(ref, abs=1e-12)
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1
    np.testing.assert_allclose(knn_radii(real, 5, block=block), np.sort(cdist(real, real), 1)[:, 5], rtol=1e-9)


# --- validation ----------------------------------------------------------------------------

_X = np.random.default_rng(1).normal(size=(20, 4))
_NAN = _X.copy()
_NAN[3, 2] = np.nan


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: cluster_coverage(np.empty((0, 4)), _X), "ref_emb"),
        (lambda: cluster_coverage(_X, np.empty((0, 4))), "centroids"),
        (lambda: cluster_coverage(_X[:, :3], _X), "ref_emb"),
        (lambda: cluster_coverage(_X, _X, min_count=0), "min_count"),
        (lambda: cluster_coverage(_NAN, _X), "ref_emb"),
        (lambda: cluster_coverage(_X[0], _X), "ref_emb"),
        (lambda: nearest_centroid(_X, _NAN), "centroids"),
        (lambda: nearest_centroid(_X, _X, block=0), "block"),
        (lambda: coverage_overlap({"A": np.ones(3, bool)}), "covered"),
        (lambda: coverage_overlap({"A": np.ones(3, bool), "B": np.ones(4, bool)}), "covered"),
        (lambda: coverage_overlap({"A": np.ones(3, bool), "B": np.array([0, 2, 1])}), "covered"),
        (lambda: pca_coverage(_X, _X, q=0.0), "q"),
        (lambda: pca_coverage(_X, _X, q=1.0), "q"),
        (lambda: pca_coverage(_X, _X, q=1.5), "q"),
        (lambda: pca_coverage(_X, _X, n_components=0), "n_components"),
        (lambda: pca_coverage(_X, _X, n_components=5), "n_components"),
        (lambda: pca_coverage(_X, _X, n_components=1.0), "n_components"),
        (lambda: pca_coverage(_X, _X, n_components=-0.5), "n_components"),
        (lambda: pca_coverage(_X, _X, n_components="mle"), "n_components"),
        (lambda: pca_coverage(_NAN, _X), "covering"),
        (lambda: pca_coverage(_X, _NAN), "covered"),
        (lambda: pca_coverage(np.empty((0, 4)), _X), "covering"),
        (lambda: pca_coverage(_X, np.empty((0, 4))), "covered"),
        (lambda: pca_coverage(_X, _X[:, :2]), "covered"),
        (lambda: pca_coverage(_X, _X, max_fit_samples=0), "max_fit_samples"),
        (lambda: random_subset_baseline(_X, np.mean, size=21), "size"),
        (lambda: random_subset_baseline(_X, np.mean, size=0), "size"),
        (lambda: random_subset_baseline(_X, np.mean, size=5, seeds=[]), "seeds"),
        (lambda: pca_coverage_baseline(_X, _X[:, :2], size=5), "covered"),
        (lambda: prdc(_X, _X, k=20), "k"),
        (lambda: prdc(_X, _X[:5], k=5), "k"),
        (lambda: prdc(_X, _X, k=0), "k"),
        (lambda: prdc(_X, _X[:, :3]), "fake_emb"),
        (lambda: prdc(np.empty((0, 4)), _X), "real_emb"),
        (lambda: prdc(_X, _NAN), "fake_emb"),
        (lambda: knn_radii(_X[:3], k=3), "k"),
    ],
)
def test_bad_inputs_name_the_argument(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


def test_coverage_report_matches_the_metrics_it_combines():
    from laionlab.coverage import coverage_report

    rng = np.random.default_rng(5)
    natural = rng.normal(size=(300, 6))
    laion = np.vstack([natural, rng.normal(5, 1, size=(100, 6))])
    centroids = natural[:8]
    broad, narrow = natural[rng.choice(300, 80, replace=False)], natural[:1] + rng.normal(0, 0.01, size=(40, 6))
    report = coverage_report(
        {"broad": broad, "narrow": narrow}, natural, laion, centroids, min_count=1, baseline_size=50, baseline_seeds=2
    )
    table = report.table
    assert table["covering"].to_list() == ["broad", "narrow", "laion_natural[50]"]
    assert table["cluster_share"][0] == cluster_coverage(broad, centroids, min_count=1).share
    assert table["cluster_share"][1] == 1 / 8  # every narrow image sits on centroid 0
    assert table["pca_coverage"][0] == pytest.approx(pca_coverage(broad, natural))
    assert table["recall"][0] == pytest.approx(prdc(natural, broad, k=5)["recall"])
    assert table["recall"][0] > table["recall"][1]
    assert report.baseline_size == 50 and report.overlap["region"].to_list()[-1] == "neither"
    with pytest.raises(ValueError, match="references"):
        coverage_report({}, natural, laion, centroids)
