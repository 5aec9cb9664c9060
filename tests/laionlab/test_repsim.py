"""Tests of laionlab.repsim: seed 002's (Ciernik et al., ICML 2025) linear/RBF CKA, RSA,
model × model similarity matrices, their consistency, and the linear probe."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group, pearsonr, spearmanr
from sklearn.model_selection import train_test_split

from benchmarks._reference import tv_centering, tv_cka
from laionlab.repsim import (
    DEFAULT_CS,
    SEED_RBF_SIGMA,
    compute_rdm,
    consistency,
    l2_normalise,
    linear_cka,
    linear_probe,
    rbf_cka,
    rsa,
    similarity_matrix,
    stratified_split,
)
from laionlab.repsim import similarity as sim_mod

# --- references: thingsvision's CKANumPy in the Gram form (tv_cka, tv_centering, shared with
# benchmarks/cka.py) and Song et al.'s unbiased HSIC ------------------------------------------


def song_hsic_u(K, L):
    """Song et al. (2012) unbiased HSIC, straight from the formula."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)
    ) / (n * (n - 3))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def related(rng, n, d1, d2, offset=3.0):
    """X with a non-zero mean, Y sharing a low-dimensional signal with X."""
    X = rng.normal(size=(n, d1)) + offset
    Y = X[:, :2] @ rng.normal(size=(2, d2)) + 0.7 * rng.normal(size=(n, d2)) - offset
    return X, Y


# --- feature normalisation (the seed's Featurizer(normalize=True)) --------------------------


def test_l2_normalise_unit_rows_same_directions(rng):
    X = (rng.normal(size=(50, 12)) * rng.uniform(0.01, 100, size=(50, 1))).astype(np.float32)
    X[7] = 0.0
    out = l2_normalise(X)
    assert out.dtype == np.float32 and out is not X and X[0, 0] != out[0, 0]
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    np.testing.assert_allclose(np.delete(norms, 7), 1.0, atol=1e-6)
    assert not out[7].any()  # a zero row stays zero, as torch's F.normalize
    scale = np.linalg.norm(X.astype(np.float64), axis=1)
    np.testing.assert_allclose(out[:7] * scale[:7, None], X[:7], rtol=1e-5)
    inplace = X.copy()
    assert l2_normalise(inplace, copy=False) is inplace
    np.testing.assert_array_equal(inplace, out)
    ints = l2_normalise(np.array([[3, 4], [0, 2]]))
    assert ints.dtype == np.float64 and np.allclose(ints, [[0.6, 0.8], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"features of 'm': contains NaN"):
        l2_normalise(np.array([[1.0, np.nan]]), name="features of 'm'")


def test_normalisation_changes_linear_cka_but_not_scale_only(rng):
    """Why the seed's normalisation matters: per-row scales change linear CKA (they are
    not an isotropic scaling), a global scale does not."""
    X, Y = related(rng, 300, 10, 8)
    Y = Y * rng.uniform(0.2, 5.0, size=(300, 1))
    assert abs(linear_cka(X, Y) - linear_cka(l2_normalise(X), l2_normalise(Y))) > 0.01
    assert linear_cka(l2_normalise(X), l2_normalise(Y)) == pytest.approx(
        linear_cka(l2_normalise(3 * X), l2_normalise(Y)), abs=1e-6
    )


# --- linear CKA ------------------------------------------------------------------------------


def test_thingsvision_u_centring_is_n_n_minus_3_times_song_hsic(rng):
    for n in (5, 17, 60):
        X, Y = related(rng, n, 6, 4)
        K, L = X @ X.T, Y @ Y.T
        tv = np.sum(tv_centering(K.copy(), True) * tv_centering(L.copy(), True))
        assert tv == pytest.approx(n * (n - 3) * song_hsic_u(K, L), rel=1e-9)


@pytest.mark.parametrize("n", [50, 123, 200])
@pytest.mark.parametrize("d1,d2", [(8, 8), (32, 5), (300, 40)])
@pytest.mark.parametrize("unbiased", [True, False])
def test_linear_cka_equals_gram_form(rng, n, d1, d2, unbiased):
    X, Y = related(rng, n, d1, d2)
    assert abs(linear_cka(X, Y, unbiased) - tv_cka(X, Y, "linear", unbiased)) < 1e-8


def test_linear_cka_small_n_and_float32(rng):
    X, Y = related(rng, 4, 3, 7)
    assert linear_cka(X, Y) == pytest.approx(tv_cka(X, Y, "linear", True), abs=1e-8)
    X, Y = related(rng, 300, 64, 32)
    assert linear_cka(X.astype(np.float32), Y.astype(np.float32)) == pytest.approx(
        tv_cka(X.astype(np.float32), Y.astype(np.float32)), abs=1e-8
    )


def test_linear_cka_blocked_path_equals_copy(rng, monkeypatch):
    X, Y = related(rng, 101, 20, 9)
    want = [linear_cka(X, Y, u) for u in (True, False)]
    monkeypatch.setattr(sim_mod, "LINEAR_COPY_BYTES", 0)
    got = [linear_cka(X, Y, u, block_rows=7) for u in (True, False)]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("unbiased", [True, False])
def test_linear_cka_invariances(rng, unbiased):
    X = rng.normal(size=(150, 12))
    Q = ortho_group.rvs(12, random_state=1)
    assert linear_cka(X, 3.5 * X @ Q + 10.0, unbiased) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(X, -0.01 * X, unbiased) == pytest.approx(1.0, abs=1e-10)
    # Symmetric, and a wider copy (zero-padded) changes nothing.
    Y = rng.normal(size=(150, 5))
    assert linear_cka(X, Y, unbiased) == pytest.approx(linear_cka(Y, X, unbiased), abs=1e-12)
    padded = np.hstack([X, np.zeros((150, 4))])
    assert linear_cka(padded, Y, unbiased) == pytest.approx(linear_cka(X, Y, unbiased), abs=1e-12)


def test_linear_cka_independent_features_near_zero(rng):
    X, Y = rng.normal(size=(2000, 64)), rng.normal(size=(2000, 64))
    unbiased, biased = linear_cka(X, Y, True), linear_cka(X, Y, False)
    assert abs(unbiased) < 0.05
    assert biased > unbiased  # the biased estimator's positive bias (~ d/n)


# --- RBF CKA ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [40, 97, 150])
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("sigma_frac", [0.4, 1.0, 2.5])
def test_rbf_cka_median_rule_equals_gram_form(rng, n, unbiased, sigma_frac):
    X, Y = related(rng, n, 10, 6)
    got = rbf_cka(X, Y, sigma_frac=sigma_frac, unbiased=unbiased)
    assert abs(got - tv_cka(X, Y, "rbf", unbiased, sigma_frac=sigma_frac)) < 1e-8


@pytest.mark.parametrize("unbiased", [True, False])
def test_rbf_cka_absolute_sigma_equals_thingsvision(rng, unbiased):
    # The seed: sigma = 0.4 (also 0.2 .. 0.8) on L2-normalised features.
    X, Y = related(rng, 120, 16, 8)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    for sigma in (0.2, SEED_RBF_SIGMA, 0.8):
        got = rbf_cka(X, Y, unbiased=unbiased, sigma=sigma)
        assert abs(got - tv_cka(X, Y, "rbf", unbiased, sigma=sigma)) < 1e-8


def test_rbf_cka_invariances(rng):
    X = rng.normal(size=(80, 7))
    Q = ortho_group.rvs(7, random_state=2)
    # The median width scales with the data: orthogonal maps, scaling and shifts give 1.
    assert rbf_cka(X, 4.0 * X @ Q - 2.0) == pytest.approx(1.0, abs=1e-10)
    # An absolute width is only rotation/translation invariant.
    assert rbf_cka(X, X @ Q + 1.0, sigma=1.5) == pytest.approx(1.0, abs=1e-10)
    assert rbf_cka(X, 4.0 * X, sigma=1.5) < 0.99


def test_rbf_cka_float32_close_to_float64(rng):
    X, Y = related(rng, 200, 32, 16)
    got = rbf_cka(X.astype(np.float32), Y.astype(np.float32), sigma_frac=0.8)
    assert got == pytest.approx(tv_cka(X, Y, "rbf", True, sigma_frac=0.8), abs=1e-6)


# --- RSA -------------------------------------------------------------------------------------


def explicit_rdm(X, method):
    if method == "correlation":
        return 1.0 - np.clip(np.corrcoef(X), -1, 1)
    if method == "cosine":
        return cdist(X, X, "cosine")
    return cdist(X, X, "euclidean")


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
@pytest.mark.parametrize("corr", ["spearman", "pearson"])
def test_rsa_equals_scipy_on_explicit_rdms(rng, method, corr):
    X, Y = related(rng, 70, 12, 9, offset=0.5)
    Rx, Ry = explicit_rdm(X, method), explicit_rdm(Y, method)
    np.testing.assert_allclose(compute_rdm(X, method), Rx, atol=1e-10)
    iu = np.triu_indices(70, k=1)
    want = (spearmanr if corr == "spearman" else pearsonr)(Rx[iu], Ry[iu])[0]
    assert rsa(X, Y, rdm=method, corr=corr) == pytest.approx(want, abs=1e-10)


def test_rsa_defaults_and_identity(rng):
    X, Y = related(rng, 40, 5, 5)
    iu = np.triu_indices(40, k=1)
    want = spearmanr(explicit_rdm(X, "correlation")[iu], explicit_rdm(Y, "correlation")[iu])[0]
    assert rsa(X, Y) == pytest.approx(want, abs=1e-10)
    assert rsa(X, X) == pytest.approx(1.0, abs=1e-12)
    # Ties (duplicate stimuli) get average ranks, as scipy's.
    Xd = np.vstack([X, X[:3]])
    Yd = np.vstack([Y, Y[:3]])
    iu = np.triu_indices(43, k=1)
    want = spearmanr(explicit_rdm(Xd, "euclidean")[iu], explicit_rdm(Yd, "euclidean")[iu])[0]
    assert rsa(Xd, Yd, rdm="euclidean") == pytest.approx(want, abs=1e-10)


# --- similarity_matrix -----------------------------------------------------------------------


@pytest.fixture
def models(rng):
    base = rng.normal(size=(60, 6))
    return {
        "b_model": base @ rng.normal(size=(6, 10)) + 0.3 * rng.normal(size=(60, 10)),
        "a_model": base @ rng.normal(size=(6, 4)) + rng.normal(size=(60, 4)),
        "c_model": rng.normal(size=(60, 8)),
        "d_model": np.tanh(base @ rng.normal(size=(6, 12))),
    }


@pytest.mark.parametrize(
    "metric,kw,pair",
    [
        ("linear_cka", {}, lambda X, Y: linear_cka(X, Y)),
        ("linear_cka", {"unbiased": False}, lambda X, Y: linear_cka(X, Y, False)),
        ("rbf_cka", {"sigma_frac": 0.5}, lambda X, Y: rbf_cka(X, Y, sigma_frac=0.5)),
        ("rbf_cka", {"sigma": 2.0, "unbiased": False}, lambda X, Y: rbf_cka(X, Y, unbiased=False, sigma=2.0)),
        ("rsa", {}, lambda X, Y: rsa(X, Y)),
        ("rsa", {"rdm": "cosine", "corr": "pearson"}, lambda X, Y: rsa(X, Y, "cosine", "pearson")),
    ],
)
def test_similarity_matrix_symmetric_unit_diagonal(models, metric, kw, pair):
    names, M = similarity_matrix(models, metric, **kw)
    assert names == list(models)
    assert M.shape == (4, 4) and M.dtype == np.float64
    np.testing.assert_array_equal(M, M.T)
    np.testing.assert_array_equal(np.diag(M), 1.0)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                assert M[i, j] == pytest.approx(pair(models[a], models[b]), abs=1e-10)
    # Without the per-model cache the values are the same.
    _, M0 = similarity_matrix(models, metric, cache_bytes=0, **kw)
    np.testing.assert_allclose(M0, M, atol=1e-12)


def test_similarity_matrix_bad_inputs(models):
    bad = dict(models, e_model=np.zeros((59, 3)) + np.arange(3))
    with pytest.raises(ValueError, match=r"'e_model' has n=59 .* 'b_model' has n=60"):
        similarity_matrix(bad, "linear_cka")
    nan = dict(models)
    nan["c_model"] = nan["c_model"].copy()
    nan["c_model"][3, 2] = np.nan
    with pytest.raises(ValueError, match=r"features\['c_model'\]: contains NaN or inf"):
        similarity_matrix(nan, "rsa")
    with pytest.raises(ValueError, match="metric"):
        similarity_matrix(models, "cca")
    with pytest.raises(ValueError, match="sigma: not an option of metric 'linear_cka'"):
        similarity_matrix(models, "linear_cka", sigma=0.2)
    with pytest.raises(ValueError, match="features"):
        similarity_matrix({}, "rsa")
    small = {k: v[:3] for k, v in models.items()}
    with pytest.raises(ValueError, match=r"features: model 'b_model' has n=3 samples, this needs n >= 4"):
        similarity_matrix(small, "rbf_cka")
    const = dict(models, c_model=np.ones((60, 8)))
    with pytest.raises(ValueError, match=r"features\['c_model'\]: all rows are identical"):
        similarity_matrix(const, "linear_cka")


# --- consistency -----------------------------------------------------------------------------


def sym_from_upper(m, values):
    M = np.eye(m)
    M[np.triu_indices(m, k=1)] = values
    return np.triu(M, 1) + np.triu(M, 1).T + np.eye(m)


def test_consistency_identical_and_reversed():
    m = 6
    k = m * (m - 1) // 2
    A = sym_from_upper(m, np.linspace(0.1, 0.9, k))
    out = consistency(A, A)
    assert out == {"pearson": pytest.approx(1.0), "spearman": pytest.approx(1.0), "n_pairs": k}
    B = sym_from_upper(m, np.linspace(0.9, 0.1, k))  # the same pair values in reverse order
    out = consistency(A, B)
    assert out["pearson"] == pytest.approx(-1.0) and out["spearman"] == pytest.approx(-1.0)


def test_consistency_equals_scipy_on_upper_triangle(rng):
    m = 7
    iu = np.triu_indices(m, k=1)
    a = rng.uniform(size=iu[0].size)
    b = a**3 + 0.2 * rng.uniform(size=a.size)
    A, B = sym_from_upper(m, a), sym_from_upper(m, b)
    out = consistency(A, B)
    assert out["pearson"] == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert out["spearman"] == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
    # Reordering the models of B (not of A) changes which pairs line up: a known value.
    perm = np.arange(m)[::-1]
    Bp = B[np.ix_(perm, perm)]
    assert consistency(A, Bp)["spearman"] == pytest.approx(spearmanr(a, Bp[iu])[0], abs=1e-12)


def test_consistency_bad_inputs(rng):
    A = sym_from_upper(4, rng.uniform(size=6))
    with pytest.raises(ValueError, match="matrix_b: expected shape"):
        consistency(A, sym_from_upper(5, rng.uniform(size=10)))
    with pytest.raises(ValueError, match="matrix_a: expected a symmetric"):
        consistency(A + np.triu(np.ones((4, 4)), 1), A)
    with pytest.raises(ValueError, match="matrix_a: expected at least 3"):
        consistency(np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="matrix_b: the matrix is constant off the diagonal"):
        consistency(A, np.ones((4, 4)))
    with pytest.raises(ValueError, match="matrix_a: expected a square"):
        consistency(np.ones((3, 4)), np.ones((3, 4)))


# --- probes ----------------------------------------------------------------------------------


def blobs(rng, n_per_class, d=20, k=3, spread=0.5):
    centres = rng.normal(size=(k, d)) * 3.0
    X = np.vstack([c + spread * rng.normal(size=(n_per_class, d)) for c in centres])
    y = np.repeat(np.arange(k), n_per_class)
    order = rng.permutation(y.size)
    return X[order], y[order]


def test_linear_probe_separable(rng):
    Xtr, ytr = blobs(rng, 100)
    Xte, yte = blobs(np.random.default_rng(0), 100)  # same centres: same generator seed
    out = linear_probe(Xtr, ytr, Xte, yte)
    assert out["test_accuracy"] >= 0.95
    assert out["val_accuracy"] >= 0.95
    assert out["best_C"] in DEFAULT_CS
    assert len(out["val_accuracies"]) == len(DEFAULT_CS)
    # Ties go to the strongest regularisation (smallest C).
    best = max(out["val_accuracies"])
    assert out["best_C"] == min(c for c, a in zip(DEFAULT_CS, out["val_accuracies"]) if a == best)
    assert linear_probe(Xtr, ytr, Xte, yte) == out  # deterministic


def test_linear_probe_string_labels_and_chance(rng):
    Xtr, ytr = blobs(rng, 40, k=2)
    names = np.array(["cat", "dog"])[ytr]
    out = linear_probe(Xtr, names, Xtr, names, Cs=[1e-2, 1.0])
    assert out["test_accuracy"] >= 0.95
    # Random labels: no better than chance on fresh data.
    Xr = rng.normal(size=(400, 10))
    out = linear_probe(Xr[:200], rng.integers(0, 2, 200), Xr[200:], rng.integers(0, 2, 200))
    assert out["test_accuracy"] < 0.65


def test_stratified_split_is_the_seeds_split(rng):
    y = np.repeat([0, 1, 2], [50, 30, 20])
    rng.shuffle(y)
    tr, va = stratified_split(y, 0.2, seed=3)
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == y.size
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    np.testing.assert_array_equal(np.bincount(y[va]), [10, 6, 4])
    want_tr, want_va = train_test_split(np.arange(y.size), test_size=0.2, stratify=y, random_state=3)
    np.testing.assert_array_equal(va, np.sort(want_va))
    np.testing.assert_array_equal(tr, np.sort(want_tr))


# --- bad inputs ------------------------------------------------------------------------------


def test_cka_and_rsa_bad_inputs(rng):
    X, Y = related(rng, 30, 4, 3)
    with pytest.raises(ValueError, match=r"Y: expected n=30 rows .* got n=29"):
        linear_cka(X, Y[:-1])
    with pytest.raises(ValueError, match=r"X: n=3 samples, this needs n >= 4"):
        linear_cka(X[:3], Y[:3])
    assert np.isfinite(linear_cka(X[:3], Y[:3], unbiased=False))
    Xn = X.copy()
    Xn[0, 0] = np.inf
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        linear_cka(Xn, Y)
    Yn = Y.copy()
    Yn[1, 1] = np.nan
    for f in (linear_cka, rbf_cka, rsa):
        with pytest.raises(ValueError, match="Y: contains NaN or inf"):
            f(X, Yn)
    with pytest.raises(ValueError, match="X: expected a 2-D array"):
        linear_cka(X[:, 0], Y)
    with pytest.raises(ValueError, match="X: all rows are identical"):
        linear_cka(np.ones((30, 4)), Y)
    with pytest.raises(ValueError, match="X: all rows are identical"):
        rbf_cka(np.ones((30, 4)), Y)
    with pytest.raises(ValueError, match="sigma_frac: give either sigma"):
        rbf_cka(X, Y, sigma_frac=0.5, sigma=0.2)
    with pytest.raises(ValueError, match="sigma: expected a finite number"):
        rbf_cka(X, Y, sigma=0.0)
    with pytest.raises(ValueError, match="sigma_frac: expected a finite number"):
        rbf_cka(X, Y, sigma_frac=-1.0)
    with pytest.raises(ValueError, match="unbiased: expected True or False"):
        linear_cka(X, Y, unbiased="yes")
    with pytest.raises(ValueError, match="rdm: expected one of"):
        rsa(X, Y, rdm="manhattan")
    with pytest.raises(ValueError, match="corr: expected one of"):
        rsa(X, Y, corr="kendall")
    Xc = X.copy()
    Xc[4] = 2.0
    with pytest.raises(ValueError, match="X: row 4 is constant"):
        rsa(Xc, Y)
    Xz = X.copy()
    Xz[5] = 0.0
    with pytest.raises(ValueError, match="X: row 5 is all zero"):
        rsa(Xz, Y, rdm="cosine")


def test_probe_bad_inputs(rng):
    Xtr, ytr = blobs(rng, 20)
    with pytest.raises(ValueError, match="train_y: expected labels, got None"):
        linear_probe(Xtr, None, Xtr, ytr)
    with pytest.raises(ValueError, match="test_y: expected labels, got None"):
        linear_probe(Xtr, ytr, Xtr, None)
    with pytest.raises(ValueError, match="train_y: expected 60 labels"):
        linear_probe(Xtr, ytr[:-1], Xtr, ytr)
    with pytest.raises(ValueError, match="test_X: dimension mismatch"):
        linear_probe(Xtr, ytr, Xtr[:, :5], ytr)
    bad = Xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="train_X: contains NaN or inf"):
        linear_probe(bad, ytr, Xtr, ytr)
    with pytest.raises(ValueError, match="train_y: expected integer or str labels without nulls"):
        linear_probe(Xtr, np.array([None] + [1] * 59, dtype=object), Xtr, ytr)
    with pytest.raises(ValueError, match=r"Cs\[1\]: expected a finite number"):
        linear_probe(Xtr, ytr, Xtr, ytr, Cs=[1.0, 0.0])
    with pytest.raises(ValueError, match="val_fraction"):
        linear_probe(Xtr, ytr, Xtr, ytr, val_fraction=1.0)
    with pytest.raises(ValueError, match="train_y: expected at least 2 classes"):
        linear_probe(Xtr, np.zeros(60, dtype=int), Xtr, ytr)
    with pytest.raises(ValueError, match="labels: cannot split"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5)
    with pytest.raises(ValueError, match="labels: expected labels, got None"):
        stratified_split(None, 0.2)
