"""Tests of laionlab.ood (seed 000's OOD generalisation experiments), at reduced size.

The seed's GMM runs at D = 512 with observation noise 0.25. The small-D tests keep the
seed's per-dimension signal-to-noise ratio by scaling the noise with 512 / D (signal
variance per observed dimension is about (100 + 10) / D): ``sigma2_noise = 0.25 * 512 / 64``.
"""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from laionlab.ood import (
    effective_dim,
    gmm_identification,
    identification_accuracy,
    laion_identification,
    laion_ood_setup,
    normalise_within_group,
    participation_ratio,
    pearson_identify,
    ridge_decoder,
    sweep_cluster_fraction,
    sweep_clusters,
    sweep_samples,
    train_set_identification,
    ward_groups,
)
from laionlab.ood.gmm import _pr_from_moments

SEED_SNR_NOISE_D64 = 0.25 * 512 / 64


# --- building blocks -------------------------------------------------------------------------


def test_participation_ratio_known_values():
    assert participation_ratio([1.0, 1.0, 1.0, 1.0]) == pytest.approx(4.0)
    assert participation_ratio([5.0, 0.0, 1e-15]) == pytest.approx(1.0)
    assert participation_ratio([3.0, 1.0]) == pytest.approx(16.0 / 10.0)
    assert participation_ratio([0.0, -1e-9]) == 0.0


def test_effective_dim_isotropic_and_rank_one():
    rng = np.random.default_rng(0)
    d, n = 10, 20_000
    # Sampling spread of the eigenvalues lowers the ratio by about 1 / (1 + d / n).
    assert effective_dim(rng.standard_normal((n, d))) == pytest.approx(d, rel=0.01)
    rank1 = np.outer(rng.standard_normal(500), rng.standard_normal(d))
    assert effective_dim(rank1) == pytest.approx(1.0, abs=1e-6)


def test_covariance_from_streamed_moments_matches_effective_dim():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 3.0
    assert _pr_from_moments(x.T @ x, x.sum(axis=0), len(x)) == pytest.approx(effective_dim(x), rel=1e-9)


@pytest.mark.parametrize("lam", [0.0, 1.0, 7.5])
def test_ridge_decoder_matches_sklearn_ridge(lam):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((80, 12)), rng.standard_normal((80, 5))
    w = ridge_decoder(x, y, ridge_lambda=lam)
    ref = Ridge(alpha=lam, fit_intercept=False, solver="svd").fit(x, y).coef_.T
    np.testing.assert_allclose(w, ref, rtol=1e-8, atol=1e-10)


def test_pearson_identify_matches_corrcoef_loop():
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((40, 16))
    cand = rng.standard_normal((9, 16)) * rng.uniform(0.1, 5.0, size=(9, 1)) + rng.normal(size=(9, 1))
    brute = [int(np.argmax([np.corrcoef(p, c)[0, 1] for c in cand])) for p in pred]
    np.testing.assert_array_equal(pearson_identify(pred, cand), brute)


# --- GMM experiment --------------------------------------------------------------------------


def test_in_distribution_accuracy_is_one_with_enough_samples():
    r = gmm_identification(2000, 10, dim=32, seed=0)
    assert r["id_accuracy"] == 1.0
    assert r["n_samples"] == 2000 and r["n_clusters_sampled"] == 10
    assert 1.0 < r["effective_dim_latent"] < r["effective_dim"] <= 32


def test_ood_accuracy_increases_with_fraction_of_clusters_sampled():
    # Seed (D=512, C=100, N=6000): OOD 0.085 / 0.39 / 0.82 at 20 / 60 / 100 %.
    rows = sweep_cluster_fraction(
        [0.2, 0.6, 1.0], n_samples=3000, n_clusters=50, dim=64, sigma2_noise=SEED_SNR_NOISE_D64, seed=0
    )
    ood = [r["ood_accuracy"] for r in rows]
    assert ood[0] + 0.15 < ood[1] and ood[1] + 0.15 < ood[2]
    assert [r["n_clusters_sampled"] for r in rows] == [10, 30, 50]
    # ID candidates stay all pool centres, so ID suffers when few clusters were sampled.
    assert rows[0]["id_accuracy"] < 0.5 and rows[2]["id_accuracy"] >= 0.95
    assert rows[0]["effective_dim"] < rows[1]["effective_dim"] < rows[2]["effective_dim"]


def test_ood_accuracy_dips_at_a_few_clusters():
    # Seed (D=512, N=50k): 0.89 at C=1, ~0.09 at C~21, 1.0 from C~215; at D=64 the dip sits
    # near C~12 and C=100 already recovers.
    rows = sweep_clusters(3000, [1, 12, 100], dim=64, sigma2_noise=SEED_SNR_NOISE_D64, seed=0)
    one, few, many = (r["ood_accuracy"] for r in rows)
    assert one > few + 0.3 and many > few + 0.3
    assert all(r["id_accuracy"] >= 0.95 for r in rows)


def test_sweep_samples_and_determinism():
    kw = dict(n_clusters=8, dim=16, n_trials=8, n_test=20, seed=5)
    a = sweep_samples([64, 400], **kw)
    assert [r["n_samples"] for r in a] == [64, 400]
    assert a == sweep_samples([64, 400], **kw)
    assert gmm_identification(400, 8, dim=16, seed=5) != gmm_identification(400, 8, dim=16, seed=6)


def test_sweep_table_stacks_the_sweeps_with_their_x():
    from laionlab.ood import sweep_table

    row = dict(id_accuracy=1.0, ood_accuracy=0.5, effective_dim=3.0, n_samples=600, n_clusters=10)
    table = sweep_table(
        {
            "clusters": [{**row, "n_clusters": 2}, {**row, "n_clusters": 5}],
            "samples": [{**row, "n_samples": 100, "ood_accuracy": 0.25}],
            "fraction": [{**row, "cluster_fraction": 0.2}],
        }
    )
    assert table.columns == ["id_accuracy", "ood_accuracy", "effective_dim", "sweep", "x"]
    assert table["sweep"].to_list() == ["clusters", "clusters", "samples", "fraction"]
    assert table["x"].to_list() == [2.0, 5.0, 100.0, 0.2]
    assert table["ood_accuracy"].to_list() == [0.5, 0.5, 0.25, 0.5]
    assert str(table.schema["x"]) == "Float64"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_samples=0, n_clusters=2), "n_samples"),
        (dict(n_samples=10, n_clusters=0), "n_clusters"),
        (dict(n_samples=10, n_clusters=20), "n_samples"),
        (dict(n_samples=10, n_clusters=2, cluster_fraction=0.0), "cluster_fraction"),
        (dict(n_samples=10, n_clusters=2, cluster_fraction=1.5), "cluster_fraction"),
        (dict(n_samples=10, n_clusters=2, cluster_fraction=0.2), "cluster_fraction"),
        (dict(n_samples=600, n_clusters=10, cluster_fraction=0.5, pool_size=1000), "pool_size"),
        (dict(n_samples=10, n_clusters=2, dim=0), "dim"),
        (dict(n_samples=10, n_clusters=2, ridge_lambda=-1.0), "ridge_lambda"),
        (dict(n_samples=10, n_clusters=2, n_trials=0), "n_trials"),
        (dict(n_samples=10, n_clusters=2, sigma2_noise=float("nan")), "sigma2_noise"),
    ],
)
def test_gmm_bad_inputs_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gmm_identification(**kwargs)


def test_building_block_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="candidates"):
        pearson_identify(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="y"):
        ridge_decoder(np.ones((4, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="x"):
        effective_dim(np.ones((1, 3)))
    with pytest.raises(ValueError, match="cluster_counts"):
        sweep_clusters(100, [])
    with pytest.raises(ValueError, match=r"fractions\[1\]"):
        sweep_cluster_fraction([0.5, 2.0])


# --- LAION version on synthetic blobs --------------------------------------------------------

K, D = 24, 16


@pytest.fixture(scope="module")
def blobs():
    """Four super-groups of six well-separated clusters, 60 rows each."""
    rng = np.random.default_rng(0)
    supers = rng.normal(size=(4, D)) * 3.0
    centres = np.repeat(supers, 6, axis=0) + rng.normal(size=(K, D)) * 1.5
    x = np.repeat(centres, 60, axis=0) + rng.normal(size=(K * 60, D)) * 0.4
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def setup(blobs):
    return laion_ood_setup(blobs, n_clusters=K, n_groups=4, noise_sd=0.1, seed=0, min_group_size=2)


def test_setup_groups_partition_the_clusters(setup, blobs):
    assert setup.centroids.shape == (K, D) and setup.labels.shape == (len(blobs),)
    assert len(setup.groups) >= 2
    members = np.concatenate(setup.groups)
    assert len(np.unique(members)) == len(members) <= K
    # true features identify their own cluster (in-distribution sanity check)
    assert identification_accuracy(setup, blobs, setup.labels) > 0.95


def test_ward_groups_separate_two_blobs():
    rng = np.random.default_rng(4)
    c = np.vstack([rng.normal(size=(5, 3)), rng.normal(size=(7, 3)) + 50.0])
    groups = ward_groups(c, n_groups=2, min_group_size=1)
    assert sorted(map(len, groups)) == [5, 7]
    assert set(groups[0].tolist()) in ({0, 1, 2, 3, 4}, set(range(5, 12)))


def test_laion_identification_scores_above_chance(blobs, setup):
    rows = laion_identification(blobs, per_cluster=30, n_train=300, n_test=120, seed=0, setup=setup)
    g = len(setup.groups)
    assert len(rows) == g * (2 ** (g - 1) - 1)  # every combination of 1..g-1 other groups
    acc = np.array([r["accuracy"] for r in rows])
    assert np.nanmean(acc) > 5.0 / K  # chance is 1 / K
    for h in range(g):
        norm = [r["normalised_accuracy"] for r in rows if r["held_out_group"] == h]
        assert max(norm) == pytest.approx(1.0)
    again = laion_identification(
        blobs, per_cluster=30, n_train=300, n_test=120, seed=0, setup=setup, group_counts=[g - 1]
    )
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows if r["n_other_groups"] == g - 1]
    capped = laion_identification(
        blobs, per_cluster=30, n_train=300, n_test=120, seed=0, setup=setup, max_combinations=1
    )
    assert len(capped) == g * (g - 1)  # one combination per held-out group and count


def test_train_set_identification_same_score_for_indices_or_features(blobs, setup):
    idx = np.random.default_rng(1).choice(len(blobs), 200, replace=False)
    by_idx = train_set_identification(blobs, setup, idx, n_test=60, seed=3)
    by_feat = train_set_identification(blobs, setup, train_features=blobs[np.sort(idx)], n_test=60, seed=3)
    assert by_idx == by_feat
    assert [r["held_out_group"] for r in by_idx] == list(range(len(setup.groups)))
    assert np.nanmean([r["accuracy"] for r in by_idx]) > 3.0 / K
    # a condition compared with another on the same test sets
    narrow = np.flatnonzero(np.isin(setup.labels, setup.groups[0]))[:200]
    by_narrow = train_set_identification(blobs, setup, narrow, n_test=60, seed=3)
    rows = [r | {"condition": "random"} for r in by_idx] + [r | {"condition": "one group"} for r in by_narrow]
    normed = normalise_within_group(rows)
    for h in range(len(setup.groups)):
        vals = [r["normalised_accuracy"] for r in normed if r["held_out_group"] == h]
        assert np.nanmax(vals) == pytest.approx(1.0) or np.isnan(vals).all()


def test_normalise_within_group():
    rows = [
        {"held_out_group": 0, "accuracy": 0.2},
        {"held_out_group": 0, "accuracy": 0.4},
        {"held_out_group": 1, "accuracy": 0.0},
    ]
    out = normalise_within_group(rows)
    assert [r["normalised_accuracy"] for r in out[:2]] == [0.5, 1.0]
    assert np.isnan(out[2]["normalised_accuracy"])
    with pytest.raises(ValueError, match="rows"):
        normalise_within_group([{"accuracy": 1.0}])


def test_laion_bad_inputs_name_the_argument(blobs, setup):
    with pytest.raises(ValueError, match="n_clusters"):
        laion_ood_setup(blobs[:10], n_clusters=20)
    with pytest.raises(ValueError, match="train_idx"):
        train_set_identification(blobs, setup, np.array([0, len(blobs)]))
    with pytest.raises(ValueError, match="train_idx"):
        train_set_identification(blobs, setup, np.array([0]), train_features=blobs[:1])
    with pytest.raises(ValueError, match="train_features"):
        train_set_identification(blobs, setup, train_features=np.ones((3, D + 1)))
    with pytest.raises(ValueError, match="held_out_groups"):
        train_set_identification(blobs, setup, np.arange(10), held_out_groups=[99])
    with pytest.raises(ValueError, match="group_counts"):
        laion_identification(blobs, setup=setup, group_counts=[len(setup.groups)])
    with pytest.raises(ValueError, match=r"alphas\[0\]"):
        laion_identification(blobs, setup=setup, alphas=[-1.0])
    with pytest.raises(ValueError, match="per_cluster"):
        laion_identification(blobs, setup=setup, per_cluster=0)
