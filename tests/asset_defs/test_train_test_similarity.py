"""materialize() tests of the train–test-similarity assets (seed 004) on the demo."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.ingest import EMBEDDINGS_TABLE
from asset_defs.train_test_similarity import (
    dedup_assignments,
    dedup_centroids,
    eval_to_laion_similarity,
    laion_dedup,
    pruned_pools,
    read_dedup,
    train_to_eval_threshold,
)
from asset_defs.visual_world import REFERENCE_TABLE
from laionlab.io.lance import read_vectors
from tests.conftest import DATASETS, run

EPS = 0.002  # the random tiny CLIP puts the demo in a narrow cone (see jobs/demo_config.yaml)
K = 30


@pytest.fixture(scope="module")
def pruned(world, demo):
    resources, instance = world
    ops = {
        "dedup_centroids": {"config": {"k": 4, "duplicate_cosine": 0.999}},
        "laion_dedup": {"config": {"eps": EPS, "block_rows": 16}},
    }
    assert run([dedup_centroids], resources, instance, None, run_config={"ops": {"dedup_centroids": ops["dedup_centroids"]}}).success
    for part in demo.parts:
        assert run([dedup_assignments], resources, instance, part).success
    assert run([laion_dedup], resources, instance, None, run_config={"ops": {"laion_dedup": ops["laion_dedup"]}}).success
    per_dataset = {
        "eval_to_laion_similarity": {"config": {"k": K}},
        "train_to_eval_threshold": {"config": {"train_dataset": "demo_broad"}},
    }
    for name in DATASETS:
        result = run([eval_to_laion_similarity, train_to_eval_threshold, pruned_pools], resources, instance, name, run_config={"ops": per_dataset})
        assert result.success
    return resources, instance


def _all_laion(resources):
    tbl = resources["lance"].tables().open(EMBEDDINGS_TABLE)
    return read_vectors(tbl.search().limit(None).select(["uid", "image_emb"]).to_batches())


def test_dedup_drops_exactly_rows_too_similar_to_an_earlier_one(pruned):
    resources, _ = pruned
    dedup = read_dedup(resources["files"])
    uids, laion = _all_laion(resources)
    assert dedup.height == len(uids) and dedup["uid"].is_unique().all()
    # brute force: the seed's rule over each cluster in (part, uid) order
    row = {u: i for i, u in enumerate(uids)}
    for _, cluster in dedup.sort("part", "uid").group_by("cluster", maintain_order=True):
        X = laion[[row[u] for u in cluster["uid"]]]
        G = np.tril(X @ X.T, k=-1) + np.triu(np.full((len(X), len(X)), -np.inf))
        want = G.max(axis=1)
        np.testing.assert_allclose(cluster["max_earlier_sim"].to_numpy(), want, rtol=1e-5)
    dropped = dedup.filter(~pl.col("keep"))
    assert dropped.height > 0 and (dropped["max_earlier_sim"] > 1 - EPS).all()
    assert (dedup.filter(pl.col("keep"))["max_earlier_sim"] <= 1 - EPS).all()


def test_eval_topk_equals_brute_force_over_all_parts(pruned):
    resources, _ = pruned
    uids, laion = _all_laion(resources)
    name = "demo_narrow"
    query = resources["lance"].tables().part_query(REFERENCE_TABLE, name, ["uid", "image_emb"], part_column="dataset")
    q_uids, queries = read_vectors(query.to_batches())
    queries = queries[np.argsort(np.array(q_uids))]
    sims = queries @ laion.T
    top = resources["files"].read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")
    for i in (0, 17, len(queries) - 1):
        got = top.filter(pl.col("eval_index") == i).sort("rank")
        np.testing.assert_allclose(got["sim"].to_numpy(), np.sort(sims[i])[::-1][:K], rtol=1e-5)
    maxsim = resources["files"].read_parquet("eval_to_laion_similarity", f"{name}.max_sim.parquet")
    lookup = dict(zip(uids, sims.max(axis=0)))
    np.testing.assert_allclose(maxsim["max_sim"].to_numpy(), [lookup[u] for u in maxsim["uid"]], rtol=1e-5)


def test_pruned_pool_is_no_more_similar_than_the_train_set(pruned):
    resources, instance = pruned
    dedup = read_dedup(resources["files"])
    kept = set(dedup.filter(pl.col("keep"))["uid"])
    for name in DATASETS:
        pool = set(resources["files"].read_parquet("pruned_pools", f"{name}.parquet")["uid"])
        assert pool <= kept
        top = resources["files"].read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")
        thr = resources["files"].read_parquet("train_to_eval_threshold", f"{name}.parquet")
        too_close = set(top.join(thr, on="eval_index").filter(pl.col("sim") > pl.col("threshold"))["uid"])
        assert pool == kept - too_close
    from asset_defs.train_test_similarity import pruned_pool_sizes

    assert run([pruned_pool_sizes], resources, instance, None).success
    sizes = resources["files"].read_parquet("pruned_pools", "sizes.parquet")
    assert sizes["dataset"].to_list() == DATASETS
    # the train set itself: every eval sample's nearest train sample is itself (threshold ~1)
    assert len(resources["files"].read_parquet("pruned_pools", "demo_broad.parquet")) >= len(kept) - 1


def test_bad_inputs_name_the_problem(pruned):
    resources, instance = pruned
    with pytest.raises(Exception, match="eps"):
        run([laion_dedup], resources, instance, None, run_config={"ops": {"laion_dedup": {"config": {"eps": 1.5}}}})
    too_big = {"ops": {"eval_to_laion_similarity": {"config": {"k": 10_000}}}}
    result = run([eval_to_laion_similarity], resources, instance, "demo_narrow", run_config=too_big, raise_on_error=False)
    assert not result.success and "larger than the LAION pool" in str(result.get_step_failure_events()[0].event_specific_data.error)


def test_eval_set_of_another_dimension_is_refused(tmp_path, demo):
    """A reference set embedded with another model (dim 16) than LAION (dim 8)."""
    from asset_defs.visual_world import REFERENCE_TABLE
    from laionlab.io.lance import embeddings_batch, embeddings_schema, reference_batch, reference_schema
    from tests.conftest import instance_with_parts, make_resources

    resources = make_resources(tmp_path, str(Path(demo.root) / "laion_parts"))
    rng = np.random.default_rng(0)
    unit = lambda n, d: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(rng.normal(size=(n, d))).astype(np.float32)
    tables = resources["lance"].tables()
    tables.replace_part(EMBEDDINGS_TABLE, "p0", [embeddings_batch([f"p0:{i}" for i in range(20)], "p0", "m8", unit(20, 8), unit(20, 8))], embeddings_schema(8))
    ref = reference_batch([f"{i:03d}" for i in range(5)], "wide", "m16", [None] * 5, ["x"] * 5, unit(5, 16), np.ones(5, np.float32))
    tables.replace_part(REFERENCE_TABLE, "wide", [ref], reference_schema(16), part_column="dataset")
    instance = instance_with_parts(["p0"])
    instance.add_dynamic_partitions("dataset", ["wide"])
    result = run([eval_to_laion_similarity], resources, instance, "wide", run_config={"ops": {"eval_to_laion_similarity": {"config": {"k": 5}}}}, raise_on_error=False)
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "'wide' has dimension 16" in message and "laion_embeddings[p0] 8" in message
