import re

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from threadpoolctl import threadpool_limits

from laionlab import sampling
from laionlab.sampling import (
    STRATEGIES,
    RunningCovariance,
    effective_dimensionality,
    greedy_ed,
    greedy_ed_kmeans,
    kcenter,
    kmeans,
    nearest_samples,
    oracle,
    sample,
    stratified,
)

N, D = 300, 8


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny inputs: BLAS/OpenMP threads only add contention on a busy machine.
    with threadpool_limits(1):
        yield


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, D)) * np.linspace(3.0, 0.5, D)


@pytest.fixture
def Y(X):
    return X @ np.random.default_rng(1).normal(size=(D, 3))


def _kw(name, Y):
    kw = {}
    if name in ("stratified", "greedy_ed", "greedy_ed_kmeans", "margin", "oracle"):
        kw["n_clusters"] = 10
    if name in ("margin", "oracle"):
        kw["batch_size"] = 20
    if name == "oracle":
        kw["Y"] = Y
    return kw


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_returns_n_distinct_indices_deterministically(name, X, Y):
    n = 140  # above margin/oracle's 100 initial samples, so their rounds run
    a = sample(name, X, n, seed=3, **_kw(name, Y))
    assert a.shape == (n,) and np.issubdtype(a.dtype, np.integer)
    assert len(np.unique(a)) == n and a.min() >= 0 and a.max() < N
    assert np.array_equal(a, sample(name, X, n, seed=3, **_kw(name, Y)))
    small = sample(name, X, 5, seed=3, **_kw(name, Y))
    assert len(np.unique(small)) == 5
    full = sample(name, X, N, seed=3, **_kw(name, Y))
    assert np.array_equal(np.sort(full), np.arange(N))


def test_random_depends_on_seed(X):
    assert not np.array_equal(sample("random", X, 50, seed=0), sample("random", X, 50, seed=1))


def _farthest_first(X, start, n):
    dist = cdist(X, X)
    sel = [start]
    for _ in range(n - 1):
        m = dist[:, sel].min(axis=1)
        m[sel] = -np.inf
        sel.append(int(np.argmax(m)))
    return np.array(sel)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_equals_brute_force_farthest_first(seed):
    X = np.random.default_rng(seed).normal(size=(120, 5))
    got = kcenter(X, 40, seed=seed)
    assert np.array_equal(got, _farthest_first(X, int(got[0]), 40))


def test_kcenter_seed_compat_starts_at_zero_and_default_is_random():
    X = np.random.default_rng(4).normal(size=(120, 5))
    compat = kcenter(X, 30, seed_compat=True)
    assert compat[0] == 0 and np.array_equal(compat, _farthest_first(X, 0, 30))
    assert {int(kcenter(X, 1, seed=s)[0]) for s in range(5)} != {0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_kcenter_ties_between_exact_duplicates_go_to_the_lowest_index(seed, dtype):
    """Copies of rows scattered through X (as LAION has): picks equal cdist's farthest-first,
    whose distances tie exactly for equal rows, for a partial and a complete selection."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(40, 16)).astype(dtype)
    X = base[rng.integers(0, 40, 150)]
    distinct = len(np.unique(X, axis=0))
    for n in (distinct - 5, 150):
        got = kcenter(X, n, seed=seed)
        assert np.array_equal(got, _farthest_first(X.astype(np.float64), int(got[0]), n))
    compat = kcenter(X, distinct, seed_compat=True)
    assert np.array_equal(compat, _farthest_first(X.astype(np.float64), 0, distinct))


def test_kcenter_stays_distinct_on_duplicates():
    X = np.repeat(np.eye(3), 4, axis=0)  # 3 distinct points, 4 copies each
    assert len(np.unique(kcenter(X, 12))) == 12


def test_stratified_quotas_with_a_small_cluster(X):
    labels = np.repeat([0, 1, 2, 3, 4], [50, 50, 5, 100, 95])
    sel = stratified(X, 60, labels=labels, seed=0)  # quota 60 // 5 = 12
    counts = np.bincount(labels[sel], minlength=5)
    assert len(np.unique(sel)) == 60
    assert counts[2] == 5  # the small cluster gives all it has
    assert (counts[[0, 1, 3, 4]] >= 12).all()
    assert np.array_equal(np.bincount(labels[sel[:53]], minlength=5), [12, 12, 5, 12, 12])


def test_stratified_fewer_samples_than_clusters(X):
    labels = np.arange(N) % 7
    sel = stratified(X, 4, labels=labels, seed=0)
    assert len(np.unique(labels[sel])) == 4


def test_stratified_exact_quotas_ignore_label_values(X):
    labels = np.where(np.arange(N) < 150, "a", "b")
    sel = stratified(X, 20, labels=labels, seed=0)
    assert (labels[sel] == "a").sum() == 10


def test_kmeans_picks_the_centre_of_each_blob():
    rng = np.random.default_rng(0)
    centres = 20.0 * np.eye(5, D)
    blobs, centre_idx = [], []
    for c in centres:  # one point at the centre, 59 on a unit sphere around it
        u = rng.normal(size=(59, D))
        centre_idx.append(len(blobs) * 60)
        blobs.append(np.vstack([c, c + u / np.linalg.norm(u, axis=1, keepdims=True)]))
    Xb = np.vstack(blobs)
    assert sorted(kmeans(Xb, 5, seed=0).tolist()) == centre_idx


def test_nearest_samples_gives_shared_nearest_to_the_closer_centroid():
    Xl = np.array([[0.0], [1.0], [10.0]])
    for k in (1, 8):  # k=1 forces the full-scan fallback
        assert nearest_samples(Xl, np.array([[0.2], [0.1]]), n_neighbors=k).tolist() == [1, 0]
        assert nearest_samples(Xl, np.array([[0.0], [0.0], [0.0]]), n_neighbors=k).tolist() == [0, 1, 2]


def test_greedy_ed_beats_random_on_anisotropic_data():
    rng = np.random.default_rng(0)
    Xa = rng.normal(size=(N, D)) * np.array([10.0, 4.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1])
    rand = np.mean([effective_dimensionality(Xa[sample("random", Xa, 30, seed=s)]) for s in range(5)])
    for f in (greedy_ed, greedy_ed_kmeans):
        ed = effective_dimensionality(Xa[f(Xa, 30, n_clusters=10, seed=0)])
        assert ed > 1.3 * rand


def test_greedy_ed_drops_candidates_near_the_selection():
    base = np.random.default_rng(0).normal(size=(150, D))
    Xd = np.vstack([base, base + 1e-3])  # every point has a twin at distance < 0.1
    sel = greedy_ed(Xd, 60, n_clusters=10, seed=0)
    assert pdist(Xd[sel]).min() > 0.1


def test_greedy_ed_kmeans_starts_from_nearest_member_of_each_cluster(X):
    labels = np.arange(N) % 6
    sel = greedy_ed_kmeans(X, 20, labels=labels, seed=0)
    expect = []
    for k in range(6):
        m = np.flatnonzero(labels == k)
        expect.append(m[np.argmin(np.linalg.norm(X[m] - X[m].mean(0), axis=1))])
    assert sel[:6].tolist() == expect


def test_effective_dimensionality_known_answers():
    rng = np.random.default_rng(0)
    assert effective_dimensionality(rng.normal(size=(20000, D))) == pytest.approx(D, rel=0.02)
    rank1 = rng.normal(size=(100, 1)) * rng.normal(size=(1, D)) + 5.0
    assert effective_dimensionality(rank1) == pytest.approx(1.0)
    assert effective_dimensionality(np.ones((4, 3))) == 0.0
    Z = rng.normal(size=(5, 20))  # fewer rows than columns: Gram-matrix path
    lam = np.linalg.eigvalsh(np.cov(Z.T))
    assert effective_dimensionality(Z) == pytest.approx(lam.sum() ** 2 / (lam**2).sum())


def test_rank1_covariance_update_equals_refit(X):
    rc = RunningCovariance(D)
    for i in range(60):
        rc.add(X[i])
        if i >= 1:
            np.testing.assert_allclose(rc.cov, np.cov(X[: i + 1].T), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rc.mean, X[:60].mean(0))
    assert rc.ed == pytest.approx(effective_dimensionality(X[:60]))
    cand = X[100:110]
    refit = [effective_dimensionality(np.vstack([X[:60], c])) for c in cand]
    np.testing.assert_allclose(rc.ed_if_added(cand), refit, rtol=1e-10)


def test_margin_defaults_to_features_as_targets(X):
    kw = dict(n_clusters=10, batch_size=20, seed=0)
    assert np.array_equal(sampling.margin(X, 130, **kw), sampling.margin(X, 130, X, **kw))


def test_oracle_adds_largest_errors_first(X, Y):
    Yn = Y.copy()
    Yn[-5:] += 100.0  # targets no linear model fits
    sel = oracle(X, 105, Yn, labels=np.zeros(N), per_cluster=N, batch_size=5, seed=0)
    missed = set(range(N - 5, N)) - set(sel[:100].tolist())  # outliers not among the 100 random
    assert missed and missed <= set(sel[100:].tolist())


BAD = [
    ("random", lambda X: dict(X=X, n=0), "n"),
    ("random", lambda X: dict(X=X, n=N + 1), "n"),
    ("random", lambda X: dict(X=np.where(np.arange(N)[:, None] == 3, np.nan, X), n=5), "X"),
    ("random", lambda X: dict(X=np.empty((0, D)), n=1), "X"),
    ("random", lambda X: dict(X=X[:, 0], n=1), "X"),
    ("stratified", lambda X: dict(X=X, n=5, labels=np.zeros(N - 1)), "labels"),
    ("stratified", lambda X: dict(X=X, n=5, n_clusters=N + 1), "n_clusters"),
    ("kcenter", lambda X: dict(X=X, n=1.5), "n"),
    ("greedy_ed", lambda X: dict(X=X, n=5, n_clusters=N + 1), "n_clusters"),
    ("greedy_ed", lambda X: dict(X=X, n=5, min_distance=-1), "min_distance"),
    ("greedy_ed_kmeans", lambda X: dict(X=X, n=5, n_clusters=10, per_cluster=0), "per_cluster"),
    ("margin", lambda X: dict(X=X, n=5, Y=np.zeros((N - 1, 2)), n_clusters=5), "Y"),
    ("oracle", lambda X: dict(X=X, n=5, Y=None, n_clusters=5), "Y"),
    ("oracle", lambda X: dict(X=X, n=5, Y=np.full((N, 2), np.nan), n_clusters=5), "Y"),
]


@pytest.mark.parametrize("name,args,arg", BAD)
def test_bad_inputs_raise_value_error_naming_the_argument(name, args, arg, X):
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        STRATEGIES[name](**args(X))


def test_effective_dimensionality_needs_two_rows():
    with pytest.raises(ValueError, match=r"\bX\b"):
        effective_dimensionality(np.ones((1, 3)))


def test_unknown_strategy_lists_known_names(X):
    with pytest.raises(ValueError, match=re.escape("kcenter")) as e:
        sample("dpp", X, 5)
    assert all(name in str(e.value) for name in STRATEGIES)
