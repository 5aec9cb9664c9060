"""Tests for laionlab.dedup: seed 004's within-cluster dedup rule and SemDeDup's, block by block."""

from __future__ import annotations

import numpy as np
import pytest

from laionlab.dedup import (
    dedup_keep,
    keep_from_max_sim,
    max_earlier_similarity,
    removal_curve,
    semantic,
)

EPS_VALUES = [0.05, 0.124, 0.2]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered():
    """5 interleaved clusters of 50 rows in 16-d, spreads 0.08-0.2 around unit centres, so
    within-cluster cosines straddle every threshold in EPS_VALUES."""
    rng = np.random.default_rng(1)
    spread = np.array([0.08, 0.1, 0.12, 0.15, 0.2])
    centres = _unit(rng.normal(size=(5, 16)))
    labels = rng.permutation(np.repeat(np.arange(5), 50))
    X = _unit(centres[labels] + spread[labels, None] * rng.normal(size=(250, 16)))
    # Block and brute-force float32 sums differ by ~1e-7: no pair may sit that close to a
    # threshold, or the comparison below would test rounding, not the rule.
    G = X.astype(np.float64) @ X.astype(np.float64).T
    earlier_same = (labels[:, None] == labels[None, :]) & np.tri(250, k=-1, dtype=bool)
    for eps in EPS_VALUES:
        assert np.abs(G[earlier_same] - float(np.float32(1 - eps))).min() > 1e-6
    return X, labels


def _brute_max_earlier(X, labels):
    """O(n^2) seed 004: max of the strict lower triangle of each cluster's Gram matrix."""
    G = X.astype(np.float64) @ X.astype(np.float64).T
    out = np.full(len(X), -np.inf)
    for i in range(len(X)):
        for j in range(i):
            if labels[j] == labels[i]:
                out[i] = max(out[i], G[i, j])
    return out


def _brute_keep(X, labels, eps, rule):
    thr = float(np.float32(1 - eps))
    if rule == "seed":
        return _brute_max_earlier(X, labels) <= thr
    # SemDeDup groups: connected components of s > 1 - eps inside a cluster; keep the earliest.
    G = X.astype(np.float64) @ X.astype(np.float64).T
    n = len(X)
    group = list(range(n))
    for i in range(n):  # rows in order: i takes the smallest group among its earlier neighbours
        for j in range(i):
            if labels[j] == labels[i] and G[i, j] > thr:
                gi, gj = group[i], group[j]
                if gi != gj:
                    lo, hi = min(gi, gj), max(gi, gj)
                    group = [lo if g == hi else g for g in group]
    return np.array([group[i] == i for i in range(n)])


# --- planted duplicates --------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    """3 clusters of 40 random unit vectors in 64-d (pairwise cosine << 0.876), plus copies
    with 1% noise planted later in the same cluster; one copy planted in another cluster."""
    rng = np.random.default_rng(7)
    n_per, d = 40, 64
    X = _unit(rng.normal(size=(3 * n_per, d)))
    labels = np.tile(np.arange(3), n_per)  # interleaved clusters
    # (original row, row that becomes its near-copy); the copy comes later, same cluster.
    plants = [(0, 30), (4, 61), (4, 100), (8, 11), (50, 119), (61, 88), (13, 16)]
    for src, dst in plants:
        assert labels[src] == labels[dst] and src < dst
        X[dst] = _unit(X[src : src + 1] + 0.01 * rng.normal(size=(1, d)))[0]
    # A copy of row 1 in row 2: same vector, other cluster, so not a duplicate here.
    X[2] = X[1]
    assert labels[1] != labels[2]
    return X, labels, sorted({dst for _, dst in plants})


@pytest.mark.parametrize("rule", ["seed", "semdedup"])
@pytest.mark.parametrize("block_rows", [1, 3, 7, 40_000])
def test_planted_copies_dropped_originals_kept(planted, rule, block_rows):
    X, labels, copies = planted
    keep = dedup_keep(X, labels, eps=0.124, block_rows=block_rows, rule=rule)
    assert np.flatnonzero(~keep).tolist() == copies


def test_planted_max_similarity(planted):
    X, labels, copies = planted
    m = max_earlier_similarity(X, labels, block_rows=5)
    assert m.dtype == np.float32
    assert np.all(m[copies] > 0.99)
    others = np.setdiff1d(np.arange(len(X)), copies)
    assert np.all(m[others] < 0.876)
    first = [np.flatnonzero(labels == c)[0] for c in range(3)]
    assert np.all(np.isneginf(m[first]))


# --- equality with brute force --------------------------------------------------------------


@pytest.mark.parametrize("block_rows", [1, 4, 16, 23, 50, 40_000])
def test_max_earlier_similarity_matches_brute_force(clustered, block_rows):
    X, labels = clustered
    got = max_earlier_similarity(X, labels, block_rows=block_rows)
    want = _brute_max_earlier(X, labels)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], atol=1e-6)


@pytest.mark.parametrize("rule", ["seed", "semdedup"])
@pytest.mark.parametrize("block_rows", [1, 4, 16, 23, 40_000])
@pytest.mark.parametrize("eps", EPS_VALUES)
def test_keep_matches_brute_force(clustered, rule, block_rows, eps):
    X, labels = clustered
    got = dedup_keep(X, labels, eps=eps, block_rows=block_rows, rule=rule)
    assert got.dtype == bool and got.shape == (len(X),)
    np.testing.assert_array_equal(got, _brute_keep(X, labels, eps, rule))


@pytest.mark.parametrize("eps", EPS_VALUES)
def test_semdedup_drops_a_superset_of_seed(clustered, eps):
    X, labels = clustered
    seed = dedup_keep(X, labels, eps=eps, block_rows=16)
    sem = dedup_keep(X, labels, eps=eps, block_rows=16, rule="semdedup")
    assert np.all(sem <= seed)  # dropped by seed => dropped by semdedup
    assert np.any(sem != seed)  # and the data tells the rules apart


def test_rules_differ_on_a_bridge():
    """a ~ c and b ~ c (cos 25 deg = 0.906), a !~ b (cos 50 deg = 0.643), in order a, b, c."""
    ang = np.deg2rad([0.0, 50.0, 25.0])
    X = np.stack([np.cos(ang), np.sin(ang), np.zeros(3)], axis=1).astype(np.float32)
    labels = np.zeros(3, dtype=np.int64)
    assert dedup_keep(X, labels).tolist() == [True, True, False]
    assert dedup_keep(X, labels, rule="semdedup").tolist() == [True, False, False]


def test_first_row_of_each_cluster_kept_and_singletons(clustered):
    X, labels = clustered
    labels = labels.copy()
    labels[17] = 99  # a one-row cluster
    for rule in ("seed", "semdedup"):
        keep = dedup_keep(X, labels, eps=0.5, block_rows=8, rule=rule)
        for c in np.unique(labels):
            assert keep[np.flatnonzero(labels == c)[0]]


def test_tiles_bounded_and_cover_earlier_pairs_once():
    rng = np.random.default_rng(0)
    X = _unit(rng.normal(size=(37, 8)))
    idx = np.arange(37)
    block_rows = 10
    tri = semantic._upper_mask(block_rows)
    seen = np.zeros((37, 37), dtype=int)
    for a in range(0, 37, block_rows):
        R = semantic._gather(X, idx[a : a + block_rows])
        for r0, c0, S in semantic._earlier_tiles(X, idx, a, R, block_rows, tri):
            assert S.shape[0] <= block_rows and S.shape[1] <= block_rows
            rows, cols = np.nonzero(np.isfinite(S))
            np.add.at(seen, (a + r0 + rows, c0 + cols), 1)
    np.testing.assert_array_equal(seen, np.tri(37, k=-1, dtype=int))


def test_float16_memmap_input(tmp_path, clustered):
    X, labels = clustered
    path = tmp_path / "emb.npy"
    np.save(path, X.astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    want = max_earlier_similarity(np.asarray(mm, dtype=np.float32), labels, block_rows=16)
    np.testing.assert_array_equal(max_earlier_similarity(mm, labels, block_rows=16), want)


# --- removal curve ---------------------------------------------------------------------------


def test_removal_curve_monotone_and_matches_counts(clustered):
    X, labels = clustered
    m = max_earlier_similarity(X, labels, block_rows=16)
    eps_values = [0.01, 0.05, 0.1, 0.124, 0.2, 0.3, 0.5, 0.9]
    curve = removal_curve(m, eps_values)
    assert [e for e, _ in curve] == eps_values
    fractions = [f for _, f in curve]
    assert fractions == sorted(fractions) and fractions[0] < fractions[-1]
    for eps, frac in curve:
        assert frac == np.count_nonzero(~dedup_keep(X, labels, eps=eps, block_rows=16)) / len(X)
        assert frac == np.mean(~keep_from_max_sim(m, eps))


def test_removal_curve_table_from_known_maxima():
    """Four rows whose max earlier similarities are 0.5, 0.85, 0.95 and -inf (no earlier row):
    ε = 0.1 drops the row at 0.95 (1/4), ε = 0.2 the rows above 0.8 (2/4)."""
    from laionlab.dedup import removal_curve_table

    m = np.array([0.5, 0.85, 0.95, -np.inf], dtype=np.float32)
    table = removal_curve_table(removal_curve(m, [0.1, 0.2]))
    assert table.columns == ["eps", "drop_when_cosine_above", "fraction_removed"]
    assert table.to_dicts() == [
        {"eps": 0.1, "drop_when_cosine_above": 0.9, "fraction_removed": 0.25},
        {"eps": 0.2, "drop_when_cosine_above": 0.8, "fraction_removed": 0.5},
    ]
    assert removal_curve_table([(1 / 3, 2 / 3)]).row(0) == (1 / 3, 0.6667, 0.6667)


# --- validation ------------------------------------------------------------------------------


BAD_EPS = [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), "0.1", True]


@pytest.mark.parametrize("eps", BAD_EPS)
def test_bad_eps(clustered, eps):
    X, labels = clustered
    with pytest.raises(ValueError, match=r"^eps"):
        dedup_keep(X, labels, eps=eps)
    with pytest.raises(ValueError, match=r"^eps"):
        dedup_keep(X, labels, eps=eps, rule="semdedup")
    with pytest.raises(ValueError, match=r"^eps_values"):
        removal_curve(np.zeros(3, dtype=np.float32), [0.1, eps])


def test_bad_inputs(clustered):
    X, labels = clustered
    with pytest.raises(ValueError, match=r"^emb"):
        dedup_keep(X[0], labels[:1])
    with pytest.raises(ValueError, match=r"^labels"):
        dedup_keep(X, labels[:-1])
    with pytest.raises(ValueError, match=r"^labels"):
        dedup_keep(X, labels[:, None])
    with pytest.raises(ValueError, match=r"^labels"):
        dedup_keep(X, labels.astype(np.float64))
    bad = X.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"^emb"):
        dedup_keep(bad, labels)
    with pytest.raises(ValueError, match=r"^emb.*L2-normalised"):
        max_earlier_similarity(2 * X, labels)
    with pytest.raises(ValueError, match=r"^block_rows"):
        dedup_keep(X, labels, block_rows=0)
    with pytest.raises(ValueError, match=r"^rule"):
        dedup_keep(X, labels, rule="greedy")
    with pytest.raises(ValueError, match=r"^max_sim"):
        removal_curve(np.array([0.1, np.nan]), [0.1])


@pytest.mark.parametrize("rule", ["seed", "semdedup"])
@pytest.mark.parametrize("group_rows", [1, 37, 10_000])
def test_dedup_shards_equals_dedup_on_the_concatenation(clustered, rule, group_rows):
    """Cluster-sorted shards streamed a few clusters at a time give the same flags as the
    whole table, whose stable order is shard order then row order."""
    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards

    X, labels = clustered
    cuts = [0, 60, 61, 180, len(X)]  # one shard of a single row
    shards, rows = [], []
    for a, b in zip(cuts, cuts[1:]):
        order = a + np.argsort(labels[a:b], kind="stable")
        shards.append(ClusterShard(X[order], cluster_offsets(labels[order], 5)))
        rows.append(order)
    seen = []
    got = dedup_shards(
        shards, eps=0.124, rule=rule, block_rows=7, group_rows=group_rows, progress=lambda d, k: seen.append(d)
    )
    cat = np.concatenate(rows)
    want_keep = dedup_keep(X[cat], labels[cat], eps=0.124, block_rows=7, rule=rule)
    want_sim = max_earlier_similarity(X[cat], labels[cat], block_rows=7)
    np.testing.assert_array_equal(np.concatenate([k for k, _ in got]), want_keep)
    np.testing.assert_allclose(np.concatenate([s for _, s in got]), want_sim, rtol=1e-6)
    assert seen[-1] == 5 and seen == sorted(seen)
    assert (~want_keep).any()  # the case exercises drops


@pytest.mark.parametrize("group_rows", [1, 37, 10_000])
@pytest.mark.parametrize("from_shard", [1, 3])
def test_dedup_of_the_last_shards_equals_their_slice_of_the_whole(clustered, group_rows, from_shard):
    """Appending parts: the flags of shards[from_shard:] alone equal their rows' flags in the
    whole table's dedup, brute force included; only clusters with rows there are read (a
    cluster absent from the new part costs nothing)."""
    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards

    X, labels = clustered
    cuts = [0, 60, 61, 180, len(X)]
    shards, rows = [], []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        order = a + np.argsort(labels[a:b], kind="stable")
        if i == 3:  # the last part has no row of cluster 4
            order = order[labels[order] != 4]
        shards.append(ClusterShard(X[order], cluster_offsets(labels[order], 5)))
        rows.append(order)
    whole = dedup_shards(shards, eps=0.124, block_rows=7, group_rows=group_rows)
    tail = dedup_shards(shards, eps=0.124, block_rows=7, group_rows=group_rows, from_shard=from_shard)
    assert len(tail) == len(shards) - from_shard
    for (keep, sim), (want_keep, want_sim) in zip(tail, whole[from_shard:]):
        np.testing.assert_array_equal(keep, want_keep)
        np.testing.assert_allclose(sim, want_sim, rtol=1e-6)
    cat = np.concatenate(rows)
    brute = _brute_max_earlier(X[cat], labels[cat])[sum(len(r) for r in rows[:from_shard]) :]
    np.testing.assert_allclose(np.concatenate([s for _, s in tail]), brute, rtol=1e-5)

    class Counting(np.ndarray):
        reads: list = []

        def __getitem__(self, key):
            Counting.reads.append(key)
            return super().__getitem__(key)

    first = shards[0]
    spy = ClusterShard(first.vectors.view(Counting), first.offsets)
    dedup_shards([spy, *shards[1:]], eps=0.124, block_rows=7, group_rows=group_rows, from_shard=3)
    read = {
        c
        for key in Counting.reads
        for c in range(5)
        if first.offsets[c] < first.offsets[c + 1] and key.start <= first.offsets[c] < key.stop
    }
    assert 4 not in read and read


def test_max_earlier_similarity_from_a_row(clustered):
    X, labels = clustered
    got = max_earlier_similarity(X, labels, block_rows=7, rows_from=100)
    want = max_earlier_similarity(X, labels, block_rows=7)
    np.testing.assert_allclose(got[100:], want[100:], rtol=1e-6)
    assert np.isneginf(got[:100]).all()


def test_incremental_dedup_needs_the_seed_rule(clustered):
    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards

    X, labels = clustered
    order = np.argsort(labels, kind="stable")
    good = ClusterShard(X[order], cluster_offsets(labels[order], 5))
    with pytest.raises(ValueError, match="from_shard"):
        dedup_shards([good, good], rule="semdedup", from_shard=1)
    with pytest.raises(ValueError, match="from_shard"):
        dedup_shards([good, good], from_shard=2)


def test_dedup_shards_rejects_inconsistent_shards(clustered):
    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards

    X, labels = clustered
    order = np.argsort(labels, kind="stable")
    good = ClusterShard(X[order], cluster_offsets(labels[order], 5))
    with pytest.raises(ValueError, match="one cluster count"):
        dedup_shards([good, ClusterShard(X[order], cluster_offsets(labels[order], 6))])
    with pytest.raises(ValueError, match=r"shards\[1\]"):
        dedup_shards([good, ClusterShard(X[order][:10], good.offsets)])
    with pytest.raises(ValueError, match="ascending"):
        cluster_offsets(labels, 5)
    with pytest.raises(ValueError, match="eps"):
        dedup_shards([good], eps=0.0)


def _progress_lines(caplog, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "laionlab.dedup.semantic" and r.getMessage().startswith(start)
    ]


def test_dedup_shards_logs_progress_over_rows(clustered, caplog):
    """A progress line per group of clusters (every_s = 0): rows done of the whole table, rate,
    ETA; with the default period a short run logs nothing."""
    import logging

    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards

    X, labels = clustered
    halves = [np.arange(0, 125), np.arange(125, 250)]
    shards = []
    for rows in halves:
        order = rows[np.argsort(labels[rows], kind="stable")]
        shards.append(ClusterShard(X[order], cluster_offsets(labels[order], 5)))
    caplog.set_level(logging.INFO, logger="laionlab")
    dedup_shards(shards, block_rows=7, group_rows=100)  # default log_every_s
    assert not _progress_lines(caplog, "")
    dedup_shards(shards, block_rows=7, group_rows=100, log_every_s=0.0)
    lines = _progress_lines(caplog, "semantic dedup (5 clusters, 2 shards): ")
    done = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert len(lines) >= 4 and done == sorted(done) and done[0] < 250 and done[-1] == 250
    assert all("/250 rows" in line and "rows/s" in line and "ETA" in line for line in lines)
    # the per-cluster loop inside each group reports too
    assert _progress_lines(caplog, "max earlier similarity: ")


@pytest.mark.parametrize("rule", ["seed", "semdedup"])
def test_removal_summary_over_shards_matches_brute_force(clustered, rule):
    """Totals of dedup_shards' per-shard flags equal a brute-force dedup of the concatenation:
    rows removed by the chosen rule, and the seed rule's removal fraction at every ε."""
    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards, removal_summary

    X, labels = clustered
    cuts = [0, 90, 91, 200, len(X)]
    shards, rows = [], []
    for a, b in zip(cuts, cuts[1:]):
        order = a + np.argsort(labels[a:b], kind="stable")
        shards.append(ClusterShard(X[order], cluster_offsets(labels[order], 5)))
        rows.append(order)
    flags = dedup_shards(shards, eps=0.124, rule=rule, block_rows=7, group_rows=40)
    got = removal_summary(flags, EPS_VALUES)
    cat = np.concatenate(rows)
    brute_max = _brute_max_earlier(X[cat], labels[cat])
    want_removed = int((~_brute_keep(X[cat], labels[cat], 0.124, rule)).sum())
    assert got.rows == len(X) and got.removed == want_removed > 0
    assert got.removal_fraction == want_removed / len(X)
    assert [e for e, _ in got.curve] == EPS_VALUES
    want_curve = [float(np.mean(brute_max > float(np.float32(1 - e)))) for e in EPS_VALUES]
    np.testing.assert_allclose([f for _, f in got.curve], want_curve, rtol=0, atol=1e-12)
    assert 0 < want_curve[0] < want_curve[-1] < 1  # the ε values straddle the data
    # the seed curve at the chosen ε is what the seed rule removes; semdedup removes at least that
    seed_removed = int((~_brute_keep(X[cat], labels[cat], 0.124, "seed")).sum())
    assert got.curve[1][1] == seed_removed / len(X) and got.removed >= seed_removed


def test_removal_summary_bad_inputs():
    from laionlab.dedup import removal_summary

    ok = (np.array([True, False]), np.array([-np.inf, 0.99], np.float32))
    empty = removal_summary([], [0.1])
    assert (empty.rows, empty.removed, empty.curve, empty.removal_fraction) == (0, 0, [(0.1, 0.0)], 0.0)
    with pytest.raises(ValueError, match=r"^flags\[1\]: expected a bool keep mask"):
        removal_summary([ok, (np.array([1, 0]), ok[1])], [0.1])
    with pytest.raises(ValueError, match=r"^flags\[0\]: expected a bool keep mask of the shape"):
        removal_summary([(ok[0][:1], ok[1])], [0.1])
    with pytest.raises(ValueError, match=r"^eps_values"):
        removal_summary([ok], [1.0])


# --- SemDeDup's keep order (hard / easy / random) -------------------------------------------


def _centroid_sims(X, labels):
    """Each row's cosine to its cluster's normalised mean (the role of dedup_assignments.centroid_sim)."""
    k = labels.max() + 1
    C = _unit(np.stack([X[labels == c].mean(axis=0) for c in range(k)]))
    return np.einsum("ij,ij->i", X, C[labels]).astype(np.float32)


def _semdedup_loop(X, labels, sims, eps, which_to_keep, shuffles=None):
    """A small re-implementation of facebookresearch/SemDeDup: sort_clusters.py's
    rank_within_cluster (Python's stable ``sorted`` by cosine distance to the centroid,
    descending for keep_hard) and semdedup.py's per-cluster loop (random: the cluster list
    shuffled; easy: the list reversed; then M = max(triu(S, 1), dim=0), drop M > 1 - eps)."""
    remove = np.zeros(len(X), dtype=bool)
    for c in np.unique(labels):
        members = list(np.flatnonzero(labels == c))
        cluster = sorted(((i, 1.0 - float(sims[i])) for i in members), key=lambda t: t[1], reverse=True)
        if len(cluster) == 1:
            continue
        positions = list(range(len(cluster)))
        if which_to_keep == "random":
            positions = list(shuffles[c])
        if which_to_keep == "easy":
            positions = positions[::-1]
        ids = [cluster[p][0] for p in positions]
        E = X[ids].astype(np.float64)
        S = E @ E.T
        np.fill_diagonal(S, 0.0)
        M = np.triu(S, 1).max(axis=0)
        remove[ids] = M > float(np.float32(1 - eps))
    return ~remove


def test_keep_orders_on_a_constructed_cluster():
    """One cluster around (1, 0): a (0.05 rad from the centroid), b (0.30 rad), d (-0.80 rad).
    a ~ b (cosine 0.969), d far from both. earlier_row and easy keep a; hard keeps b, the
    one farther from the centroid. A chain p ~ q ~ r (p !~ r) visited r, q, p by hard drops
    q and p: a row is dropped for an earlier duplicate even when that one was dropped."""
    from laionlab.dedup import keep_order_keys

    def at(*angles):
        return np.array([[np.cos(t), np.sin(t)] for t in angles], dtype=np.float32)

    X, labels = at(0.05, 0.30, -0.80), np.zeros(3, dtype=np.int64)
    sims = X[:, 0]  # cosine to the centroid (1, 0)
    want = {"earlier_row": [True, False, True], "easy": [True, False, True], "hard": [False, True, True]}
    for keep, expected in want.items():
        keys = keep_order_keys(sims, keep)
        assert dedup_keep(X, labels, eps=0.124, keys=keys).tolist() == expected, keep
    X = at(0.0, 0.25, 0.5)  # threshold cos(0.3): p~q, q~r, p!~r
    eps = 1 - float(np.cos(0.3))
    assert dedup_keep(X, labels, eps=eps, keys=keep_order_keys(X[:, 0], "hard")).tolist() == [False, False, True]
    assert dedup_keep(X, labels, eps=eps, keys=keep_order_keys(X[:, 0], "easy")).tolist() == [True, False, False]
    # SemDeDup's grouping rule keeps one row per connected group: the first in the order
    assert dedup_keep(X, labels, eps=eps, rule="semdedup", keys=keep_order_keys(X[:, 0], "hard")).tolist() == [
        False,
        False,
        True,
    ]


@pytest.mark.parametrize("keep", ["hard", "easy", "random"])
@pytest.mark.parametrize("eps", EPS_VALUES)
def test_keep_order_matches_semdedups_own_loop(clustered, keep, eps):
    from laionlab.dedup import keep_order_keys

    X, labels = clustered
    sims = _centroid_sims(X, labels)
    assert len(np.unique(sims)) == len(sims)  # no ties: easy's reversed ties cannot matter
    keys = keep_order_keys(sims, keep, seed=3)
    shuffles = None
    if keep == "random":
        # the shuffle our keys make, written as SemDeDup's positions into its hard-sorted list
        shuffles = {}
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            hard = sorted(members, key=lambda i: 1.0 - float(sims[i]), reverse=True)
            rank = {i: p for p, i in enumerate(hard)}
            shuffles[c] = [rank[i] for i in members[np.argsort(keys[members], kind="stable")]]
    want = _semdedup_loop(X, labels, sims, eps, keep, shuffles)
    got = dedup_keep(X, labels, eps=eps, block_rows=7, keys=keys)
    np.testing.assert_array_equal(got, want)
    assert (~got).any() and got.any()
    if keep != "random":  # the order matters here: a different row of some group survives
        assert not np.array_equal(got, dedup_keep(X, labels, eps=eps, block_rows=7))


def test_keep_order_keys_random_is_a_seeded_permutation_and_validates():
    from laionlab.dedup import keep_order_keys

    sims = np.linspace(0.5, 0.9, 50).astype(np.float32)
    assert keep_order_keys(sims, "earlier_row") is None
    np.testing.assert_array_equal(keep_order_keys(sims, "hard"), sims.astype(np.float64))
    np.testing.assert_array_equal(keep_order_keys(sims, "easy"), -sims.astype(np.float64))
    a, b = keep_order_keys(sims, "random", seed=1, stream=7), keep_order_keys(sims, "random", seed=1, stream=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, keep_order_keys(sims, "random", seed=1, stream=8))
    with pytest.raises(ValueError, match=r"^keep"):
        keep_order_keys(sims, "farthest")
    with pytest.raises(ValueError, match=r"^centroid_sim"):
        keep_order_keys(np.array([0.1, np.nan]), "hard")
    X = _unit(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"^keys"):
        dedup_keep(X, np.zeros(3, dtype=int), keys=np.zeros(2))
    with pytest.raises(ValueError, match=r"^rows_from"):
        max_earlier_similarity(X, np.zeros(3, dtype=int), rows_from=1, keys=np.zeros(3))


def _shards_with_keys(X, labels, keys):
    from laionlab.dedup import ClusterShard, cluster_offsets

    cuts = [0, 60, 61, 180, len(X)]
    shards, shard_keys, rows = [], [], []
    for a, b in zip(cuts, cuts[1:]):
        order = a + np.argsort(labels[a:b], kind="stable")
        shards.append(ClusterShard(X[order], cluster_offsets(labels[order], 5)))
        shard_keys.append(keys[order])
        rows.append(order)
    return shards, shard_keys, rows


@pytest.mark.parametrize("rule", ["seed", "semdedup"])
@pytest.mark.parametrize("group_rows", [1, 37, 10_000])
def test_dedup_shards_keep_order_across_shards_equals_the_whole_table(clustered, rule, group_rows):
    """keys_across_shards: SemDeDup's order over all parts is the order on the concatenation."""
    from laionlab.dedup import dedup_shards, keep_order_keys

    X, labels = clustered
    keys = keep_order_keys(_centroid_sims(X, labels), "hard")
    shards, shard_keys, rows = _shards_with_keys(X, labels, keys)
    got = dedup_shards(
        shards, eps=0.124, rule=rule, block_rows=7, group_rows=group_rows, keys=shard_keys, keys_across_shards=True
    )
    cat = np.concatenate(rows)
    want = dedup_keep(X[cat], labels[cat], eps=0.124, block_rows=7, rule=rule, keys=keys[cat])
    np.testing.assert_array_equal(np.concatenate([k for k, _ in got]), want)
    want_sim = max_earlier_similarity(X[cat], labels[cat], block_rows=7, keys=keys[cat])
    np.testing.assert_allclose(np.concatenate([s for _, s in got]), want_sim, rtol=1e-6)
    with pytest.raises(ValueError, match=r"^from_shard"):
        dedup_shards(shards, keys=shard_keys, keys_across_shards=True, from_shard=1)


@pytest.mark.parametrize("from_shard", [0, 1, 3])
def test_dedup_shards_keep_order_within_shards_is_incremental(clustered, from_shard):
    """keys inside each shard (laion_dedup's keep order): earlier shards first, then the key,
    i.e. the order of the composite key (shard, key); the last shards' flags alone equal
    their slice of the whole."""
    from laionlab.dedup import dedup_shards, keep_order_keys

    X, labels = clustered
    keys = keep_order_keys(_centroid_sims(X, labels), "hard")
    shards, shard_keys, rows = _shards_with_keys(X, labels, keys)
    got = dedup_shards(shards, eps=0.124, block_rows=7, group_rows=37, keys=shard_keys, from_shard=from_shard)
    cat = np.concatenate(rows)
    composite = np.concatenate([np.full(len(r), 10.0 * i) for i, r in enumerate(rows)]) + keys[cat]
    want = dedup_keep(X[cat], labels[cat], eps=0.124, block_rows=7, keys=composite)
    skip = sum(len(r) for r in rows[:from_shard])
    np.testing.assert_array_equal(np.concatenate([k for k, _ in got]), want[skip:])
    across = dedup_shards(shards, eps=0.124, block_rows=7, keys=shard_keys, keys_across_shards=True)
    if from_shard == 0:  # the within-part order is not SemDeDup's order over all parts
        assert not np.array_equal(np.concatenate([k for k, _ in across]), want)


def test_duplicate_partner_finds_the_earlier_row_the_recorded_maximum_came_from():
    from laionlab.dedup import duplicate_partner, max_earlier_similarity

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 16)).astype(np.float32)
    emb[7] = emb[3] + 0.05 * rng.normal(size=16)  # row 7 is a near copy of row 3
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    max_sim = max_earlier_similarity(emb, np.zeros(12, dtype=np.int64))
    others = [i for i in range(12) if i != 7]
    index, cos = duplicate_partner(emb[7], emb[others], max_sim[7])
    assert others[index] == 3 and cos == pytest.approx(max_sim[7], abs=1e-5)
    # an exact tie (two copies): the kept one, else the first
    copies = np.stack([emb[3], emb[3], emb[0]])
    assert duplicate_partner(emb[3], copies, 1.0)[0] == 0
    assert duplicate_partner(emb[3], copies, 1.0, kept=np.array([False, True, True]))[0] == 1
    # a maximum from other vectors: the nearest candidate
    assert duplicate_partner(emb[7], emb[[0, 3]], 0.123)[0] == 1
    with pytest.raises(ValueError, match="candidates"):
        duplicate_partner(emb[0], emb[:0], 0.5)
    with pytest.raises(ValueError, match="kept"):
        duplicate_partner(emb[3], copies, 1.0, kept=np.array([True]))
