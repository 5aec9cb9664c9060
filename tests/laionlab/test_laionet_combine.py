"""Tests of laionlab.laionet.combine: LAIONet as the union of its parts, on two hand-built parts."""

import polars as pl
import pytest

from laionlab.laionet import combine_laionet_parts, label_map, sum_counts, threshold_curve


def parts():
    rows = {
        "a": pl.DataFrame({"uid": ["a:1", "a:0"], "wnid": ["n2", "n1"], "similarity": [0.9, 0.95]}),
        "b": pl.DataFrame({"uid": ["b:0"], "wnid": ["n2"], "similarity": [0.85], "lemmas": [["crane"]]}),
    }
    eligible = {
        "a": pl.DataFrame(
            {"wnid": ["n1", "n2", "n3"], "similarity": [0.95, 0.9, 0.5], "text_model": ["ViT-B-32/openai"] * 3}
        ),
        "b": pl.DataFrame({"wnid": ["n2", "n2"], "similarity": [0.85, 0.7], "text_model": ["ViT-B-32/openai", None]}),
    }
    counts = {
        "a": {"candidates": 5, "dropped_multi_synset": 1, "kept": 2, "text_in_image_checked": False},
        "b": {"candidates": 4, "dropped_multi_synset": 2, "kept": 1, "text_in_image_checked": True},
    }
    return rows, eligible, counts


def test_sum_counts_adds_every_key():
    assert sum_counts(parts()[2]) == {"candidates": 9, "dropped_multi_synset": 3, "kept": 3, "text_in_image_checked": 1}
    assert sum_counts({}) == {}


def test_combine_laionet_parts_is_the_union_of_the_parts():
    rows, eligible, counts = parts()
    net = combine_laionet_parts(rows, eligible, counts, threshold=0.82, sweep=[0.6, 0.88])
    assert net.rows["uid"].to_list() == ["a:0", "a:1", "b:0"]  # by wnid, then uid
    assert net.rows["lemmas"].to_list() == [None, None, ["crane"]]  # columns of either part kept
    assert net.counts["candidates"] == 9 and net.counts["text_in_image_checked"] == 1
    assert net.labels == label_map(net.rows) == {"n1": [0], "n2": [1, 2]}
    assert net.class_sizes.rows() == [("n2", 2), ("n1", 1)]
    expected = threshold_curve([0.95, 0.9, 0.5, 0.85, 0.7], ["n1", "n2", "n3", "n2", "n2"], [0.6, 0.88])
    assert net.curve.equals(expected) and net.curve["rows"].to_list() == [4, 2]
    assert net.text_models == ["ViT-B-32/openai"] and net.paper_text_model and net.warning is None


def test_combine_laionet_parts_warns_of_another_text_model():
    rows, eligible, counts = parts()
    tiny = pl.lit("laionlab-tiny/random-seed1").alias("text_model")
    eligible = {p: e.with_columns(tiny) for p, e in eligible.items()}
    net = combine_laionet_parts(rows, eligible, counts, threshold=0.82)
    assert net.text_models == ["laionlab-tiny/random-seed1"] and not net.paper_text_model
    assert net.warning is not None and "0.82" in net.warning
    no_model = combine_laionet_parts(rows, {p: e.drop("text_model") for p, e in eligible.items()}, counts, 0.82)
    assert no_model.text_models == [] and not no_model.paper_text_model


def test_combine_laionet_parts_names_the_problem():
    rows, eligible, counts = parts()
    with pytest.raises(ValueError, match="at least one part"):
        combine_laionet_parts({}, {}, {}, 0.82)
    with pytest.raises(ValueError, match="same parts"):
        combine_laionet_parts({"a": rows["a"]}, eligible, counts, 0.82)
    empty = {p: {**c, "dropped_multi_synset": c["candidates"]} for p, c in counts.items()}
    with pytest.raises(ValueError, match=r"no caption of parts \['a', 'b'\] matched exactly one synset"):
        combine_laionet_parts(rows, eligible, empty, 0.82)
