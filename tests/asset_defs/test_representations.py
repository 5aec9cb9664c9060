"""materialize() tests of the representational-similarity assets (seed 002) on the demo."""

import json

import numpy as np
import polars as pl
import pytest
from dagster import MultiPartitionKey

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


def test_similarity_matrices_are_the_library_metrics_on_shared_samples(reps):
    from laionlab.repsim import linear_cka, rsa

    resources, _, models = reps
    files = resources["files"]
    for data in DATASETS:
        names, matrices = load_similarity(files, data)
        assert names == models
        idx = [np.load(files.path("model_features", data, f"{m}.indices.npy")) for m in models]
        assert all(np.array_equal(i, idx[0]) for i in idx) and len(idx[0]) == {"demo_broad": 60, "demo_imagenet_val": 48}[data]
        X = {m: np.load(files.path("model_features", data, f"{m}.npy")) for m in models}
        for metric, M in matrices.items():
            np.testing.assert_allclose(M, M.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(M), 1.0)
        assert matrices["linear_cka"][0, 1] == pytest.approx(linear_cka(X[models[0]], X[models[1]]), abs=1e-9)
        assert matrices["rsa"][1, 2] == pytest.approx(rsa(X[models[1]], X[models[2]]), abs=1e-9)


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
            assert 0.0 <= record["test_accuracy"] <= 1.0 and record["n_train"] + record["n_test"] == {"demo_broad": 60, "demo_imagenet_val": 48}[data]
    link = files.read_parquet("probe_similarity_link", "link.parquet")
    assert set(link["dataset"]) == set(DATASETS) and (link["model_pairs"] == 6).all()


def test_bad_inputs_name_the_problem(reps):
    resources, instance, models = reps
    result = run([probe_scores], resources, instance, _key(models[0], "demo_narrow"), raise_on_error=False)
    assert not result.success and "has no labels" in _error(result)
    fewer = {"ops": {"model_features": {"config": {"max_samples": 20, "device": "cpu"}}}}
    assert run([model_features], resources, instance, _key(models[0], "demo_broad"), run_config=fewer).success
    result = run([representation_similarity], resources, instance, "demo_broad", raise_on_error=False)
    assert not result.success and "different samples" in _error(result)
