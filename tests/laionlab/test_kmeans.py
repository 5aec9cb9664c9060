"""Tests for laionlab.cluster.kmeans: faiss k-means, exact assignment, seed 004's redraw init."""

from __future__ import annotations

import logging
import sys

import faiss
import numpy as np
import pytest
from sklearn.cluster import KMeans

from laionlab.cluster import KMeansResult, assign, draw_distinct_centres, kmeans


@pytest.fixture(scope="module")
def blobs():
    """8 well-separated Gaussian blobs in 16-d, 250 points each (n=2000), std 0.5."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(8, 16)).astype(np.float32)
    labels = np.repeat(np.arange(8), 250)
    X = centres[labels] + rng.normal(scale=0.5, size=(2000, 16)).astype(np.float32)
    return X.astype(np.float32), centres, labels


@pytest.fixture(scope="module")
def mixture():
    """A harder case for the sklearn comparison: 40 overlapping blobs, k=30, 3000x32."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=2.0, size=(40, 32))
    X = centres[rng.integers(0, 40, 3000)] + rng.normal(size=(3000, 32))
    return X.astype(np.float32)


def _match_error(found: np.ndarray, truth: np.ndarray) -> float:
    """Largest distance from a true centre to its nearest found centre."""
    d = np.linalg.norm(truth[:, None, :] - found[None, :, :], axis=2)
    return float(d.min(axis=1).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_blob_centres(blobs, seed):
    X, centres, labels = blobs
    # k-means++ (not "random", which can put two starts in one blob and stay there)
    res = kmeans(X, 8, n_iter=25, seed=seed, init="kmeans++", gpu=False)
    assert isinstance(res, KMeansResult)
    assert res.centroids.shape == (8, 16) and res.centroids.dtype == np.float32
    assert res.backend == "faiss-cpu" and res.seed == seed
    assert 1 <= res.n_iter <= 25  # faiss stops once the objective stops changing
    assert res.n_train == 2000
    # near the generating centres (sampling error of a 250-point mean in 16-d is ~0.13) ...
    assert _match_error(res.centroids, centres) < 0.3
    # ... and exactly at the blobs' sample means
    means = np.stack([X[labels == i].mean(axis=0) for i in range(8)])
    assert _match_error(res.centroids, means) < 1e-4
    assert res.sizes.tolist() == [250] * 8
    assert res.labels.shape == (2000,)
    # labels are a relabelling of the truth
    pairs = set(zip(labels.tolist(), res.labels.tolist()))
    assert len(pairs) == 8
    expected = ((X - res.centroids[res.labels]) ** 2).sum(dtype=np.float64)
    assert res.inertia == pytest.approx(expected, rel=1e-4)


def test_deterministic_given_seed(mixture):
    a = kmeans(mixture, 30, n_iter=5, seed=7, gpu=False)
    b = kmeans(mixture, 30, n_iter=5, seed=7, gpu=False)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia


@pytest.mark.parametrize("n_iter", [1, 10])
def test_inertia_matches_sklearn_from_same_init(mixture, n_iter):
    X = mixture
    k = 30
    init = X[np.random.default_rng(2).choice(len(X), k, replace=False)]
    ours = kmeans(X, k, n_iter=n_iter, init=init, max_points_per_centroid=None, gpu=False)
    ref = KMeans(n_clusters=k, init=init, n_init=1, max_iter=n_iter, tol=0.0, algorithm="lloyd").fit(X)
    assert ours.n_train == len(X)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=0.01)


def test_subsampling_is_exposed(mixture):
    res = kmeans(mixture, 30, n_iter=3, max_points_per_centroid=10, gpu=False)
    assert res.n_train == 300
    # labels, sizes and inertia still cover every row
    assert res.labels.shape == (3000,) and res.sizes.sum() == 3000


def test_kmeanspp_fallback_without_faiss_support(blobs, monkeypatch):
    X, centres, _ = blobs
    monkeypatch.delattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS", raising=False)
    res = kmeans(X, 8, init="kmeans++", gpu=False)
    assert _match_error(res.centroids, centres) < 0.3 and res.sizes.tolist() == [250] * 8


def test_spherical_centroids_unit_norm(mixture):
    X = mixture / np.linalg.norm(mixture, axis=1, keepdims=True)
    res = kmeans(X, 10, n_iter=5, spherical=True, gpu=False)
    np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1.0, atol=1e-5)
    labels, sims = assign(X, res.centroids, metric="ip")
    np.testing.assert_array_equal(labels, res.labels)
    expected = float((2.0 - 2.0 * sims.astype(np.float64)).sum())  # |x - c|^2 for unit x, c
    assert res.inertia == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_assign_equals_brute_force(metric):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1000, 24)).astype(np.float32)
    C = rng.normal(size=(37, 24)).astype(np.float32)
    labels, dist = assign(X, C, block_rows=128, metric=metric)  # several blocks, a ragged end
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    if metric == "l2":
        full = ((X64[:, None, :] - C64[None, :, :]) ** 2).sum(axis=2)
        ref = full.argmin(axis=1)
    else:
        full = X64 @ C64.T
        ref = full.argmax(axis=1)
    np.testing.assert_array_equal(labels, ref)
    assert labels.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_allclose(dist, full[np.arange(len(X)), ref], rtol=1e-4, atol=1e-4)


def test_assign_accepts_float16_and_memmap(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 8)).astype(np.float16)
    np.save(tmp_path / "x.npy", X)
    C = rng.normal(size=(5, 8)).astype(np.float32)
    a, _ = assign(np.load(tmp_path / "x.npy", mmap_mode="r"), C, block_rows=64)
    b, _ = assign(X.astype(np.float32), C)
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def duplicated():
    """60 distinct unit directions, each repeated 20 times with tiny noise (n=1200)."""
    rng = np.random.default_rng(8)
    base = rng.normal(size=(60, 16))
    X = np.repeat(base, 20, axis=0) + rng.normal(scale=1e-3, size=(1200, 16))
    return X.astype(np.float32)


def _max_pairwise_cosine(V: np.ndarray) -> float:
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    G = U @ U.T
    np.fill_diagonal(G, -1.0)
    return float(G.max())


def test_redraw_rule_leaves_no_near_duplicate_centres(duplicated):
    X = duplicated
    k = 40
    # plain random rows of this data contain near-duplicate pairs...
    plain = X[np.random.default_rng(0).choice(len(X), k, replace=False)]
    assert _max_pairwise_cosine(plain) > 0.9
    # ...the redraw rule does not
    rows = draw_distinct_centres(X, k, 0.9, seed=0)
    assert rows.shape == (k,) and len(set(rows.tolist())) == k
    assert _max_pairwise_cosine(X[rows]) <= 0.9
    np.testing.assert_array_equal(rows, draw_distinct_centres(X, k, 0.9, seed=0))
    # and k-means started that way runs (its init is exactly those rows)
    res = kmeans(X, k, n_iter=2, redraw_duplicate_cosine=0.9, gpu=False)
    assert res.centroids.shape == (k, 16)
    one_iter = kmeans(X, k, n_iter=1, init=X[rows], gpu=False)
    again = kmeans(X, k, n_iter=1, redraw_duplicate_cosine=0.9, gpu=False)
    np.testing.assert_array_equal(one_iter.centroids, again.centroids)


def test_redraw_rule_impossible_raises(duplicated):
    with pytest.raises(ValueError, match="found only 60 of k=61"):
        draw_distinct_centres(duplicated, 61, 0.9)
    with pytest.raises(ValueError, match="redraw_duplicate_cosine"):
        kmeans(duplicated, 61, redraw_duplicate_cosine=0.9, gpu=False)
    with pytest.raises(ValueError, match="redraw_duplicate_cosine"):
        kmeans(duplicated, 5, redraw_duplicate_cosine=1.5, gpu=False)
    with pytest.raises(ValueError, match="redraw_duplicate_cosine"):
        kmeans(duplicated, 5, init="kmeans++", redraw_duplicate_cosine=0.9, gpu=False)


def test_bad_inputs_raise():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="k must be >= 1"):
        kmeans(X, 0)
    with pytest.raises(ValueError, match="k=51 is larger than the sample"):
        kmeans(X, 51)
    with pytest.raises(ValueError, match="X must be a 2-D"):
        kmeans(X[0], 2)
    with pytest.raises(ValueError, match="X must be a 2-D"):
        assign(X[None], X[:3])
    with pytest.raises(ValueError, match="centroids must be a 2-D"):
        assign(X, X[0])
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        kmeans(bad, 3)
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        assign(bad, X[:3])
    with pytest.raises(ValueError, match="dimension mismatch"):
        assign(X, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="init must have shape"):
        kmeans(X, 3, init=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="init must be"):
        kmeans(X, 3, init="kmeans||")
    with pytest.raises(ValueError, match="metric must be"):
        assign(X, X[:3], metric="cosine")
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        kmeans(X, 3, n_iter=0)
    with pytest.raises(ValueError, match="gpu must be"):
        kmeans(X, 3, gpu="yes")
    if faiss.get_num_gpus() == 0:
        with pytest.raises(ValueError, match="gpu=True"):
            kmeans(X, 3, gpu=True)


def _lines(caplog, logger: str, start: str, level: int = logging.INFO) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and r.levelno >= level and r.getMessage().startswith(start)
    ]


def test_assignment_logs_progress_per_block(blobs, caplog):
    X, centres, _ = blobs
    caplog.set_level(logging.INFO, logger="laionlab")
    assign(X, centres, block_rows=500, log_every_s=0.0)
    lines = _lines(caplog, "laionlab.cluster.kmeans", "nearest-centroid assignment: ")
    # one line per block (every_s = 0) and the closing one, with counts, rate and ETA
    assert [line.split(" rows")[0].split(": ")[1] for line in lines] == [
        "500/2,000",
        "1,000/2,000",
        "1,500/2,000",
        "2,000/2,000",
        "2,000/2,000",
    ]
    assert all("rows/s" in line and "ETA" in line for line in lines)
    caplog.clear()
    assign(X, centres, block_rows=500)  # default: 30 s between lines, and a short call is silent
    assert not _lines(caplog, "laionlab.cluster.kmeans", "")


def test_kmeans_logs_phases_with_sizes_and_timings(blobs, caplog, monkeypatch):
    kmeans_module = sys.modules["laionlab.cluster.kmeans"]  # the package exports the function under that name
    X, _, _ = blobs
    caplog.set_level(logging.DEBUG, logger="laionlab")
    kmeans(X, 8, seed=0, max_points_per_centroid=100, log_every_s=0.0)
    debug = _lines(caplog, "laionlab.cluster.kmeans", "k-means", logging.DEBUG)
    assert debug[0] == "k-means: k=8 on X (2,000, 16), training on 800 rows, at most 25 iterations, faiss-cpu"
    assert any(line.startswith("k-means: copying a sample of 800 of 2,000 rows: done in ") for line in debug)
    assert any(line.startswith("k-means: faiss training k=8 on (800, 16): done in ") for line in debug)
    assert any(line.startswith("k-means assignment: 2,000/2,000 rows (100.0 %)") for line in debug)
    assert debug[-1].startswith("k-means: done in ") and "empty clusters" in debug[-1]
    # a small k-means (here 800 x 8 x 16 x 25 multiply-adds) keeps its phases at DEBUG ...
    assert not _lines(caplog, "laionlab.cluster.kmeans", "k-means: ")
    # ... a large one logs them at INFO
    monkeypatch.setattr(kmeans_module, "PHASE_INFO_WORK", 1.0)
    caplog.clear()
    kmeans(X, 8, seed=0, max_points_per_centroid=100)
    info = _lines(caplog, "laionlab.cluster.kmeans", "k-means: ")
    assert len(info) == 8 and info[0].startswith("k-means: k=8") and info[-1].startswith("k-means: done in ")


def test_distinct_centre_draw_logs_progress(duplicated, caplog):
    caplog.set_level(logging.INFO, logger="laionlab")
    draw_distinct_centres(duplicated, 5, 0.9, seed=0, log_every_s=0.0)
    lines = _lines(caplog, "laionlab.cluster.kmeans", "k-means init: distinct centres: ")
    assert lines and lines[-1].startswith("k-means init: distinct centres: 5/5 centres (100.0 %)")


def test_sample_across_parts_sizes_and_proportions():
    from laionlab.cluster import sample_across_parts

    sizes = [500, 0, 301, 7, 1192]
    rows = sample_across_parts(sizes, 200, seed=3)
    assert sum(len(r) for r in rows) == 200
    exact = np.array(sizes) * 200 / sum(sizes)
    assert all(abs(len(r) - e) < 1 for r, e in zip(rows, exact))  # largest remainders
    for r, n in zip(rows, sizes):
        assert r.dtype == np.int64 and (np.diff(r) > 0).all() and (len(r) == 0 or (0 <= r[0] and r[-1] < n))
    # all rows when the sample is as large as the table
    full = sample_across_parts(sizes, 5000)
    assert [r.tolist() for r in full] == [list(range(n)) for n in sizes]


def test_sample_across_parts_is_seeded_per_part_and_uniform():
    from laionlab.cluster import sample_across_parts

    a = sample_across_parts([100, 60, 40], 50, seed=11)
    b = sample_across_parts([100, 60, 40], 50, seed=11)
    c = sample_across_parts([100, 60, 40], 50, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    # a part's draw depends on (seed, its index, its size, its quota), not on the other parts' rows
    d = sample_across_parts([300, 60, 40], 100, seed=11)  # quotas 75, 15, 10 (were 25, 15, 10)
    assert [len(r) for r in a] == [25, 15, 10] and [len(r) for r in d] == [75, 15, 10]
    np.testing.assert_array_equal(d[1], a[1])
    np.testing.assert_array_equal(d[2], a[2])
    # uniform inside a part: over many seeds every row is drawn about quota/size of the time
    hits = np.zeros(100)
    for seed in range(400):
        hits[sample_across_parts([100, 60, 40], 50, seed=seed)[0]] += 1
    freq = hits / 400  # 25 of 100 rows: p = 0.25, sd of a frequency ~0.022
    assert abs(freq.mean() - 0.25) < 1e-12 and freq.min() > 0.14 and freq.max() < 0.36


def test_sample_across_parts_bad_inputs():
    from laionlab.cluster import sample_across_parts

    with pytest.raises(ValueError, match=r"^part_rows"):
        sample_across_parts([3, -1], 2)
    with pytest.raises(ValueError, match=r"^part_rows"):
        sample_across_parts([], 2)
    with pytest.raises(ValueError, match=r"^sample_size"):
        sample_across_parts([3, 4], 0)


def test_proportional_quota_largest_remainders():
    from laionlab.cluster import proportional_quota

    np.testing.assert_array_equal(proportional_quota([5, 5, 5], 4), [2, 1, 1])  # ties to the earlier group
    np.testing.assert_array_equal(
        proportional_quota([1, 2, 7], 4), [0, 1, 3]
    )  # 0.4, 0.8, 2.8: the two largest remainders
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 50, size=rng.integers(1, 8))
        if sizes.sum() == 0:
            continue
        n = int(rng.integers(0, sizes.sum()))
        quota = proportional_quota(sizes, n)
        assert quota.sum() == n and (quota <= sizes).all() and (np.abs(quota - sizes * n / sizes.sum()) < 1).all()
    with pytest.raises(ValueError, match=r"^n: expected 0 <= n < 10"):
        proportional_quota([4, 6], 10)


# --- the torch backend (GPU hosts without faiss-gpu; checked here on the CPU) ---------------


@pytest.mark.parametrize("n_iter", [1, 10])
def test_torch_lloyd_matches_faiss_and_sklearn_from_the_same_init(mixture, n_iter):
    """Same start, same Lloyd: the torch path's inertia equals sklearn's and faiss's within 1%
    (the issue's bar), and its assignment is the exact nearest centroid."""
    X, k = mixture, 30
    init = X[np.random.default_rng(2).choice(len(X), k, replace=False)]
    ours = kmeans(X, k, n_iter=n_iter, init=init, max_points_per_centroid=None, torch_device="cpu")
    ref = KMeans(n_clusters=k, init=init, n_init=1, max_iter=n_iter, tol=0.0, algorithm="lloyd").fit(X)
    theirs = kmeans(X, k, n_iter=n_iter, init=init, max_points_per_centroid=None, gpu=False)
    assert ours.backend == "torch-cpu" and ours.n_iter <= n_iter
    assert ours.inertia == pytest.approx(ref.inertia_, rel=0.01)
    assert ours.inertia == pytest.approx(theirs.inertia, rel=0.01)
    labels, _ = assign(X, ours.centroids)
    assert (labels == ours.labels).mean() > 0.999 and ours.sizes.sum() == len(X)


def test_torch_kmeans_finds_the_blobs_spherical_and_sampled(blobs):
    X, centres, _ = blobs
    res = kmeans(X, 8, n_iter=25, seed=3, init="kmeans++", torch_device="cpu")
    assert _match_error(res.centroids, centres) < 0.5 and sorted(res.sizes.tolist()) == [250] * 8
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    sph = kmeans(unit, 8, n_iter=10, spherical=True, max_points_per_centroid=100, torch_device="cpu")
    assert np.allclose(np.linalg.norm(sph.centroids, axis=1), 1, atol=1e-5) and sph.n_train == 800
    ref = kmeans(unit, 8, n_iter=10, spherical=True, max_points_per_centroid=100, gpu=False)
    assert sph.inertia == pytest.approx(ref.inertia, rel=0.01)


def test_torch_lloyd_splits_an_empty_cluster_as_faiss_does():
    """Two identical initial centroids: one gets every row, the other none; faiss's rule
    copies a populated centroid into the empty one and pushes the pair apart, so after the
    iterations both are in use."""
    from laionlab.cluster.torch_kmeans import torch_lloyd

    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(-3, 0.3, (200, 4)), rng.normal(3, 0.3, (200, 4))]).astype(np.float32)
    init = np.stack([X[0], X[0], X[250]])  # centroids 0 and 1 coincide: 1 is empty at once
    C, done = torch_lloyd(X, init, 10, device="cpu")
    labels = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
    assert len(np.unique(labels)) == 3 and done >= 2
    with pytest.raises(ValueError, match="dimension mismatch"):
        torch_lloyd(X, init[:, :3], 3, device="cpu")


def test_gpu_true_without_any_gpu_says_so(blobs, monkeypatch):
    km = sys.modules["laionlab.cluster.kmeans"]
    X, _, _ = blobs
    if faiss.get_num_gpus() > 0:
        pytest.skip("this host has a GPU")
    monkeypatch.setattr(km, "_nvidia_driver", lambda: False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(ValueError, match="neither faiss nor torch sees a GPU"):
        kmeans(X, 8, gpu=True)
    with pytest.raises(ValueError, match="torch_device must be a torch device string"):
        kmeans(X, 8, torch_device="")
