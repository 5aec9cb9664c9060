"""Tests of laionlab.ood.neural (seed 000's NSD fMRI pipeline) on tiny and synthetic data."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import zscore

from laionlab.ood import neural
from laionlab.ood.neural import (
    neural_ood,
    neural_sampling,
    noise_ceiling_from_ncsnr,
    prepare_responses,
    subject_clusters,
    synthetic_subject,
    voxel_pearson,
)


@pytest.fixture(scope="module")
def subject():
    """Synthetic subject (4 clusters of 250 images) and its prepared responses."""
    s = synthetic_subject(seed=0)
    nc = noise_ceiling_from_ncsnr(s["ncsnr"])
    responses, image_ids = prepare_responses(s["betas"], s["session"], s["stimulus_ids"], nc)
    return s, responses, image_ids


@pytest.fixture(scope="module")
def ood_rows(subject):
    s, responses, _ = subject
    return {
        n: neural_ood(s["features"], responses, s["clusters"], n_train=n, max_combinations=2, seed=1) for n in (30, 400)
    }


# --- responses -------------------------------------------------------------------------------


def _brute_force(betas, session, stimulus_ids, noise_ceiling):
    """The seed's recipe, loop by loop: scipy zscore per session file, nanmean per stimulus."""
    z = np.empty_like(betas, dtype=np.float64)
    for s in np.unique(session):
        rows = np.flatnonzero(session == s)
        for v in range(betas.shape[1]):
            z[rows, v] = zscore(betas[rows, v].astype(np.float64))
    ids = sorted(set(stimulus_ids.tolist()))
    out = np.array([np.nanmean(z[stimulus_ids == i], axis=0) for i in ids])
    return out[:, noise_ceiling > 0], np.array(ids)


def test_prepare_responses_hand_example():
    # Session A shows stimuli 0, 1 (values 1, 3 -> z -1, 1); session B shows 1, 0, 2
    # (values 10, 20, 30 -> z -sqrt(1.5), 0, sqrt(1.5)).
    betas = np.array([[1.0], [3.0], [10.0], [20.0], [30.0]])
    responses, ids = prepare_responses(betas, np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 0, 2]))
    h = math.sqrt(1.5)
    np.testing.assert_allclose(responses[:, 0], [-0.5, (1.0 - h) / 2, h], rtol=1e-6)
    np.testing.assert_array_equal(ids, [0, 1, 2])
    assert responses.dtype == np.float32


def test_prepare_responses_matches_brute_force_loop():
    rng = np.random.default_rng(3)
    n_trials, n_voxels = 30, 7
    session = np.repeat(np.array(["s2", "s1", "s3"]), 10)
    stimulus_ids = rng.permutation(np.repeat(np.arange(100, 110), 3))
    betas = rng.normal(5.0, 2.0, (n_trials, n_voxels)) * rng.uniform(0.5, 3.0, n_voxels)
    nc = np.array([10.0, 0.0, 3.0, -1.0, 50.0, 0.0, 1e-3])
    responses, ids = prepare_responses(betas, session, stimulus_ids, noise_ceiling=nc)
    expected, expected_ids = _brute_force(betas, session, stimulus_ids, nc)
    np.testing.assert_array_equal(ids, expected_ids)
    assert responses.shape == (10, 4)
    np.testing.assert_allclose(responses, expected, rtol=1e-5, atol=1e-6)


def test_prepare_responses_removes_session_gain_and_offset():
    rng = np.random.default_rng(4)
    betas = rng.standard_normal((40, 5))
    session = np.repeat([0, 1], 20)
    stimulus_ids = np.tile(np.arange(20), 2)
    shifted = betas * np.where(session[:, None] == 1, 3.0, 1.0) + np.where(session[:, None] == 1, -7.0, 2.0)
    a, _ = prepare_responses(betas, session, stimulus_ids)
    b, _ = prepare_responses(shifted, session, stimulus_ids)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_prepare_responses_constant_voxel_in_session_is_zero():
    betas = np.array([[1.0, 2.0], [1.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    responses, _ = prepare_responses(betas, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert np.isfinite(responses).all()
    np.testing.assert_allclose(responses[:, 0], [-0.5, 0.5])


def test_noise_ceiling_from_ncsnr_formula():
    ncsnr = np.array([[0.0, 1.0], [-2.0, 0.5]])
    nc = noise_ceiling_from_ncsnr(ncsnr)
    assert nc.shape == ncsnr.shape
    np.testing.assert_allclose(nc, 100 * ncsnr**2 / (ncsnr**2 + 1 / 3))
    assert nc[0, 1] == pytest.approx(75.0)
    assert noise_ceiling_from_ncsnr(1.0, n_trials=1) == pytest.approx(50.0)
    assert nc[0, 0] == 0.0


# --- clusters --------------------------------------------------------------------------------


def _blobs(sizes, centres, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + 0.3 * rng.standard_normal((n, len(c))) for n, c in zip(sizes, centres)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return x, truth


def _same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_subject_clusters_lowers_k_until_sizes_hold():
    x, truth = _blobs([100, 100, 100], [(0, 0), (10, 0), (0, 10)])
    labels, k = subject_clusters(x, start_k=6, min_cluster_size=80)
    assert k == 3  # k = 4, 5, 6 split a blob into pieces of < 80
    assert _same_partition(labels, truth)
    assert labels.dtype == np.int64 and labels.shape == (300,)


def test_subject_clusters_merges_a_small_blob():
    # The 40-image blob sits next to blob 0: k = 3 leaves it too small, k = 2 merges them.
    x, truth = _blobs([100, 100, 40], [(0, 0), (20, 20), (3, 3)])
    labels, k = subject_clusters(x, start_k=5, min_cluster_size=80)
    assert k == 2
    assert _same_partition(labels, np.where(truth == 2, 0, truth))


def test_subject_clusters_errors_when_no_k_works():
    x, _ = _blobs([300, 10], [(0, 0), (50, 50)])
    with pytest.raises(ValueError, match=r"^min_cluster_size: no k in \[2, 3\]"):
        subject_clusters(x, start_k=3, min_cluster_size=100)
    with pytest.raises(ValueError, match=r"^min_cluster_size: 310 images cannot form 2"):
        subject_clusters(x, start_k=3, min_cluster_size=200)
    with pytest.raises(ValueError, match="^min_k"):
        subject_clusters(x, start_k=3, min_k=4)


# --- Pearson r -------------------------------------------------------------------------------


def test_voxel_pearson_equals_corrcoef(monkeypatch):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((50, 9))
    b = 0.5 * a + rng.standard_normal((50, 9))
    expected = [np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(9)]
    np.testing.assert_allclose(voxel_pearson(a, b), expected, rtol=1e-12)
    monkeypatch.setattr(neural, "BLOCK_ELEMENTS", 100)  # 2 columns per block
    np.testing.assert_allclose(voxel_pearson(a, b), expected, rtol=1e-12)


def test_voxel_pearson_constant_column_is_nan():
    a = np.array([[1.0, 0.1], [2.0, 0.1], [3.0, 0.1]])
    r = voxel_pearson(a, np.array([[1.0, 1.0], [3.0, 2.0], [2.0, 4.0]]))
    assert r[0] == pytest.approx(0.5) and np.isnan(r[1])


# --- OOD encoding and decoding ---------------------------------------------------------------


def test_synthetic_subject_shapes(subject):
    s, responses, image_ids = subject
    assert s["features"].shape == (1000, 16) and s["betas"].shape == (3000, 50)
    assert responses.shape == (1000, 45)  # 5 null voxels (ncsnr 0) dropped
    np.testing.assert_array_equal(image_ids, np.arange(1000))
    assert np.bincount(s["clusters"]).tolist() == [250] * 4


def test_neural_ood_rows_cover_every_held_out_cluster(ood_rows):
    rows = ood_rows[400]
    # k_train = 1, 2, 3 with C(3, k) = 3, 3, 1 combinations, capped at 2.
    assert len(rows) == 4 * (2 + 2 + 1)
    for row in rows:
        assert row["held_out"] not in row["combination"]
        assert len(row["combination"]) == row["k_train"]
        assert row["n_test"] == 250 and row["n_train"] == min(400, 250 * row["k_train"])
    assert {r["held_out"] for r in rows} == {0, 1, 2, 3}


def test_neural_ood_encoder_and_decoder_generalise(ood_rows):
    small = np.mean([r["encoder_r"] for r in ood_rows[30]])
    large = np.mean([r["encoder_r"] for r in ood_rows[400]])
    assert small > 0.3
    assert large > small + 0.05
    assert np.mean([r["decoder_accuracy"] for r in ood_rows[400]]) > 0.5  # chance: 1/4


def test_neural_ood_all_combinations_and_determinism(subject):
    s, responses, _ = subject
    keep = s["clusters"] < 3
    args = (s["features"][keep], responses[keep], s["clusters"][keep])
    rows = neural_ood(*args, n_train=50, alphas=(1.0, 10.0))
    assert [(r["held_out"], r["combination"]) for r in rows] == [
        (0, (1,)),
        (0, (2,)),
        (0, (1, 2)),
        (1, (0,)),
        (1, (2,)),
        (1, (0, 2)),
        (2, (0,)),
        (2, (1,)),
        (2, (0, 1)),
    ]
    assert rows == neural_ood(*args, n_train=50, alphas=(1.0, 10.0))


def test_combination_draw_and_unrank():
    items = [0, 2, 3, 5, 7, 8]
    assert [neural._unrank(items, 3, i) for i in range(20)] == list(itertools.combinations(items, 3))
    drawn = list(neural._combinations(items, 3, 5, np.random.default_rng(0)))
    assert len(set(drawn)) == 5 and drawn == sorted(drawn)
    assert set(drawn) <= set(itertools.combinations(items, 3))


def test_proportional_draw():
    parts = [np.arange(0, 300), np.arange(300, 400), np.arange(400, 410)]
    idx = neural._proportional_draw(parts, 41, np.random.default_rng(0))
    counts = [np.isin(idx, p).sum() for p in parts]
    assert counts == [30, 10, 1] and len(np.unique(idx)) == 41
    np.testing.assert_array_equal(
        neural._proportional_draw(parts[1:], 500, np.random.default_rng(0)), np.arange(300, 410)
    )


# --- sampling strategies ---------------------------------------------------------------------


def test_neural_sampling_rows_and_normalisation(subject):
    s, responses, _ = subject
    with pytest.warns(UserWarning, match="sizes"):
        rows = neural_sampling(
            s["features"],
            responses,
            ["random", "stratified", "kcenter"],
            sizes=(50, 200, 5000),
            repeats=3,
            n_clusters=10,
        )
    counts = {}
    for row in rows:
        counts[(row["strategy"], row["size"])] = counts.get((row["strategy"], row["size"]), 0) + 1
    assert counts == {
        ("random", 50): 3,
        ("random", 200): 3,
        ("stratified", 50): 3,
        ("stratified", 200): 3,
        ("kcenter", 50): 1,
        ("kcenter", 200): 1,
    }
    assert [r["seed"] for r in rows if r["strategy"] == "random"] == [42, 43, 44] * 2
    assert max(r["normalised_r"] for r in rows) == 1.0
    assert all(r["r"] > 0 for r in rows)
    r50 = np.mean([r["r"] for r in rows if r["size"] == 50])
    r200 = np.mean([r["r"] for r in rows if r["size"] == 200])
    assert r200 > r50


# --- bad inputs ------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument(subject):
    s, responses, _ = subject
    f, lab = s["features"], s["clusters"]
    with pytest.raises(ValueError, match="^responses"):
        neural_ood(f, responses[:-1], lab)
    with pytest.raises(ValueError, match="^responses"):
        neural_sampling(f, responses[:10], ["random"])
    with pytest.raises(ValueError, match="^features"):
        neural_ood(np.empty((0, 16)), responses[:0], lab[:0])
    with pytest.raises(ValueError, match="^features"):
        subject_clusters(np.empty((0, 3)))
    bad = f.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="^features"):
        neural_sampling(bad, responses, ["random"])
    bad_r = responses.copy()
    bad_r[0, 0] = np.inf
    with pytest.raises(ValueError, match="^responses"):
        neural_ood(f, bad_r, lab)
    with pytest.raises(ValueError, match="^labels"):
        neural_ood(f, responses, lab[:-1])
    with pytest.raises(ValueError, match="^labels"):
        neural_ood(f, responses, np.zeros(len(f), int))
    with pytest.raises(ValueError, match=r"^strategies\[1\]"):
        neural_sampling(f, responses, ["random", "nope"])
    with pytest.raises(ValueError, match="^alphas"):
        neural_ood(f, responses, lab, alphas=(1.0, -1.0))
    betas = s["betas"].copy()
    betas[0, 0] = np.nan
    with pytest.raises(ValueError, match="^betas"):
        prepare_responses(betas, s["session"], s["stimulus_ids"])
    with pytest.raises(ValueError, match="^betas"):
        prepare_responses(np.empty((0, 4)), [], [])
    with pytest.raises(ValueError, match="^session"):
        prepare_responses(s["betas"], s["session"][:-1], s["stimulus_ids"])
    with pytest.raises(ValueError, match="^stimulus_ids"):
        prepare_responses(s["betas"], s["session"], s["stimulus_ids"][:, None])
    with pytest.raises(ValueError, match="^noise_ceiling"):
        prepare_responses(s["betas"], s["session"], s["stimulus_ids"], np.zeros(50))
    with pytest.raises(ValueError, match="^noise_ceiling"):
        prepare_responses(s["betas"], s["session"], s["stimulus_ids"], np.ones(49))
    with pytest.raises(ValueError, match="^ncsnr"):
        noise_ceiling_from_ncsnr([1.0, np.nan])
    with pytest.raises(ValueError, match="^test_fraction"):
        neural_sampling(f, responses, ["random"], test_fraction=1.0)
