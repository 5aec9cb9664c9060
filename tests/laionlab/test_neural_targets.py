"""Tests of laionlab.ood.neural_targets: seed 000's NSD analysis chained for one dataset, against
the steps of laionlab.ood.neural called one by one (the neural_generalization asset's former
loop), and its tables by hand."""

import numpy as np
import polars as pl
import pytest

from laionlab.ood import (
    dataset_responses,
    neural_ood,
    neural_sampling,
    neural_tables,
    neural_targets,
    noise_ceiling_from_ncsnr,
    prepare_responses,
    strategy_curves,
    subject_clusters,
    synthetic_subject,
)


@pytest.fixture(scope="module")
def subject():
    """A small synthetic subject whose betas are stored as NSD does (int16 x 300)."""
    s = synthetic_subject(n_images=120, n_voxels=12, dim=8, n_clusters=3, n_sessions=2, repeats=2, seed=0)
    raw = {k: s[k] for k in ("session", "stimulus_ids", "ncsnr")}
    raw["betas"] = np.round(s["betas"] * 300).astype(np.int16)
    return s, raw


SETTINGS = dict(
    start_k=4, min_cluster_size=20, n_train=30, max_combinations=1, sizes=[20, 40, 200], repeats=2, n_clusters=3
)


def test_dataset_responses_scale_int16_and_drop_null_voxels(subject):
    s, raw = subject
    responses, image_ids = dataset_responses(raw, n_images=120)
    betas = raw["betas"].astype(np.float32) / 300.0
    nc = noise_ceiling_from_ncsnr(raw["ncsnr"])
    expected, ids = prepare_responses(betas, raw["session"], raw["stimulus_ids"], nc)
    np.testing.assert_array_equal(responses, expected)
    np.testing.assert_array_equal(image_ids, ids)
    assert responses.shape[1] == int((raw["ncsnr"] != 0).sum()) < 12  # the null voxels are gone
    # float betas are not rescaled, and without ncsnr every voxel stays
    floats = {**raw, "betas": betas}
    del floats["ncsnr"]
    responses, _ = dataset_responses(floats, n_images=120, betas_scale=7.0)
    np.testing.assert_array_equal(responses, prepare_responses(betas, raw["session"], raw["stimulus_ids"])[0])


def test_dataset_responses_names_the_problem(subject):
    _, raw = subject
    with pytest.raises(ValueError, match="stimulus id 119 but the dataset has 100 images"):
        dataset_responses(raw, n_images=100)
    with pytest.raises(ValueError, match=r"responses lack arrays \['session'\]"):
        dataset_responses({k: v for k, v in raw.items() if k != "session"}, n_images=120)


def test_neural_targets_equals_the_steps_one_by_one(subject):
    s, raw = subject
    features = s["features"]
    got = neural_targets("nsd", raw, features, ["random", "kcenter"], betas_scale=300.0, **SETTINGS)
    # the asset's former loop
    responses, image_ids = dataset_responses(raw, len(features))
    X = features[image_ids]
    labels, k = subject_clusters(X, start_k=4, min_cluster_size=20)
    ood = [
        {"dataset": "nsd", "k": k, **{c: r[c] for c in ("held_out", "k_train", "encoder_r", "decoder_accuracy")}}
        for r in neural_ood(X, responses, labels, n_train=30, max_combinations=1)
    ]
    rows = neural_sampling(X, responses, ["random", "kcenter"], sizes=[20, 40], repeats=2, n_clusters=3)
    columns = ("strategy", "size", "repeat", "r", "normalised_r")
    sampling = [{"dataset": "nsd", **{c: r[c] for c in columns}} for r in rows]
    assert got.k == k and got.n_images == 120 and got.n_voxels == responses.shape[1]
    assert pl.DataFrame(got.ood).equals(pl.DataFrame(ood))
    assert pl.DataFrame(got.sampling).equals(pl.DataFrame(sampling))
    # sizes above 80 % of the images (96 here) are left out
    assert sorted({r["size"] for r in got.sampling}) == [20, 40]


def test_neural_tables_and_strategy_curves_by_hand():
    from laionlab.ood import NeuralTargets

    a = NeuralTargets(
        "a", 3, 10, 4,
        ood=[
            {"dataset": "a", "k": 3, "held_out": 0, "k_train": 1, "encoder_r": 0.2, "decoder_accuracy": 0.5},
            {"dataset": "a", "k": 3, "held_out": 1, "k_train": 1, "encoder_r": 0.4, "decoder_accuracy": 1.0},
            {"dataset": "a", "k": 3, "held_out": 0, "k_train": 2, "encoder_r": 0.6, "decoder_accuracy": 1.0},
        ],
        sampling=[
            {"dataset": "a", "strategy": "random", "size": 20, "repeat": 0, "r": 0.1, "normalised_r": 0.5},
            {"dataset": "a", "strategy": "random", "size": 20, "repeat": 1, "r": 0.2, "normalised_r": 1.0},
            {"dataset": "a", "strategy": "random", "size": 10, "repeat": 0, "r": 0.1, "normalised_r": 0.25},
            {"dataset": "a", "strategy": "kcenter", "size": 10, "repeat": 0, "r": 0.1, "normalised_r": 0.5},
        ],
    )  # fmt: skip
    b = NeuralTargets("b", 2, 5, 2, ood=[{**a.ood[0], "dataset": "b"}], sampling=[{**a.sampling[0], "dataset": "b"}])
    tables = neural_tables([a, b])
    assert tables.ood.height == 4 and tables.sampling.height == 5
    assert tables.by_k.rows() == [("a", 1, pytest.approx(0.3), 0.75), ("a", 2, 0.6, 1.0), ("b", 1, 0.2, 0.5)]
    assert tables.by_strategy.filter(pl.col("dataset") == "a").rows() == [
        ("a", "kcenter", 10, 0.5), ("a", "random", 10, 0.25), ("a", "random", 20, 0.75),
    ]  # fmt: skip
    sizes, curves = strategy_curves(tables.by_strategy, "a")
    assert sizes == [10, 20] and curves == {"kcenter": [0.5], "random": [0.25, 0.75]}
    assert strategy_curves(tables.by_strategy, "b") == ([20], {"random": [0.5]})
    with pytest.raises(ValueError, match="at least one dataset"):
        neural_tables([])
