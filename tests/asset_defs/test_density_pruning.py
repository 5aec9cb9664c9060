"""materialize() tests of laion_dedup's SemDeDup keep order and of dbp_selection on the demo."""

import numpy as np
import polars as pl
import pytest

from asset_defs.density_pruning import dbp_selection
from asset_defs.train_test_similarity import dedup_assignments, dedup_centroids, laion_dedup
from laionlab.dedup import dedup_keep, keep_order_keys
from tests.conftest import run

EPS = 0.002  # the demo's narrow cone (profiles/demo.yaml)


@pytest.fixture(scope="module")
def clustered(ingested, demo):
    resources, instance, _ = ingested
    config = {"ops": {"dedup_centroids": {"config": {"k": 4, "duplicate_cosine": 0.999}}}}
    assert run([dedup_centroids], resources, instance, None, run_config=config).success
    for part in demo.parts:
        assert run([dedup_assignments], resources, instance, part).success
    return resources, instance


def test_laion_dedup_keep_hard_is_semdedup_inside_the_first_part(clustered, demo):
    """The first part has no earlier part: its flags are SemDeDup's keep-hard loop on it."""
    resources, instance = clustered
    files, part = resources["files"], demo.parts[0]
    config = {"ops": {"laion_dedup": {"config": {"eps": EPS, "block_rows": 16, "keep": "hard"}}}}
    assert run([laion_dedup], resources, instance, part, run_config=config).success
    got = files.read_parquet("laion_dedup", f"{part}.parquet")
    frame = files.read_parquet("dedup_assignments", f"{part}.parquet")
    X = files.load_npy("dedup_assignments", f"{part}.vectors.npy")
    keys = keep_order_keys(frame["centroid_sim"].to_numpy(), "hard")
    want = dedup_keep(X, frame["cluster"].to_numpy(), eps=EPS, keys=keys)
    np.testing.assert_array_equal(got["keep"].to_numpy(), want)
    seed_rule = dedup_keep(X, frame["cluster"].to_numpy(), eps=EPS)
    assert (~want).any() and (~seed_rule).any()  # the case has duplicates


def test_dbp_selection_keeps_each_clusters_budget_of_its_hardest_candidates(clustered, demo):
    resources, instance = clustered
    files = resources["files"]
    dedup = {"laion_dedup": {"config": {"eps": EPS, "block_rows": 16}}}
    for part in demo.parts:
        assert run([laion_dedup], resources, instance, part, run_config={"ops": dedup}).success
    config = {"ops": {"dbp_selection": {"config": {"keep_fraction": 0.4, "n_neighbours": 2}}}}
    result = run([dbp_selection], resources, instance, None, run_config=config)
    assert result.success
    meta = result.asset_materializations_for_node("dbp_selection")[0].metadata
    out = pl.concat([files.read_parquet("dbp_selection", f"{p}.parquet") for p in demo.parts])
    rows = pl.concat(
        [
            files.read_parquet("dedup_assignments", f"{p}.parquet").join(
                files.read_parquet("laion_dedup", f"{p}.parquet", columns=["uid", "keep"]), on="uid"
            )
            for p in demo.parts
        ]
    )
    both = out.join(rows, on=["uid", "cluster"])
    assert both.height == out.height == rows.height
    candidates = int(rows["keep"].sum())
    assert meta["candidates"].value == candidates and out["kept"].sum() == round(0.4 * candidates)
    assert not both.filter(pl.col("kept") & ~pl.col("keep")).height  # only laion_dedup's kept rows
    budgets = files.read_parquet("dbp_selection", "budgets.parquet")
    assert budgets["budget"].sum() == out["kept"].sum() and (budgets["budget"] <= budgets["size"]).all()
    for c, group in both.filter("keep").group_by("cluster"):
        kept = group.filter("kept")
        assert kept.height == budgets["budget"][c[0]]
        if 0 < kept.height < group.height:  # hard: the kept rows are the farthest from the centroid
            assert kept["centroid_sim"].max() <= group.filter(~pl.col("kept"))["centroid_sim"].min()
