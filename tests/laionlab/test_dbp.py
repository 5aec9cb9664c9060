"""Tests for laionlab.dedup.dbp: density-based pruning's complexity, budgets and selection,
on cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from laionlab.dedup import cluster_budgets, cluster_complexity, dbp_keep, dbp_select


def test_complexity_by_hand():
    """Unit centroids at 0°, 60°, 180°: cosines 0.5 (0°-60°), -1 (0°-180°), -0.5 (60°-180°).
    One neighbour: d_inter = 1 - 0.5, 1 - 0.5, 1 + 0.5; two: (0.5 + 2) / 2, (0.5 + 1.5) / 2,
    (2 + 1.5) / 2. d_intra = distance sums / counts = 0.2/2, 0.9/3, and NaN for the empty
    cluster, whose complexity is the mean of the others'."""
    deg = np.deg2rad([0.0, 60.0, 180.0])
    C = np.stack([np.cos(deg), np.sin(deg)], axis=1).astype(np.float32)
    d_inter, d_intra, c = cluster_complexity(C, np.array([0.2, 0.9, 0.0]), np.array([2, 3, 0]), n_neighbours=1)
    np.testing.assert_allclose(d_inter, [0.5, 0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(d_intra[:2], [0.1, 0.3])
    assert np.isnan(d_intra[2])
    np.testing.assert_allclose(c, [0.05, 0.15, 0.10], atol=1e-6)
    d_inter, _, _ = cluster_complexity(C, np.array([0.2, 0.9, 0.0]), np.array([2, 3, 0]), n_neighbours=20)
    np.testing.assert_allclose(d_inter, [1.25, 1.0, 1.75], atol=1e-6)  # all others when fewer than 20


def test_budget_softmax_by_hand():
    """C / τ = 0, ln 3, ln 6: exp = 1, 3, 6, so p = 0.1, 0.3, 0.6 and the target 100 splits
    10 / 30 / 60 when no cluster is capped."""
    b = cluster_budgets(np.log([1.0, 3.0, 6.0]), np.array([100, 100, 100]), 100, temperature=1.0, min_share=0.0)
    np.testing.assert_allclose(b.probability, [0.1, 0.3, 0.6])
    np.testing.assert_allclose(b.ideal, [10, 30, 60])
    assert b.budget.tolist() == [10, 30, 60]
    # τ = 2 halves C / τ: exp = 1, √3, √6
    b = cluster_budgets(np.log([1.0, 3.0, 6.0]), np.array([100, 100, 100]), 100, temperature=2.0, min_share=0.0)
    e = np.array([1.0, np.sqrt(3), np.sqrt(6)])
    np.testing.assert_allclose(b.probability, e / e.sum())
    assert b.budget.sum() == 100


def test_budget_cap_and_redistribution_by_hand():
    """Sizes 50, 50, 20 cap cluster 2 at 20 (ideal 60): the QP's solution shifts the others
    by the same λ: 10 + λ + 30 + λ + 20 = 100, λ = 20 -> 30, 50, 20 (cluster 1 exactly at
    its size). With sizes 50, 40, 20, cluster 1 caps too and cluster 0 takes the rest: 40."""
    c = np.log([1.0, 3.0, 6.0])
    assert cluster_budgets(c, np.array([50, 50, 20]), 100, 1.0, 0.0).budget.tolist() == [30, 50, 20]
    assert cluster_budgets(c, np.array([50, 40, 20]), 100, 1.0, 0.0).budget.tolist() == [40, 40, 20]
    # floor: min_share 0.5 of the uniform 100/4 = 12.5 -> 12 rows at least (or the cluster)
    c4 = np.log([1.0, 1.0, 1.0, 97.0])
    b = cluster_budgets(c4, np.array([100, 100, 5, 100]), 100, 1.0, 0.5)
    # ideal 1, 1, 1, 97; lb 12, 12, 5, 12; clip(ideal + λ): 12 + 12 + 5 + (97 + λ) = 100 -> λ = -26
    assert b.budget.tolist() == [12, 12, 5, 71]
    # a target at least the table keeps everything; rounding always sums to the target
    assert cluster_budgets(c, np.array([5, 6, 7]), 100).budget.tolist() == [5, 6, 7]
    b = cluster_budgets(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]), np.full(7, 40), 101, 0.1, 0.5)
    assert b.budget.sum() == 101 and (b.budget <= 40).all() and (b.budget >= 7).all()


def test_budget_validates():
    with pytest.raises(ValueError, match=r"^complexity"):
        cluster_budgets(np.array([np.nan, 1.0]), np.array([1, 1]), 1)
    with pytest.raises(ValueError, match=r"^sizes"):
        cluster_budgets(np.array([1.0, 1.0]), np.array([1.5, 1.0]), 1)
    with pytest.raises(ValueError, match=r"^temperature"):
        cluster_budgets(np.array([1.0, 1.0]), np.array([1, 1]), 1, temperature=0.0)
    with pytest.raises(ValueError, match=r"^centroids"):
        cluster_complexity(np.ones((1, 2), np.float32), np.zeros(1), np.ones(1, int))


def test_dbp_keeps_the_first_rows_of_the_order_and_streams_parts():
    """Cluster 0 keeps its 2 smallest keys (hard: nearest the centroid has the largest
    centroid_sim, so the smallest sims = farthest rows), cluster 1 its 1; ties go to the
    earlier part, then the earlier row. Parts streamed one at a time give the same rows."""
    cluster = np.array([0, 0, 1, 1, 0, 0, 1])
    key = np.array([0.3, 0.1, 0.2, 0.5, 0.2, 0.1, 0.2])
    keep = dbp_keep(cluster, key, np.array([2, 1]))
    assert keep.tolist() == [False, True, True, False, False, True, False]
    kept = dbp_select([(cluster[:3], key[:3]), (cluster[3:], key[3:])], np.array([2, 1]))
    got = sorted(zip(kept["part"].to_list(), kept["row"].to_list()))
    assert got == [(0, 1), (0, 2), (1, 2)]  # rows 1, 2 of part 0 and row 5 (part 1's row 2)
    rng = np.random.default_rng(0)
    cluster, key = rng.integers(0, 6, 500), rng.random(500)
    budget = np.array([3, 0, 50, 200, 7, 1])
    whole = dbp_keep(cluster, key, budget)
    cuts = [0, 1, 120, 121, 400, 500]
    kept = dbp_select([(cluster[a:b], key[a:b]) for a, b in zip(cuts, cuts[1:])], budget)
    rows = np.sort(np.array(cuts)[kept["part"].to_numpy()] + kept["row"].to_numpy())
    np.testing.assert_array_equal(rows, np.flatnonzero(whole))
    assert (np.bincount(cluster[whole], minlength=6) == np.minimum(budget, np.bincount(cluster, minlength=6))).all()
