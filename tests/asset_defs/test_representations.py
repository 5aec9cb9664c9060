"""materialize() tests of the representational-similarity assets (seed 002) on the demo."""

import json

import numpy as np
import polars as pl
import pytest
from dagster import AssetCheckSeverity, MultiPartitionKey

from asset_defs.representations import (
    load_similarity,
    model_features,
    probe_scores,
    probe_similarity_link,
    representation_similarity,
    similarity_consistency,
)
from tests.conftest import instance_with_parts, run

DATASETS = ["demo_broad", "demo_imagenet_val"]


def _key(model, data):
    return MultiPartitionKey({"dataset": data, "model": model})


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


@pytest.fixture(scope="module")
def reps(world, demo):
    resources, _ = world
    models = sorted(resources["catalog"].models())
    instance = instance_with_parts(demo.parts)
    instance.add_dynamic_partitions("dataset", [*DATASETS, "demo_narrow"])
    instance.add_dynamic_partitions("model", models)
    features = {"ops": {"model_features": {"config": {"max_samples": 1000, "device": "cpu"}}}}
    for data in DATASETS:
        for m in models:
            assert run([model_features, probe_scores], resources, instance, _key(m, data), run_config=features).success
        assert run([representation_similarity], resources, instance, data).success
    assert run([similarity_consistency, probe_similarity_link], resources, instance, None).success
    return resources, instance, models


def _unit_rows(X):
    X = X.astype(np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_similarity_matrices_are_the_library_metrics_on_normalised_shared_samples(reps):
    """Every metric sees L2-normalised rows, as the seed's Featurizer(normalize=True) stores them."""
    from laionlab.repsim import linear_cka, rbf_cka, rsa

    resources, _, models = reps
    files = resources["files"]
    for data in DATASETS:
        names, matrices = load_similarity(files, data)
        assert names == models
        idx = [np.load(files.path("model_features", data, f"{m}.indices.npy")) for m in models]
        assert (
            all(np.array_equal(i, idx[0]) for i in idx)
            and len(idx[0]) == {"demo_broad": 60, "demo_imagenet_val": 48}[data]
        )
        raw = {m: np.load(files.path("model_features", data, f"{m}.npy")) for m in models}
        X = {m: _unit_rows(x) for m, x in raw.items()}
        for metric, M in matrices.items():
            np.testing.assert_allclose(M, M.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(M), 1.0)
        a, b, c = models[:3]
        assert matrices["linear_cka"][0, 1] == pytest.approx(linear_cka(X[a], X[b]), abs=1e-6)
        assert (
            abs(matrices["linear_cka"][0, 1] - linear_cka(raw[a], raw[b])) > 1e-4
        )  # the raw features give another value
        assert matrices["rbf_cka"][0, 2] == pytest.approx(
            rbf_cka(X[a], X[c], sigma=0.4), abs=1e-6
        )  # the seed's absolute width
        assert matrices["rsa"][1, 2] == pytest.approx(rsa(X[b], X[c]), abs=1e-6)


def test_consistency_correlates_the_upper_triangles(reps):
    from scipy.stats import pearsonr, spearmanr

    resources, _, models = reps
    files = resources["files"]
    table = files.read_parquet("similarity_consistency", "consistency.parquet").filter(pl.col("group") == "all")
    a, b = (load_similarity(files, d)[1] for d in DATASETS)
    iu = np.triu_indices(len(models), k=1)
    for r in table.iter_rows(named=True):
        assert (r["dataset_a"], r["dataset_b"]) == tuple(DATASETS) and r["n_pairs"] == len(iu[0])
        assert r["pearson"] == pytest.approx(pearsonr(a[r["metric"]][iu], b[r["metric"]][iu])[0])
        assert r["spearman"] == pytest.approx(spearmanr(a[r["metric"]][iu], b[r["metric"]][iu])[0])
    assert set(table["metric"]) == {"linear_cka", "rbf_cka", "rsa"}


def test_probe_scores_and_their_link(reps):
    resources, _, models = reps
    files = resources["files"]
    for data in DATASETS:
        for m in models:
            record = json.loads(open(files.path("probe_scores", data, f"{m}.json")).read())
            assert (
                0.0 <= record["test_accuracy"] <= 1.0
                and record["n_train"] + record["n_test"] == {"demo_broad": 60, "demo_imagenet_val": 48}[data]
            )
    link = files.read_parquet("probe_similarity_link", "link.parquet")
    assert set(link["dataset"]) == set(DATASETS) and (link["model_pairs"] == 6).all()


def test_bad_inputs_name_the_problem(reps):
    resources, instance, models = reps
    # an unlabelled dataset: no probe, said in the materialisation (Materialize all must not fail on it)
    result = run([probe_scores], resources, instance, _key(models[0], "demo_narrow"))
    metadata = result.asset_materializations_for_node("probe_scores")[0].metadata
    assert metadata["applicable"].value is False and "has no labels" in metadata["reason"].value
    assert resources["files"].read_json("probe_scores", "demo_narrow", f"{models[0]}.json")["applicable"] is False
    fewer = {"ops": {"model_features": {"config": {"max_samples": 20, "device": "cpu"}}}}
    assert run([model_features], resources, instance, _key(models[0], "demo_broad"), run_config=fewer).success
    result = run([representation_similarity], resources, instance, "demo_broad", raise_on_error=False)
    assert not result.success and "different samples" in _error(result)


def test_nan_features_fail_the_partition_and_keep_the_stored_ones(reps, monkeypatch):
    import laionlab.repsim.models as models_mod

    resources, instance, models = reps
    files = resources["files"]
    before = files.load_npy("model_features", "demo_imagenet_val", f"{models[1]}.npy")
    monkeypatch.setattr(
        models_mod, "extract_features", lambda spec, data, idx, *a, **k: np.full((len(idx), 8), np.nan, np.float32)
    )
    config = {"ops": {"model_features": {"config": {"max_samples": 1000, "device": "cpu"}}}}
    result = run(
        [model_features],
        resources,
        instance,
        _key(models[1], "demo_imagenet_val"),
        run_config=config,
        raise_on_error=False,
    )
    assert not result.success
    assert f"model {models[1]!r} produced NaN/inf features on dataset 'demo_imagenet_val'" in _error(result)
    np.testing.assert_array_equal(files.load_npy("model_features", "demo_imagenet_val", f"{models[1]}.npy"), before)


def test_a_registered_model_without_features_is_named(reps):
    resources, _, models = reps
    instance = instance_with_parts([])
    instance.add_dynamic_partitions("dataset", DATASETS)
    instance.add_dynamic_partitions("model", [*models, "ghost"])
    result = run([representation_similarity], resources, instance, "demo_imagenet_val", raise_on_error=False)
    assert not result.success
    assert "no model_features for models ['ghost'] on dataset 'demo_imagenet_val'" in _error(result)


def test_raw_features_and_a_metric_on_one_dataset_only(reps):
    """normalize: false gives the raw features' CKA; a metric missing on one dataset is left
    out of the consistency table (and reported) instead of failing it."""
    from laionlab.repsim import linear_cka

    resources, instance, models = reps
    files = resources["files"]
    data = "demo_imagenet_val"
    raw = {"ops": {"representation_similarity": {"config": {"normalize": False, "metrics": ["linear_cka"]}}}}
    assert run([representation_similarity], resources, instance, data, run_config=raw).success
    _, matrices = load_similarity(files, data)
    assert list(matrices) == ["linear_cka"]
    X = [files.load_npy("model_features", data, f"{m}.npy") for m in models[:2]]
    assert matrices["linear_cka"][0, 1] == pytest.approx(linear_cka(X[0], X[1]), abs=1e-9)
    result = run([similarity_consistency], resources, instance, None)
    table = files.read_parquet("similarity_consistency", "consistency.parquet")
    assert set(table["metric"]) == {"linear_cka"}
    skipped = json.loads(
        result.asset_materializations_for_node("similarity_consistency")[0].metadata["skipped_metrics"].value
    )
    assert skipped == {"rbf_cka": ["demo_broad"], "rsa": ["demo_broad"]}
    (check,) = result.get_asset_check_evaluations()  # a yellow check in the UI, not only a log line
    assert check.check_name == "every_metric_on_every_dataset" and not check.passed
    assert check.severity == AssetCheckSeverity.WARN and "rsa" in check.metadata["left_out"].value
    assert run([representation_similarity], resources, instance, data).success  # back to the defaults
    result = run([similarity_consistency], resources, instance, None)
    assert result.success and result.get_asset_check_evaluations()[0].passed
