"""laionlab.dedup.pools (seed 004): the max-similarity and candidate tables of the eval-to-LAION
search, the candidate matrix and pruning rule read back from them, and the pruned pool streamed
part by part, on small hand-made inputs."""

import warnings

import numpy as np
import polars as pl
import pytest

from laionlab.dedup import subsample_parts
from laionlab.dedup.pools import (
    PoolSizes,
    candidate_matrix,
    candidate_table,
    candidate_uids,
    concat_parquets,
    max_sim_table,
    plot_sample,
    pool_parts,
    pool_picks,
    pruned_uids,
    rows_in_parquets,
    write_pool,
)
from laionlab.neighbours import search_parts


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_max_sim_table_is_one_row_per_laion_row():
    frame = max_sim_table(["p0:0", "p0:1"], "p0", np.array([0.5, 0.25], np.float32))
    want = {"uid": ["p0:0", "p0:1"], "part": ["p0", "p0"], "max_sim": [0.5, 0.25]}
    assert frame.to_dict(as_series=False) == want
    assert frame.schema == pl.Schema({"uid": pl.String, "part": pl.String, "max_sim": pl.Float32})
    empty = max_sim_table([], "p1", np.empty(0, np.float32))  # an empty part keeps the schema
    assert empty.height == 0 and empty.schema == frame.schema
    with pytest.raises(ValueError, match=r"^max_sims: expected one value per uid \(2\), got 1"):
        max_sim_table(["a", "b"], "p0", np.zeros(1, np.float32))


def test_plot_sample_keeps_every_nth_value():
    values = np.arange(250_000)
    np.testing.assert_array_equal(plot_sample(values), values[::2])
    np.testing.assert_array_equal(plot_sample(values, at_most=1_000), values[::250])
    small = np.arange(7)
    np.testing.assert_array_equal(plot_sample(small), small)
    assert len(plot_sample(np.empty(0))) == 0
    with pytest.raises(ValueError, match=r"^at_most:"):
        plot_sample(small, at_most=0)


@pytest.fixture
def searched():
    """Three parts of 2-D unit rows; the queries point along +x, so part c (all along -x)
    holds no top-2 candidate."""
    parts = {
        "a": (["a:0", "a:1", "a:2"], unit([[1, 0.1], [0, 1], [1, -0.5]])),
        "b": (["b:0", "b:1"], unit([[1, 0.01], [1, 1]])),
        "c": (["c:0", "c:1"], unit([[-1, 0.2], [-1, -0.3]])),
    }
    queries = unit([[1, 0], [1, 0.2]])
    found = search_parts(queries, iter(parts.values()), 2, device="cpu")
    return parts, queries, found


def test_candidate_uids_name_the_top_k_and_read_only_parts_holding_one(searched):
    parts, queries, found = searched
    read = []

    def read_uids(part):
        read.append(part)
        return pl.Series(parts[part][0])

    names = candidate_uids(found, list(parts), read_uids)
    everything = np.concatenate([uids for uids, _ in parts.values()])
    np.testing.assert_array_equal(names, everything[found.top.ids])
    # brute force: the two most similar rows of each query
    sims = queries @ np.concatenate([X for _, X in parts.values()]).T
    np.testing.assert_array_equal(names, everything[np.argsort(-sims, axis=1)[:, :2]])
    assert read == ["a", "b"]
    shrunk = {**{p: uids for p, (uids, _) in parts.items()}, "b": ["b:0"]}  # part b changed since the search
    with pytest.raises(ValueError, match=r"^part 'b': 1 uids read back, but the search saw 2 rows"):
        candidate_uids(found, list(parts), lambda part: pl.Series(shrunk[part]))
    with pytest.raises(ValueError, match=r"^parts: the search covered 3 parts, got 2 names"):
        candidate_uids(found, ["a", "b"], read_uids)


def test_candidate_table_is_long_in_eval_index_rank_order(searched):
    parts, _, found = searched
    names = candidate_uids(found, list(parts), lambda part: pl.Series(parts[part][0]))
    table = candidate_table(found.top.scores, names)
    assert table.columns == ["eval_index", "rank", "uid", "sim"] and table.schema["uid"] == pl.String
    assert table["eval_index"].to_list() == [0, 0, 1, 1] and table["rank"].to_list() == [0, 1, 0, 1]
    assert table["uid"].to_list() == names.ravel().tolist()
    np.testing.assert_array_equal(table["sim"].to_numpy(), found.top.scores.ravel())
    # what eval_to_laion_similarity built in its body before
    q, kk = found.top.ids.shape
    before = pl.DataFrame(
        {
            "eval_index": np.repeat(np.arange(q), kk),
            "rank": np.tile(np.arange(kk), q),
            "uid": names.ravel(),
            "sim": found.top.scores.ravel(),
        },
        schema_overrides={"uid": pl.String},
    )
    assert table.equals(before)
    with pytest.raises(ValueError, match=r"^uids: expected the 2-D shape of scores \(2, 2\)"):
        candidate_table(found.top.scores, names[:, :1])


# Two eval samples: sample 0 has candidates b (0.9), a (0.4); sample 1 has only c (0.8) in
# its rank-0 slot (its rank-1 slot is empty).
CANDIDATES = pl.DataFrame(
    {"eval_index": [0, 0, 1], "rank": [0, 1, 0], "uid": ["b", "a", "c"], "sim": np.array([0.9, 0.4, 0.8], np.float32)}
)


def test_candidate_matrix_indexes_the_sorted_distinct_uids():
    m = candidate_matrix(CANDIDATES, 3)  # eval sample 2 has no candidate at all
    assert m.uids.to_list() == ["a", "b", "c"] and m.k == 2
    np.testing.assert_array_equal(m.ids, [[1, 0], [2, -1], [-1, -1]])
    want = np.array([[0.9, 0.4], [0.8, -np.inf], [-np.inf, -np.inf]], np.float32)
    np.testing.assert_array_equal(m.scores, want)
    assert m.ids.dtype == np.int64 and m.scores.dtype == np.float32
    with pytest.raises(ValueError, match=r"^candidates: expected eval_index values in \[0, 1\).*up to 1"):
        candidate_matrix(CANDIDATES, 1)
    with pytest.raises(ValueError, match=r"^candidates: .*got no row"):
        candidate_matrix(CANDIDATES.clear(), 3)


def test_pruned_uids_strict_threshold_and_one_row_for_the_rest_of_laion():
    m = candidate_matrix(CANDIDATES, 2)
    # sample 0 (threshold 0.4): b above, a exactly at it (kept); sample 1 (0.9): c below
    pruned, saturated = pruned_uids(m, np.array([0.4, 0.9], np.float32), laion_rows=10)
    assert pruned.to_list() == ["b"] and saturated.tolist() == [False, False]
    # sample 0 at threshold 0.1: both candidates above; LAION holds rows beyond the three
    # candidates, so rows past its k may be above too: saturated (prune_mask warns)
    with pytest.warns(UserWarning, match=r"1 eval sample\(s\) have all 2 candidates"):
        pruned, saturated = pruned_uids(m, np.array([0.1, 0.9], np.float32), laion_rows=10)
    assert pruned.to_list() == ["a", "b"] and saturated.tolist() == [True, False]
    # LAION is just a and b (k covers it all): not saturated
    only = candidate_matrix(CANDIDATES.filter(pl.col("eval_index") == 0), 1)
    pruned, saturated = pruned_uids(only, np.array([0.1], np.float32), laion_rows=2)
    assert pruned.to_list() == ["a", "b"] and not saturated.any()
    with pytest.raises(ValueError, match=r"^thresholds:"):
        pruned_uids(m, np.array([0.1], np.float32), laion_rows=10)


def test_pruned_uids_equals_the_previous_in_asset_computation():
    from laionlab.dedup import prune_mask

    rng = np.random.default_rng(3)
    q, k, laion_rows = 6, 4, 40
    rows = [(i, r, f"u{rng.integers(0, 15):02d}", rng.random()) for i in range(q) for r in range(k)]
    candidates = pl.DataFrame(rows, schema=["eval_index", "rank", "uid", "sim"], orient="row").unique(
        ["eval_index", "uid"], keep="first", maintain_order=True
    )
    thresholds = rng.random(q).astype(np.float32)
    m = candidate_matrix(candidates, q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pruned, saturated = pruned_uids(m, thresholds, laion_rows)
        # pruned_pools' body before: prune over the candidates plus one row for the rest of LAION
        unique = candidates["uid"].unique().sort()
        keep, want_saturated = prune_mask(m.ids, m.scores, thresholds, len(unique) + 1, return_saturated=True)
    assert pruned.equals(unique.filter(pl.Series(~keep[: len(unique)])))
    np.testing.assert_array_equal(saturated, want_saturated)


@pytest.fixture
def dedup_parts(tmp_path):
    """Two laion_dedup-like part files (uid, keep) under tmp_path."""
    p0 = pl.DataFrame(
        {"uid": ["p0:3", "p0:1", "p0:2", "p0:0"], "keep": [True, True, False, True], "cluster": [0, 1, 0, 1]}
    )
    p1 = pl.DataFrame({"uid": ["p1:0", "p1:1", "p1:2"], "keep": [True, True, True], "cluster": [1, 1, 0]})
    uris = []
    for name, frame in (("p0.parquet", p0), ("p1.parquet", p1)):
        frame.write_parquet(tmp_path / name)
        uris.append(str(tmp_path / name))
    return uris


def test_rows_in_parquets_and_concat_parquets(dedup_parts):
    assert rows_in_parquets(dedup_parts) == 7 and rows_in_parquets([]) == 0
    both = concat_parquets(dedup_parts, ["uid"])
    assert both.columns == ["uid"]
    assert both["uid"].to_list() == ["p0:3", "p0:1", "p0:2", "p0:0", "p1:0", "p1:1", "p1:2"]
    assert concat_parquets(dedup_parts[1:]).columns == ["uid", "keep", "cluster"]
    with pytest.raises(ValueError, match=r"^uris: expected at least one"):
        concat_parquets([])


def test_pool_parts_are_the_kept_rows_minus_the_pruned_in_uid_order(dedup_parts):
    parts = pool_parts(dedup_parts, pl.Series(["p0:3", "p1:1", "x"]))
    got = [(name, kept, pool["uid"].to_list()) for name, kept, pool in parts]
    assert got == [("p0.parquet", 3, ["p0:0", "p0:1"]), ("p1.parquet", 3, ["p1:0", "p1:2"])]


def test_write_pool_streams_each_part_and_counts_the_stages(dedup_parts):
    pruned, written = pl.Series(["p0:3", "p1:1"]), {}

    def write(frame, name):
        written[name] = frame["uid"].to_list()

    counts = write_pool(dedup_parts, pruned, write)
    assert written == {"p0.parquet": ["p0:0", "p0:1"], "p1.parquet": ["p1:0", "p1:2"]}
    assert counts == PoolSizes(deduplicated=6, pruned=4, final=4) and counts.pruned_away == 2
    stages = {"stage": ["laion", "deduplicated", "pruned", "final"], "rows": [7, 6, 4, 4]}
    assert counts.table(7).to_dict(as_series=False) == stages
    # a seeded subsample of 3: the picks are subsample_parts over the pruned parts' sizes
    picks = pool_picks(dedup_parts, pruned, 3, seed=5, eval_name="hand")
    assert all(np.array_equal(a, b) for a, b in zip(picks, subsample_parts([2, 2], 3, 5)))
    written.clear()
    counts = write_pool(dedup_parts, pruned, write, picks)
    assert counts == PoolSizes(6, 4, 3)
    full = {"p0.parquet": ["p0:0", "p0:1"], "p1.parquet": ["p1:0", "p1:2"]}
    assert written == {name: [uids[i] for i in p] for (name, uids), p in zip(full.items(), picks)}
    assert pool_picks(dedup_parts, pruned, None, seed=5) is None
    with pytest.raises(ValueError, match=r"^target_size=5 is larger than the pruned pool for hand \(4 rows\)"):
        pool_picks(dedup_parts, pruned, 5, seed=0, eval_name="hand")
    with pytest.raises(ValueError, match=r"^picks: expected one array per part file \(2\), got 1"):
        write_pool(dedup_parts, pruned, lambda frame, name: None, picks[:1])


def test_pruned_examples_are_the_top_candidates_above_each_threshold_and_the_nearest_kept():
    from laionlab.dedup import pruned_examples

    # eval 0: two rows above 0.5; eval 1: none above 0.9; eval 2: all three above 0.1
    candidates = pl.DataFrame(
        {
            "eval_index": [0, 0, 0, 1, 1, 2, 2, 2],
            "rank": [0, 1, 2, 0, 1, 0, 1, 2],
            "uid": ["a", "b", "c", "d", "e", "f", "g", "h"],
            "sim": [0.9, 0.7, 0.5, 0.8, 0.2, 0.6, 0.5, 0.4],
        }
    )
    got = pruned_examples(candidates, np.array([0.5, 0.9, 0.1]), samples=5, per_sample=1)
    assert got.select("eval_index", "uid", "pruned").rows() == [(0, "a", True), (0, "c", False), (2, "f", True)]
    both = pruned_examples(candidates, np.array([0.5, 0.9, 0.1]), samples=5, per_sample=5)
    assert both.filter(pl.col("eval_index") == 0)["uid"].to_list() == ["a", "b", "c"]  # 0.5 is not above 0.5
    one = pruned_examples(candidates, np.array([0.5, 0.9, 0.1]), samples=1, per_sample=1, seed=3)
    assert one["eval_index"].n_unique() == 1 and one["eval_index"][0] in (0, 2)
    assert pruned_examples(candidates, np.array([1.0, 1.0, 1.0])).is_empty()
    with pytest.raises(ValueError, match="different eval sets"):
        pruned_examples(candidates, np.array([0.5, 0.9]))
