"""materialize() tests of the visual-world assets on the demo (seed 000)."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.ingest import REFERENCE_TABLE
from asset_defs.visual_world import laion_natural, photo_classifier
from laionlab.filter.photo import LinearClassifier
from tests.conftest import DATASETS, run


def test_reference_embeddings_hold_every_image_once(world):
    resources, _ = world
    tables = resources["lance"].tables()
    for name in DATASETS:
        rows = tables.read_part(REFERENCE_TABLE, name, ["uid", "label", "image_norm"], part_column="dataset")
        assert sorted(rows["uid"].to_pylist()) == [f"{name}:{i:09d}" for i in range(60)]
        assert all(n > 0 for n in rows["image_norm"].to_pylist())
    broad = tables.read_part(REFERENCE_TABLE, "demo_broad", ["label"], part_column="dataset")
    assert set(broad["label"].to_pylist()) <= {"photo", "clipart", "text"}


def test_photo_classifier_zero_shot_and_laion_natural(world, demo):
    resources, instance = world
    result = run([photo_classifier], resources, instance, None)
    assert result.success
    meta = result.asset_materializations_for_node("photo_classifier")[0].metadata
    assert meta["source"].value == "zero-shot" and meta["input"].value == "unit"
    clf = LinearClassifier.load(resources["files"].path("photo_classifier", "classifier"))
    assert clf.dim == 64
    config = {"ops": {"laion_natural": {"config": {"threshold": 0.0}}}}
    part = demo.parts[0]
    natural = run([laion_natural], resources, instance, part, run_config=config)
    assert natural.success
    kept = resources["files"].read_parquet("laion_natural", f"{part}.parquet")
    meta = natural.asset_materializations_for_node("laion_natural")[0].metadata
    # threshold 0: everything with P > 0 stays except the NSFW rows (2 per demo part, all downloaded)
    assert meta["nsfw_removed"].value == 2 and kept.height == meta["rows_in"].value - 2
    assert (kept["photo_proba"] > 0).all()


def test_photo_classifier_trained_on_labels_separates_photos(world, demo):
    resources, instance = world
    labels = str(Path(demo.root) / "demo_labels.parquet")
    config = {"ops": {"photo_classifier": {"config": {"labels_path": labels, "cv_folds": 3}}}}
    result = run([photo_classifier], resources, instance, None, run_config=config)
    assert result.success
    meta = result.asset_materializations_for_node("photo_classifier")[0].metadata
    assert meta["source"].value == "trained" and meta["n_train"].value == 3 * 37
    # even a random tiny CLIP separates noise photos from flat clipart/text linearly
    assert meta["cv_accuracy"].value > 0.8
    part = demo.parts[1]
    assert run([laion_natural], resources, instance, part).success
    kept = resources["files"].read_parquet("laion_natural", f"{part}.parquet")
    truth = pl.read_parquet(labels)
    meta_part = resources["files"].read_parquet("laion_metadata", f"{part}.parquet").select("uid", "URL")
    kinds = kept.join(meta_part, on="uid").join(truth, on="URL")["is_photo"]
    assert kinds.mean() > 0.8 and (kept["photo_proba"] > 0.75).all()


def test_bad_threshold_is_refused(world, demo):
    resources, instance = world
    config = {"ops": {"laion_natural": {"config": {"threshold": 1.5}}}}
    with pytest.raises(Exception, match="threshold"):
        run([laion_natural], resources, instance, demo.parts[0], run_config=config)


def test_clusters_and_coverage_rank_broad_above_narrow(world, demo):
    from asset_defs.visual_world import coverage, laion_natural_clusters

    resources, instance = world
    assert run([photo_classifier], resources, instance, None).success
    for part in demo.parts:
        config = {"ops": {"laion_natural": {"config": {"threshold": 0.3}}}}
        assert run([laion_natural], resources, instance, part, run_config=config).success
    too_many = {"ops": {"laion_natural_clusters": {"config": {"k": 100_000}}}}
    bad = run([laion_natural_clusters], resources, instance, None, run_config=too_many, raise_on_error=False)
    assert not bad.success and "larger than the sample" in str(
        bad.get_step_failure_events()[0].event_specific_data.error
    )
    config = {
        "ops": {
            "laion_natural_clusters": {"config": {"k": 6}},
            "coverage": {"config": {"baseline_size": 20, "baseline_seeds": 2, "min_count": 2}},
        }
    }
    result = run([laion_natural_clusters, coverage], resources, instance, None, run_config=config)
    assert result.success
    clusters = result.asset_materializations_for_node("laion_natural_clusters")[0].metadata
    assert clusters["k"].value == 6 and clusters["parts_seen"].value == ", ".join(demo.parts)
    table = resources["files"].read_parquet("coverage", "coverage.parquet")
    assert table["covering"].to_list()[:2] == DATASETS and table["covered"].to_list()[-1] == "laion"
    share = dict(zip(table["covering"].to_list(), table["cluster_share"].to_list()))
    recall = dict(zip(table["covering"].to_list(), table["recall"].to_list()))
    # the demo's broad reference set spans the pool, the narrow one (red discs) does not
    assert share["demo_broad"] > share["demo_narrow"] and recall["demo_broad"] > recall["demo_narrow"]
    assert ((table["pca_coverage"] >= 0) & (table["pca_coverage"] <= 100)).all()
    overlap = resources["files"].read_parquet("coverage", "cluster_overlap.parquet")
    regions = dict(zip(overlap["region"].to_list(), overlap["clusters"].to_list()))
    assert regions["union"] + regions["neither"] == 6


def test_stimulus_sets_and_ood_on_the_demo(world, demo):
    from asset_defs.profile import profile_run_config
    from asset_defs.visual_world import (
        concept_distribution,
        laion_natural_clusters,
        neural_generalization,
        ood_generalization,
        stimulus_gallery,
        stimulus_sets,
    )

    resources, instance = world
    demo_ops = profile_run_config("demo")["ops"]
    names = ("laion_natural_clusters", "stimulus_sets", "ood_generalization", "neural_generalization")
    config = {"ops": {k: demo_ops[k] for k in names}}
    config["ops"]["neural_generalization"]["config"]["min_cluster_size"] = 5  # 60 images: k >= 3
    for part in demo.parts:
        if not Path(resources["files"].path("laion_natural", f"{part}.parquet")).exists():
            assert run([photo_classifier], resources, instance, None).success
            thr = {"ops": {"laion_natural": {"config": {"threshold": 0.3}}}}
            assert run([laion_natural], resources, instance, part, run_config=thr).success
    selection = [
        laion_natural_clusters,
        stimulus_sets,
        stimulus_gallery,
        ood_generalization,
        neural_generalization,
        concept_distribution,
    ]
    result = run(selection, resources, instance, None, run_config=config)
    assert result.success
    sets = resources["files"].read_parquet("stimulus_sets", "sets.parquet")
    n = demo_ops["stimulus_sets"]["config"]["n"]
    for name in demo_ops["stimulus_sets"]["config"]["strategies"]:
        chosen = sets.filter(pl.col("strategy") == name)["uid"]
        assert chosen.len() == n and chosen.n_unique() == n
    natural = set(
        pl.concat([resources["files"].read_parquet("laion_natural", f"{p}.parquet") for p in demo.parts])["uid"]
    )
    assert set(sets["uid"]) <= natural
    diversity = resources["files"].read_parquet("stimulus_sets", "diversity.parquet")
    ed = dict(zip(diversity["strategy"], diversity["effective_dim"]))
    assert ed["greedy_ed"] >= ed["random"]
    # the gallery: one row per strategy, in the sets' order, per_strategy (6) of its n (10) images each
    gallery = result.asset_materializations_for_node("stimulus_gallery")[0].metadata
    assert gallery["gallery"].value.startswith("![gallery](data:image/jpeg;base64,")
    strategies = demo_ops["stimulus_sets"]["config"]["strategies"]
    assert [
        line.split(" | ")[0].strip("| ") for line in gallery["strategies_shown"].value.splitlines()[2:]
    ] == strategies
    assert f"| random | 6 | {n} |" in gallery["strategies_shown"].value
    assert gallery["images_shown"].value + gallery["images_missing"].value <= 6 * len(strategies)
    assert resources["files"].exists("stimulus_gallery", "stimulus_sets.jpg")
    gmm = resources["files"].read_parquet("ood_generalization", "gmm.parquet")
    assert set(gmm["sweep"]) == {"clusters", "samples", "fraction"}
    assert gmm["id_accuracy"].is_between(0, 1).all() and gmm["ood_accuracy"].is_between(0, 1).all()
    comparison = resources["files"].read_parquet("ood_generalization", "reference_vs_laion.parquet")
    assert comparison.height == 3 * len(DATASETS) and comparison["accuracy"].is_between(0, 1).all()
    meta = result.asset_materializations_for_node("ood_generalization")[0].metadata
    assert meta["gmm_fraction_plot"].value.startswith("![plot](data:image/png;base64,")
    # neural targets: one row per (held-out cluster, training combination), every k_train from 1
    # to K-1 (the encoder's predictive power is tested on ground-truth data in test_neural.py;
    # with the demo's random tiny CLIP the features carry little of the synthetic signal)
    ood = resources["files"].read_parquet("neural_generalization", "ood.parquet")
    k = ood["k"][0]
    assert k >= 3 and sorted(ood["k_train"].unique().to_list()) == list(range(1, k))
    assert sorted(ood["held_out"].unique().to_list()) == list(range(k))
    assert ood["encoder_r"].is_between(-1, 1).all() and ood["decoder_accuracy"].is_between(0, 1).all()
    sampling = resources["files"].read_parquet("neural_generalization", "sampling.parquet")
    assert sampling["normalised_r"].max() == pytest.approx(1.0)
    concepts = resources["files"].read_parquet("concept_distribution", "comparison.parquet")
    assert concepts["strategy"].to_list() == demo_ops["stimulus_sets"]["config"]["strategies"]
    assert concepts["js_distance"].is_between(0, 1).all() and (concepts["kl_to_pool_bits"] >= 0).all()
    bad = {"ops": {"stimulus_sets": {"config": {"n": 5, "strategies": ["psychic"]}}}}
    failed = run([stimulus_sets], resources, instance, None, run_config=bad, raise_on_error=False)
    assert not failed.success and "unknown strategies ['psychic']" in str(
        failed.get_step_failure_events()[0].event_specific_data.error
    )


def test_natural_features_sample_reads_only_the_sampled_rows(world, demo, monkeypatch):
    """A sample below the LAION-natural rows: drawn part by part in proportion to each part's
    rows, seeded, fetched by uid; the vectors are the rows' raw features."""
    from dagster import build_asset_context

    import asset_defs.visual_world as vw
    from asset_defs.readers import laion_vectors_for
    from asset_defs.visual_world import _natural_features

    resources, instance = world
    files, lance = resources["files"], resources["lance"]
    parts = sorted(demo.parts)
    assert run([photo_classifier], resources, instance, None).success
    for part in parts:
        assert run(
            [laion_natural],
            resources,
            instance,
            part,
            run_config={"ops": {"laion_natural": {"config": {"threshold": 0.3}}}},
        ).success
    monkeypatch.setattr(vw, "require_same_params", lambda *a, **k: {})
    context = build_asset_context(instance=instance)
    all_uids, X = _natural_features(context, files, lance, parts)
    uids, S = _natural_features(context, files, lance, parts, sample=10, seed=3)
    again, _ = _natural_features(context, files, lance, parts, sample=10, seed=3)
    assert len(uids) == 10 and uids == again and set(uids) <= set(all_uids)
    np.testing.assert_allclose(S, X[[all_uids.index(u) for u in uids]], rtol=1e-5)
    assert laion_vectors_for(lance, uids, raw=True)[0] == uids
