"""materialize() tests of the train–test-similarity assets (seed 004) on the demo."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs import lineage
from asset_defs.ingest import EMBEDDINGS_TABLE, REFERENCE_TABLE
from asset_defs.train_test_similarity import (
    dedup_assignments,
    dedup_centroids,
    eval_to_laion_similarity,
    laion_dedup,
    pruned_pools,
    read_dedup,
    read_max_sims,
    read_pruned_pool,
    train_to_eval_threshold,
)
from laionlab.io.lance import read_vectors
from tests.conftest import DATASETS, run

EPS = 0.002  # the random tiny CLIP puts the demo in a narrow cone (see profiles/demo.yaml)
K = 30


@pytest.fixture(scope="module")
def pruned(world, demo):
    resources, instance = world
    ops = {
        "dedup_centroids": {"config": {"k": 4, "duplicate_cosine": 0.999}},
        "laion_dedup": {"config": {"eps": EPS, "block_rows": 16}},
    }
    assert run(
        [dedup_centroids], resources, instance, None, run_config={"ops": {"dedup_centroids": ops["dedup_centroids"]}}
    ).success
    for part in demo.parts:
        assert run([dedup_assignments], resources, instance, part).success
    for part in demo.parts:
        assert run(
            [laion_dedup], resources, instance, part, run_config={"ops": {"laion_dedup": ops["laion_dedup"]}}
        ).success
    per_dataset = {
        "eval_to_laion_similarity": {"config": {"k": K}},
        "train_to_eval_threshold": {"config": {"train_dataset": "demo_broad"}},
    }
    for name in DATASETS:
        result = run(
            [eval_to_laion_similarity, train_to_eval_threshold, pruned_pools],
            resources,
            instance,
            name,
            run_config={"ops": per_dataset},
        )
        assert result.success
    return resources, instance


def _all_laion(resources):
    tbl = resources["lance"].tables().open(EMBEDDINGS_TABLE)
    return read_vectors(tbl.search().limit(None).select(["uid", "image_emb"]).to_batches())


def test_dedup_drops_exactly_rows_too_similar_to_an_earlier_one(pruned, demo):
    resources, _ = pruned
    dedup = read_dedup(resources["files"], sorted(demo.parts))
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
    # every candidate's uid is the LAION row with that similarity (uids mapped back part by part)
    column = {u: j for j, u in enumerate(uids)}
    assert top.height == len(queries) * K and top["uid"].null_count() == 0
    np.testing.assert_allclose(
        top["sim"].to_numpy(), sims[top["eval_index"].to_numpy(), [column[u] for u in top["uid"]]], rtol=1e-5, atol=1e-6
    )
    maxsim = read_max_sims(resources["files"], name)
    assert sorted(maxsim["uid"]) == sorted(uids) and maxsim["part"].to_list() == [
        u.rsplit(":", 1)[0] for u in maxsim["uid"]
    ]
    lookup = dict(zip(uids, sims.max(axis=0)))
    np.testing.assert_allclose(maxsim["max_sim"].to_numpy(), [lookup[u] for u in maxsim["uid"]], rtol=1e-5)


def test_pruned_pool_is_no_more_similar_than_the_train_set(pruned, demo):
    resources, instance = pruned
    dedup = read_dedup(resources["files"], demo.parts)
    kept = set(dedup.filter(pl.col("keep"))["uid"])
    for name in DATASETS:
        pool = set(read_pruned_pool(resources["files"], name)["uid"])
        assert pool <= kept
        top = resources["files"].read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")
        thr = resources["files"].read_parquet("train_to_eval_threshold", f"{name}.parquet")
        too_close = set(top.join(thr, on="eval_index").filter(pl.col("sim") > pl.col("threshold"))["uid"])
        assert pool == kept - too_close
    from asset_defs.train_test_similarity import pruned_pool_sizes

    assert run([pruned_pool_sizes], resources, instance, None).success
    sizes = resources["files"].read_parquet("pruned_pools", "sizes.parquet")
    assert sizes["dataset"].to_list() == DATASETS
    assert sizes["pool_size"].to_list() == [read_pruned_pool(resources["files"], n).height for n in DATASETS]
    # the train set itself: every eval sample's nearest train sample is itself (threshold ~1)
    assert len(read_pruned_pool(resources["files"], "demo_broad")) >= len(kept) - 1


def test_bad_inputs_name_the_problem(pruned, demo):
    resources, instance = pruned
    part = demo.parts[-1]
    with pytest.raises(Exception, match="eps"):
        run([laion_dedup], resources, instance, part, run_config={"ops": {"laion_dedup": {"config": {"eps": 1.5}}}})
    # a bad curve ε fails before laion_dedup writes anything
    before = resources["files"].read_parquet("laion_dedup", f"{part}.parquet")
    bad_curve = {"ops": {"laion_dedup": {"config": {"eps": 0.5, "curve_eps": [0.1, 1.0]}}}}
    result = run([laion_dedup], resources, instance, part, run_config=bad_curve, raise_on_error=False)
    assert not result.success and "curve_eps[1]" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert resources["files"].read_parquet("laion_dedup", f"{part}.parquet").equals(before)
    too_big = {"ops": {"eval_to_laion_similarity": {"config": {"k": 10_000}}}}
    result = run(
        [eval_to_laion_similarity], resources, instance, "demo_narrow", run_config=too_big, raise_on_error=False
    )
    assert not result.success and "larger than the LAION pool" in str(
        result.get_step_failure_events()[0].event_specific_data.error
    )


def test_eval_set_of_another_dimension_is_refused(tmp_path, demo):
    """A reference set embedded with another model (dim 16) than LAION (dim 8)."""
    from asset_defs.ingest import REFERENCE_TABLE
    from laionlab.io.lance import embeddings_batch, embeddings_schema, reference_batch, reference_schema
    from tests.conftest import instance_with_parts, make_resources

    resources = make_resources(tmp_path, str(Path(demo.root) / "laion_parts"))
    rng = np.random.default_rng(0)
    unit = lambda n, d: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(rng.normal(size=(n, d))).astype(
        np.float32
    )
    tables = resources["lance"].tables()
    tables.replace_part(
        EMBEDDINGS_TABLE,
        "p0",
        [embeddings_batch([f"p0:{i}" for i in range(20)], "p0", "m8", unit(20, 8), unit(20, 8))],
        embeddings_schema(8),
    )
    ref = reference_batch(
        [f"{i:03d}" for i in range(5)], "wide", "m16", [None] * 5, ["x"] * 5, unit(5, 16), np.ones(5, np.float32)
    )
    tables.replace_part(REFERENCE_TABLE, "wide", [ref], reference_schema(16), part_column="dataset")
    instance = instance_with_parts(["p0"])
    instance.add_dynamic_partitions("dataset", ["wide"])
    result = run(
        [eval_to_laion_similarity],
        resources,
        instance,
        "wide",
        run_config={"ops": {"eval_to_laion_similarity": {"config": {"k": 5}}}},
        raise_on_error=False,
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "'wide' has dimension 16" in message and "laion_embeddings[p0] 8" in message


HALF = np.float32(0.5)
JUST_ABOVE_HALF = np.nextafter(HALF, np.float32(1))


@pytest.fixture(scope="module")
def hand(pruned, demo):
    """A hand-made eval set "hand" (3 samples, k = 3 candidates each) over the demo's dedup
    result, in a separate instance so the demo datasets' outputs are untouched:
      sample 0, threshold 0.5: a at exactly 0.5 (kept), b one float32 step above (dropped), c below;
      sample 1, threshold 0.1: d, e (a row laion_dedup dropped) and b all above -> saturated, d dropped;
      sample 2, threshold 0.9: nothing above."""
    from tests.conftest import instance_with_parts

    resources, _ = pruned
    files = resources["files"]
    dedup = read_dedup(files, demo.parts).sort("uid")
    kept = dedup.filter(pl.col("keep"))["uid"].to_list()
    a, b, c, d = kept[:4]
    e = dedup.filter(~pl.col("keep"))["uid"][0]
    rows = [
        (0, b, JUST_ABOVE_HALF),
        (0, a, HALF),
        (0, c, 0.25),
        (1, d, 0.9),
        (1, e, 0.8),
        (1, b, 0.7),
        (2, c, 0.5),
        (2, a, 0.4),
        (2, d, 0.3),
    ]
    candidates = pl.DataFrame(
        {
            "eval_index": [r[0] for r in rows],
            "rank": [i % 3 for i in range(9)],
            "uid": [r[1] for r in rows],
            "sim": np.array([r[2] for r in rows], np.float32),
        }
    )
    files.write_parquet(candidates, "eval_to_laion_similarity", "hand.topk.parquet")
    thresholds = pl.DataFrame({"eval_index": [0, 1, 2], "threshold": np.array([HALF, 0.1, 0.9], np.float32)})
    files.write_parquet(thresholds, "train_to_eval_threshold", "hand.parquet")
    instance = instance_with_parts(demo.parts)
    instance.add_dynamic_partitions("dataset", ["hand"])
    # pruned_pools checks the dedup results it reads against this instance's lineage
    for part in demo.parts:
        assert run([dedup_assignments], resources, instance, part).success
    for part in demo.parts:
        assert run(
            [laion_dedup],
            resources,
            instance,
            part,
            run_config={"ops": {"laion_dedup": {"config": {"eps": EPS, "block_rows": 16}}}},
        ).success
    return resources, instance, kept, (a, b, c, d, e)


def _prune_hand(hand, **config):
    resources, instance, _, _ = hand
    result = run(
        [pruned_pools],
        resources,
        instance,
        "hand",
        run_config={"ops": {"pruned_pools": {"config": config}}},
        raise_on_error=False,
    )
    if not result.success:
        return result, None, None
    meta = result.asset_materializations_for_node("pruned_pools")[0].metadata
    return result, read_pruned_pool(resources["files"], "hand")["uid"].sort().to_list(), meta


@pytest.mark.filterwarnings("ignore:candidate_scores.*above their threshold:UserWarning")
def test_pruned_pools_strict_threshold_and_saturation_on_hand_set_thresholds(hand):
    _, _, kept, (a, b, c, d, e) = hand
    assert JUST_ABOVE_HALF > HALF and float(JUST_ABOVE_HALF) - 0.5 < 1e-7
    result, pool, meta = _prune_hand(hand)
    assert pool == sorted(set(kept) - {b, d})  # a at exactly its threshold stays, b one step above goes
    assert a in pool and c in pool and e not in pool
    assert meta["saturated_eval_samples"].value == 1  # sample 1, counted although dedup dropped e
    (check,) = result.get_asset_check_evaluations()  # a yellow check in the UI, not only a log line
    assert check.check_name == "no_saturated_eval_samples" and not check.passed and check.severity.value == "WARN"
    assert check.metadata["saturated_eval_samples"].value == 1
    assert meta["pruned_away"].value == 2 and meta["final_size"].value == len(kept) - 2


@pytest.mark.filterwarnings("ignore:candidate_scores.*above their threshold:UserWarning")
def test_pruned_pools_target_size_is_a_seeded_exact_subset(hand):
    _, full, _ = _prune_hand(hand)
    _, first, meta = _prune_hand(hand, target_size=10, seed=5)
    _, again, _ = _prune_hand(hand, target_size=10, seed=5)
    _, other, _ = _prune_hand(hand, target_size=10, seed=6)
    assert len(full) > 20 and len(first) == 10 and len(set(first)) == 10
    assert first == again and set(first) <= set(full)
    assert set(other) <= set(full) and other != first
    assert meta["final_size"].value == 10 and meta["pruned_away"].value == 2
    result, _, _ = _prune_hand(hand, target_size=len(full) + 1)
    assert not result.success
    assert f"larger than the pruned pool for hand ({len(full)} rows)" in str(
        result.get_step_failure_events()[0].event_specific_data.error
    )


@pytest.fixture
def sampled_table(tmp_path, demo):
    """laion_embeddings with three parts of 50, 30 and 20 unit rows (d = 8), written in a
    shuffled order; the instance registers the three parts."""
    from laionlab.io.lance import embeddings_batch, embeddings_schema
    from tests.conftest import instance_with_parts, make_resources

    resources = make_resources(tmp_path, str(Path(demo.root) / "laion_parts"))
    rng = np.random.default_rng(0)
    tables = resources["lance"].tables()
    for part, n in (("p0", 50), ("p1", 30), ("p2", 20)):
        X = rng.normal(size=(n, 8)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        order = rng.permutation(n)
        uids = [f"{part}:{i:03d}" for i in order]
        tables.replace_part(
            EMBEDDINGS_TABLE, part, [embeddings_batch(uids, part, "m8", X[order], X[order])], embeddings_schema(8)
        )
    return resources, instance_with_parts(["p0", "p1", "p2"])


def test_dedup_centroids_samples_each_part_without_reading_the_table(sampled_table, monkeypatch):
    """sample_size 40 of 100 rows: quotas 20/12/8, only those 40 vectors are read, the
    sample is the rows sample_across_parts picks (in uid order), and it is seeded."""
    import asset_defs.readers as readers
    import asset_defs.train_test_similarity as tts
    import laionlab.cluster
    from laionlab.cluster import sample_across_parts
    from laionlab.io.lance import read_vectors

    resources, instance = sampled_table
    whole = {p: tts._part_vectors(resources["lance"], p)[1] for p in ("p0", "p1", "p2")}
    read, samples, real_kmeans = [], [], laionlab.cluster.kmeans

    def counting_read(*args, **kwargs):
        uids, X = read_vectors(*args, **kwargs)
        read.append(len(uids))
        return uids, X

    def recording_kmeans(X, *args, **kwargs):
        samples.append(np.array(X))
        return real_kmeans(X, *args, **kwargs)

    monkeypatch.setattr(readers, "read_vectors", counting_read)
    monkeypatch.setattr(laionlab.cluster, "kmeans", recording_kmeans)

    def centroids(sample_size, seed):
        read.clear()
        config = {"k": 3, "sample_size": sample_size, "seed": seed, "duplicate_cosine": 0.999}
        result = run(
            [dedup_centroids], resources, instance, None, run_config={"ops": {"dedup_centroids": {"config": config}}}
        )
        meta = result.asset_materializations_for_node("dedup_centroids")[0].metadata
        return meta, sum(read), resources["files"].load_npy("dedup_centroids", "centroids.npy")

    meta, rows_read, first = centroids(40, 0)
    assert meta["sample"].value == 40 and meta["laion_rows"].value == 100 and rows_read == 40
    picks = sample_across_parts([50, 30, 20], 40, 0)
    assert [len(r) for r in picks] == [20, 12, 8]
    np.testing.assert_array_equal(samples[-1], np.concatenate([whole[p][r] for p, r in zip(("p0", "p1", "p2"), picks)]))
    _, rows_read, again = centroids(40, 0)
    assert rows_read == 40
    np.testing.assert_array_equal(samples[-1], samples[-2])
    np.testing.assert_array_equal(again, first)
    centroids(40, 1)
    assert not np.array_equal(samples[-1], samples[-2])
    meta, rows_read, _ = centroids(1000, 0)  # the whole table: every part read whole
    assert meta["sample"].value == 100 and rows_read == 100
    np.testing.assert_array_equal(samples[-1], np.concatenate(list(whole.values())))


def test_dedup_summary_and_parts_computed_before_an_earlier_part_changed(pruned, demo):
    """dedup_summary sums the parts' own results; after an earlier part's assignments are
    re-materialised, every part from there on is named out of date (summary fails, WARN check
    fails) until laion_dedup is re-materialised for them, and only for them."""
    from dagster import AssetSelection

    from asset_defs.train_test_similarity import dedup_chain_problems, dedup_parts_current, dedup_summary
    from tests.conftest import instance_with_parts

    resources, _ = pruned
    parts = sorted(demo.parts)
    instance = instance_with_parts(parts)
    config = {"ops": {"laion_dedup": {"config": {"eps": EPS, "block_rows": 16}}}}
    for part in parts:
        assert run([dedup_assignments], resources, instance, part).success
    for part in parts:
        assert run([laion_dedup], resources, instance, part, run_config=config).success
    result = run([dedup_summary, dedup_parts_current], resources, instance, None)
    meta = result.asset_materializations_for_node("dedup_summary")[0].metadata
    dedup = read_dedup(resources["files"], parts)
    assert meta["rows"].value == dedup.height and meta["removed"].value == (~dedup["keep"]).sum() > 0
    table = meta["removal_table"].value
    want = {e: float((dedup["max_earlier_sim"] > np.float32(1 - e)).mean()) for e in (0.02, 0.124)}
    for e, frac in want.items():
        assert f"| {e} " in table and f"{frac:.4f}".rstrip("0").rstrip(".") in table
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]

    assert run([dedup_assignments], resources, instance, parts[0]).success
    assert sorted(dedup_chain_problems(instance, parts)) == parts
    assert run([laion_dedup], resources, instance, parts[0], run_config=config).success
    problems = dedup_chain_problems(instance, parts)
    assert sorted(problems) == parts[1:] and all(parts[0] in why for why in problems.values())
    failed = run([dedup_summary], resources, instance, None, raise_on_error=False)
    message = str(failed.get_step_failure_events()[0].event_specific_data.error)
    assert "out of date" in message and all(p in message for p in parts[1:])
    only_check = run(
        [dedup_summary, dedup_parts_current],
        resources,
        instance,
        None,
        selection=AssetSelection.checks(dedup_parts_current),
    )
    [evaluation] = only_check.get_asset_check_evaluations()
    assert not evaluation.passed and all(p in evaluation.description for p in parts[1:])
    for part in parts[1:]:
        assert run([laion_dedup], resources, instance, part, run_config=config).success
    assert dedup_chain_problems(instance, parts) == {}
    assert read_dedup(resources["files"], parts).equals(dedup)  # same inputs, same flags


def test_laion_dedup_waits_for_an_earlier_part_in_flight_and_names_a_missing_one(pruned, demo, monkeypatch):
    """What a backfill does: laion_dedup[p] starts while dedup_assignments of an earlier part is
    still queued -> the step retries (logging why) and, if that run never comes, fails naming
    it; an earlier part with no assignments and no run on the way fails at once."""
    from dagster import Definitions, define_asset_job

    from asset_defs.partitions import laion_part
    from tests.conftest import instance_with_parts

    resources, _ = pruned
    parts = sorted(demo.parts)
    config = {"ops": {"laion_dedup": {"config": {"eps": EPS, "block_rows": 16}}}}
    instance = instance_with_parts(parts)
    assert run([dedup_assignments], resources, instance, parts[1]).success
    result = run([laion_dedup], resources, instance, parts[1], run_config=config, raise_on_error=False)
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "dedup_assignments is missing for " + parts[0] in message

    monkeypatch.setattr(lineage, "WAIT_SECONDS", 0.05)
    monkeypatch.setattr(lineage, "WAIT_TRIES", 2)
    assign = define_asset_job("assign", [dedup_assignments], partitions_def=laion_part)
    job = Definitions(assets=[dedup_assignments], jobs=[assign], resources=resources).resolve_job_def("assign")
    queued = instance.create_run_for_job(
        job, tags={"dagster/partition": parts[0]}, asset_selection=frozenset({dedup_assignments.key})
    )
    assert instance.get_latest_planned_materialization_info(dedup_assignments.key, parts[0]).run_id == queued.run_id
    result = run([laion_dedup], resources, instance, parts[1], run_config=config, raise_on_error=False)
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert f"dedup_assignments of {parts[0]} still running" in message
    # once the earlier part is done, the same step goes through
    assert run([dedup_assignments], resources, instance, parts[0]).success
    assert run([laion_dedup], resources, instance, parts[1], run_config=config).success


@pytest.mark.parametrize("rows_per_cluster, k", [(30, 4), (34, 3), (100, 1)])
def test_dedup_k_grows_with_laion_when_unset(sampled_table, rows_per_cluster, k):
    """k unset: ceil(100 rows / rows_per_cluster) clusters, so laion_dedup's comparisons per row
    stay near rows_per_cluster / 2 whatever the corpus size (the seed: 413M / 50,000)."""
    resources, instance = sampled_table
    config = {"k": None, "rows_per_cluster": rows_per_cluster, "duplicate_cosine": 0.999}
    result = run(
        [dedup_centroids], resources, instance, None, run_config={"ops": {"dedup_centroids": {"config": config}}}
    )
    meta = result.asset_materializations_for_node("dedup_centroids")[0].metadata
    assert meta["k"].value == k == len(resources["files"].load_npy("dedup_centroids", "centroids.npy"))
    assert meta["rows_per_cluster"].value == pytest.approx(100 / k, abs=0.1)


def test_dedup_gallery_shows_dropped_rows_beside_the_row_they_duplicate(pruned, demo):
    """Each shown pair is a dropped row and an earlier row of its cluster (this part or an
    earlier one) at exactly the recorded maximum cosine; the choice is seeded and bounded."""
    from asset_defs.train_test_similarity import dedup_gallery

    resources, instance = pruned
    files = resources["files"]

    def gallery(**config):
        result = run(
            [dedup_gallery], resources, instance, None,
            run_config={"ops": {"dedup_gallery": {"config": config}}} if config else None,
        )  # fmt: skip
        return result.asset_materializations_for_node("dedup_gallery")[0].metadata

    meta = gallery(pairs=4)
    assert meta["gallery"].value.startswith("![gallery](data:image/jpeg;base64,")
    assert files.exists("dedup_gallery", "dedup.jpg") and meta["images_shown"].value > 0
    parts = sorted(demo.parts)
    dedup = read_dedup(files, parts).with_row_index("row")
    rows = [line.strip("| ").split(" | ") for line in meta["pairs_shown"].value.splitlines()[2:]]
    assert len(rows) == 4 == len(set(r[0] for r in rows))
    for uid, partner, cosine, partner_kept, cluster in rows:
        me, other = (dedup.filter(pl.col("uid") == u).row(0, named=True) for u in (uid, partner))
        assert not me["keep"] and me["cluster"] == other["cluster"] == int(cluster)
        assert parts.index(other["part"]) <= parts.index(me["part"])
        assert float(cosine) == pytest.approx(me["max_earlier_sim"], abs=1e-3)
        assert str(other["keep"]) == partner_kept
    assert gallery(pairs=4)["pairs_shown"].value == meta["pairs_shown"].value  # seeded
    assert gallery(pairs=2, parts=1)["parts_shown"].value.count("part-") == 1


def test_pruned_gallery_shows_eval_samples_beside_the_rows_pruned_for_them(pruned):
    """Each shown eval sample has its most similar candidates above its threshold (none of
    them in its pruned pool) and its nearest kept one; the eval images come from the catalog;
    seeded; an eval set that pruned nothing says so."""
    from asset_defs.train_test_similarity import pruned_gallery

    resources, instance = pruned
    files = resources["files"]

    def gallery(name, **config):
        run_config = {"ops": {"pruned_gallery": {"config": config}}} if config else None
        result = run([pruned_gallery], resources, instance, name, run_config=run_config)
        return result.asset_materializations_for_node("pruned_gallery")[0].metadata

    name = "demo_narrow"
    meta = gallery(name, samples=3, per_sample=2)
    assert meta["gallery"].value.startswith("![gallery](data:image/jpeg;base64,")
    shown = [line.strip("| ").split(" | ") for line in meta["shown"].value.splitlines()[2:]]
    candidates = files.read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")
    thresholds = files.read_parquet("train_to_eval_threshold", f"{name}.parquet")
    truth = candidates.join(thresholds, on="eval_index").with_columns(pruned=pl.col("sim") > pl.col("threshold"))
    samples = sorted({int(r[0]) for r in shown})
    assert len(samples) == 3 == meta["eval_samples_shown"].value
    pool = set(read_pruned_pool(files, name)["uid"].to_list())
    for index in samples:
        mine = truth.filter(pl.col("eval_index") == index).sort("sim", descending=True)
        got = [r for r in shown if int(r[0]) == index]
        pruned_uids = [r[3] for r in got if r[5].lower() == "true"]
        assert pruned_uids == mine.filter(pl.col("pruned"))["uid"].head(2).to_list()
        assert not pool & set(pruned_uids)
        kept = mine.filter(~pl.col("pruned"))["uid"].head(1).to_list()
        assert [r[3] for r in got if r[5].lower() == "false"] == kept
    # the eval images (catalog) and the LAION rows (shards) are all found
    assert meta["images_missing"].value == 0
    assert meta["images_shown"].value == len(samples) + len({r[3] for r in shown})
    assert gallery(name, samples=3, per_sample=2)["shown"].value == meta["shown"].value  # seeded
    nothing = gallery("demo_broad")  # its own 'train' set: no candidate is above its threshold
    assert nothing["applicable"].value is False and "removed nothing" in nothing["reason"].value
