"""Tests of laionlab.sampling.stimulus: seed 000's stimulus sets drawn by each strategy from a
seeded LAION-natural pool, against the loop the stimulus_sets asset ran before, and by hand."""

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_limits

from laionlab.coverage import cluster_coverage, nearest_centroid
from laionlab.sampling import effective_dimensionality, sample
from laionlab.sampling.stimulus import check_strategies, draw_stimulus_sets


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


def features(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) + 4.0 * np.eye(d)[rng.integers(0, 3, n)]).astype(np.float32)
    centroids = np.stack([4.0 * np.eye(d)[i] for i in range(3)]).astype(np.float32)
    return [f"p:{i:03d}" for i in range(n)], X, centroids


def previous_loop(uids, X, centroids, n, strategies, pool_size, seed):
    """The stimulus_sets asset's loop before it moved into the library."""
    rng = np.random.default_rng(seed)
    pool = np.sort(rng.choice(len(uids), size=min(pool_size, len(uids)), replace=False))
    X = X[pool]
    labels = nearest_centroid(X, centroids)
    rows, sets = [], []
    for name in strategies:
        kw = {"labels": labels} if name in ("stratified", "greedy_ed", "greedy_ed_kmeans") else {}
        idx = sample(name, X, n, seed=seed, **kw)
        sets.append(pl.DataFrame({"strategy": name, "rank": np.arange(len(idx)), "uid": [uids[pool[i]] for i in idx]}))
        rows.append(
            {
                "strategy": name,
                "n": len(idx),
                "effective_dim": effective_dimensionality(X[idx]),
                "clusters_hit": cluster_coverage(X[idx], centroids, min_count=1).share,
            }
        )
    return pl.concat(sets), pl.DataFrame(rows), len(pool)


def test_draw_stimulus_sets_equals_the_previous_loop():
    uids, X, centroids = features()
    strategies = ["random", "stratified", "kcenter", "greedy_ed"]
    drawn = draw_stimulus_sets(uids, X, centroids, 10, strategies, pool_size=80, seed=3)
    sets, diversity, pool = previous_loop(uids, X, centroids, 10, strategies, 80, 3)
    assert drawn.sets.equals(sets) and drawn.diversity.equals(diversity) and drawn.pool == pool == 80


def test_draw_stimulus_sets_by_hand():
    uids, X, centroids = features(n=30)
    messages = []

    class Log:
        def info(self, message):
            messages.append(message)

    drawn = draw_stimulus_sets(uids, X, centroids, 5, ["random", "kcenter"], pool_size=1000, seed=0, log=Log())
    assert drawn.pool == 30  # fewer rows than pool_size: all of them
    assert drawn.sets.columns == ["strategy", "rank", "uid"] and drawn.sets.height == 10
    for name in ("random", "kcenter"):
        chosen = drawn.sets.filter(pl.col("strategy") == name)
        assert chosen["rank"].to_list() == list(range(5)) and chosen["uid"].n_unique() == 5
        rows = [uids.index(u) for u in chosen["uid"]]
        row = drawn.diversity.row(by_predicate=pl.col("strategy") == name, named=True)
        assert row["effective_dim"] == pytest.approx(effective_dimensionality(X[rows]))
        hit = len(set(nearest_centroid(X[rows], centroids).tolist())) / len(centroids)
        assert row["clusters_hit"] == pytest.approx(hit) and row["n"] == 5
    assert [m.split(":")[0] for m in messages] == ["random", "kcenter"]


def test_bad_inputs_name_the_problem():
    uids, X, centroids = features(n=30)
    with pytest.raises(ValueError, match=r"unknown strategies \['psychic'\]; known: \["):
        check_strategies(["random", "psychic"])
    with pytest.raises(ValueError, match="strategies: expected a list"):
        check_strategies("random")
    assert check_strategies(("random", "kmeans")) == ["random", "kmeans"]
    with pytest.raises(ValueError, match=r"unknown strategies \['psychic'\]"):
        draw_stimulus_sets(uids, X, centroids, 5, ["psychic"], pool_size=10)
    with pytest.raises(ValueError, match=r"n=11 is larger than the LAION-natural pool \(10 rows\)"):
        draw_stimulus_sets(uids, X, centroids, 11, ["random"], pool_size=10)
    with pytest.raises(ValueError, match=r"X: expected one row per uid \(29\), got 30"):
        draw_stimulus_sets(uids[1:], X, centroids, 5, ["random"], pool_size=10)
    with pytest.raises(ValueError, match="n"):
        draw_stimulus_sets(uids, X, centroids, 0, ["random"], pool_size=10)
