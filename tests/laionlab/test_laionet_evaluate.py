"""Tests of laionlab.laionet.evaluate (the seed's image filter and classifier stream, accuracy
tables against hand-computed values) and laionlab.laionet.recreate (nearest-caption rows)."""

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.laionet import (
    ImageEvaluator,
    accuracy_tables,
    keep_uids,
    nearest_caption_rows,
    pairs_with_vectors,
    recreated_pairs,
    top_k_hits,
)


def samples():
    rgb = Image.new("RGB", (20, 20), (200, 10, 10))
    return [
        ("u:0", rgb, 400),
        ("u:1", Image.new("L", (20, 20)), 400),  # grayscale: the seed drops it
        ("u:2", Image.new("RGB", (5, 5)), 25),  # 25 px < 100
        ("u:3", rgb, 50),  # stored at 20x20, but downloaded at 50 px
        ("u:4", Image.new("RGBA", (30, 30)), 900),
        ("u:5", rgb, 400),
    ]


def test_evaluator_filters_as_the_seed_and_counts_why():
    out = ImageEvaluator([], k=3).run(iter(samples()), "test")
    assert out.kept == ["u:0", "u:5"]
    assert out.problems == {"not_rgb": 2, "small": 1, "small_original": 1}
    assert out.predictions == {}
    loose = ImageEvaluator([], k=3, require_rgb=False, min_area=0).run(iter(samples()), "test")
    assert loose.kept == [f"u:{i}" for i in range(6)] and loose.problems == {}


def test_evaluator_runs_every_model_on_the_kept_images_in_batches():
    from laionlab.laionet import load_timm_classifier, timm_predict

    model = load_timm_classifier("test_convnext")
    out = ImageEvaluator([("m", model)], k=2, batch_size=1).run(iter(samples()), "test")
    assert out.predictions["m"].shape == (2, 2)
    kept_images = [img for uid, img, _ in samples() if uid in out.kept]
    np.testing.assert_array_equal(out.predictions["m"], timm_predict(model, kept_images, k=2))


def test_accuracy_tables_equal_hand_computed_values():
    predictions = {
        "LAIONet": {"m": (["l1", "l2", "l3"], np.array([["a", "b"], ["b", "a"], ["b", "a"]]))},
        "ref": {"m": (["r1", "r2", "r3"], np.array([["a", "b"], ["b", "a"], ["c", "a"]]))},
    }
    truth = {"LAIONet": {"l1": "a", "l2": "a", "l3": "b"}, "ref": {"r1": "a", "r2": "b", "r3": "c"}}
    weights = {"a": 2 / 3, "b": 1 / 3}  # LAIONet's class shares
    per_class, summary = accuracy_tables(predictions, truth, ["a", "b"], weights, [1, 2])
    acc = {(r["dataset"], r["k"], r["weighting"]): r["accuracy"] for r in summary.iter_rows(named=True)}
    # LAIONet top-1: recall a = 1/2, b = 1/1
    assert acc[("LAIONet", 1, "equal")] == pytest.approx(0.75)
    assert acc[("LAIONet", 1, "laion")] == pytest.approx(0.5 * 2 / 3 + 1.0 / 3)
    assert acc[("LAIONet", 2, "equal")] == pytest.approx(1.0) and acc[("LAIONet", 2, "laion")] == pytest.approx(1.0)
    # the reference restricted to LAIONet's classes: r3 (class c) is left out
    assert acc[("ref", 1, "equal")] == pytest.approx(1.0)
    ref = per_class.filter((pl.col("dataset") == "ref") & (pl.col("k") == 1)).sort("class")
    assert ref["class"].to_list() == ["a", "b"] and ref["n"].to_list() == [1, 1]
    assert set(summary["images"]) == {3} and summary.height == 2 * 2 * 2


def test_nearest_caption_rows_drop_queries_without_a_neighbour():
    id_map = pl.DataFrame({"id": [10, 11, 12], "uid": ["p:0", "p:1", "p:2"]})
    scores = np.array([[0.9], [-3.4e38], [0.7], [0.8]], np.float32)
    ids = np.array([[12], [-1], [10], [12]], np.int64)  # faiss: -1 when the probed lists are empty
    found, missing = nearest_caption_rows(
        ["c:0", "c:1", "c:2", "c:3"], ["x", "y", "z", "w"], ["n1", "n2", "n1", "n1"], scores, ids, id_map
    )
    assert missing == 1
    assert found["caption_uid"].to_list() == ["c:0", "c:2", "c:3"] and found["uid"].to_list() == ["p:2", "p:0", "p:2"]
    np.testing.assert_allclose(found["caption_similarity"].to_numpy(), [0.9, 0.7, 0.8])
    assert recreated_pairs(found).rows() == [("p:2", "n1"), ("p:0", "n1")]
    with pytest.raises(ValueError, match="id_map: 1 ids found in the index have no uid"):
        nearest_caption_rows(["c:0"], ["x"], ["n1"], scores[:1], np.array([[99]]), id_map)
    with pytest.raises(ValueError, match="expected 2 rows each"):
        nearest_caption_rows(["c:0", "c:1"], ["x"], ["n1", "n2"], scores[:2], ids[:2], id_map)


def test_top_k_hits_count_by_hand():
    predictions = {
        "m": (["u1", "u2", "u3"], np.array([["a", "b"], ["a", "b"], ["c", "a"]])),
        "empty": ([], np.zeros((0, 2), object)),
    }
    truth = {"u1": "a", "u2": "b", "u3": "b"}
    top1 = top_k_hits(predictions, truth, 1)
    assert top1.columns == ["model", "images", "top1_hits", "top1_accuracy_unweighted"]
    assert top1["model"].to_list() == ["m", "empty"] and top1["images"].to_list() == [3, 0]
    assert top1["top1_hits"].to_list() == [1, 0]  # only u1's first guess is right
    assert top1["top1_accuracy_unweighted"][0] == pytest.approx(0.3333)  # rounded to 4 places
    assert np.isnan(top1["top1_accuracy_unweighted"][1])  # no images: no accuracy
    top2 = top_k_hits(predictions, truth, 2)
    assert top2["top2_hits"].to_list() == [2, 0] and top2["top2_accuracy_unweighted"][0] == pytest.approx(0.6667)


def test_keep_uids_keeps_the_wanted_images_in_order():
    predictions = {
        "m": (["u1", "u2", "u3"], np.array([["a", "b"], ["c", "d"], ["e", "f"]])),
        "n": (["u3"], np.array([["g", "h"]])),
    }
    kept = keep_uids(predictions, ["u3", "u1", "x"])
    assert kept["m"][0] == ["u1", "u3"] and kept["m"][1].tolist() == [["a", "b"], ["e", "f"]]
    assert kept["n"][0] == ["u3"] and kept["n"][1].tolist() == [["g", "h"]]
    none = keep_uids(predictions, [])
    assert none["m"][0] == [] and none["m"][1].shape == (0, 2)


def test_pairs_with_vectors_align_rows_and_vectors():
    pairs = pl.DataFrame({"uid": ["p:2", "p:0", "p:9", "p:2"], "wnid": ["n1", "n1", "n2", "n3"]})
    emb = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], np.float32)  # vectors of p:0, p:1, p:2
    kept, vectors = pairs_with_vectors(pairs, ["p:0", "p:1", "p:2"], emb)
    assert kept.rows() == [("p:2", "n1"), ("p:0", "n1"), ("p:2", "n3")]  # p:9 has no vector
    np.testing.assert_array_equal(vectors, [[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]])
    none, empty = pairs_with_vectors(pairs, [], np.zeros((0, 2), np.float32))
    assert none.height == 0 and empty.shape == (0, 1) and empty.dtype == np.float32
