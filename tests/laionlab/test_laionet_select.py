"""Tests of laionlab.laionet.select: LAIONet's selection rules (seed 001) on a hand-built frame,
and the check of the text model the 0.82 threshold was calibrated on."""

import polars as pl
import pytest

from laionlab.laionet import (
    LAIONET_COLUMNS,
    is_paper_text_model,
    label_map,
    laionet_table,
    select_laionet,
    single_synset,
    threshold_warning,
)

SIM = "text_to_name_def_wnid_similarity"


def candidates() -> pl.DataFrame:
    """One row per case; ``why`` says which rule should drop it (None: kept)."""
    rows = [
        # uid, wnids, similarity, NSFW, text-in-image flag, expected fate
        ("p:0", ["n1"], 0.82, "UNLIKELY", False, "threshold"),  # exactly the threshold: dropped
        ("p:1", ["n1"], 0.8201, "UNLIKELY", False, None),  # just above: kept
        ("p:2", ["n2"], 0.95, "UNSURE", False, "nsfw"),
        ("p:3", ["n2"], 0.95, "NSFW", None, "nsfw"),
        ("p:4", ["n2"], 0.95, None, False, "nsfw"),  # a missing NSFW value is not UNLIKELY
        ("p:5", ["n2"], 0.95, "UNLIKELY", True, "text_in_image"),
        ("p:6", ["n2"], 0.95, "UNLIKELY", None, None),  # no OCR verdict: kept
        ("p:7", ["n1", "n2"], None, "UNLIKELY", False, "multi_synset"),  # never scored
        ("p:8", ["n3", "n1", "n2"], None, "UNLIKELY", False, "multi_synset"),
        ("p:9", ["n3"], 0.10, "UNLIKELY", False, "threshold"),
        ("p:10", ["n3"], None, "UNLIKELY", False, "threshold"),  # no score: never above
        ("p:11", ["n1"], 0.90, "UNLIKELY", False, None),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "uid": pl.String,
            "wnids": pl.List(pl.String),
            SIM: pl.Float64,
            "NSFW": pl.String,
            "wnid_is_in_recognized_text": pl.Boolean,
            "why": pl.String,
        },
        orient="row",
    )


def test_the_seeds_rules_and_their_counts():
    frame = candidates()
    sel = select_laionet(frame)
    assert sel.rows["uid"].to_list() == ["p:1", "p:11", "p:6"]  # sorted by wnid, uid
    assert sel.rows["wnid"].to_list() == ["n1", "n1", "n2"]
    why = frame["why"].value_counts()
    count = dict(zip(why["why"], why["count"]))
    assert sel.counts == {
        "candidates": 12,
        "dropped_multi_synset": count["multi_synset"],  # 2
        "dropped_nsfw": count["nsfw"],  # 3
        "dropped_text_in_image": count["text_in_image"],  # 1
        "dropped_at_or_below_threshold": count["threshold"],  # 3
        "kept": 3,
    }
    assert sel.text_in_image_checked
    # the sweep's input: every row that passed the first three rules
    assert set(sel.eligible["uid"]) == {"p:0", "p:1", "p:6", "p:9", "p:10", "p:11"}


def test_float32_scores_at_the_threshold_are_dropped():
    # synset_similarity stores float32: float32(0.82) is 0.81999999 and stays out, the next
    # float32 up (0.82000005) is above 0.82
    frame = candidates().with_columns(pl.col(SIM).cast(pl.Float32))
    kept = select_laionet(frame).rows["uid"].to_list()
    assert "p:0" not in kept and "p:1" in kept
    up = pl.DataFrame(
        {"uid": ["a"], "wnids": [["n1"]], SIM: pl.Series([0.82000005], dtype=pl.Float32), "NSFW": ["UNLIKELY"]}
    )
    assert select_laionet(up).counts["kept"] == 1


def test_options_switch_rules_off():
    frame = candidates()
    everything = select_laionet(frame, threshold=-1.0, nsfw_keep=None, text_in_image_column=None)
    # only the single-synset rule and the null score are left
    assert set(everything.rows["uid"]) == {f"p:{i}" for i in (0, 1, 2, 3, 4, 5, 6, 9, 11)}
    assert everything.counts["dropped_nsfw"] == everything.counts["dropped_text_in_image"] == 0
    assert not everything.text_in_image_checked
    unsure = select_laionet(frame, nsfw_keep=["UNLIKELY", "UNSURE"])
    assert "p:2" in unsure.rows["uid"].to_list() and unsure.counts["dropped_nsfw"] == 2
    no_ocr_column = select_laionet(frame.drop("wnid_is_in_recognized_text"))
    assert "p:5" in no_ocr_column.rows["uid"].to_list() and not no_ocr_column.text_in_image_checked


def test_single_synset_and_label_map():
    frame = candidates()
    single, dropped = single_synset(frame)
    assert dropped == 2 and single.height == 10 and (single["wnid"] == single["wnids"].list.first()).all()
    rows = select_laionet(frame).rows
    assert label_map(rows) == {"n1": [0, 1], "n2": [2]}


def test_bad_inputs_name_the_problem():
    frame = candidates()
    with pytest.raises(ValueError, match=r"threshold=1.5 is not a cosine similarity: expected a value in \[-1, 1\]"):
        select_laionet(frame, threshold=1.5)
    with pytest.raises(ValueError, match=r"frame: missing columns \['NSFW'\]"):
        select_laionet(frame.drop("NSFW"))
    select_laionet(frame.drop("NSFW"), nsfw_keep=None)  # not needed then
    with pytest.raises(ValueError, match=r"frame: missing columns \['text_to_name_wnid_similarity'\]"):
        select_laionet(frame, similarity_column="text_to_name_wnid_similarity")
    with pytest.raises(ValueError, match="nsfw_keep: expected a list of strings"):
        select_laionet(frame, nsfw_keep="UNLIKELY")
    with pytest.raises(ValueError, match="matches: missing columns"):
        single_synset(frame.drop("wnids"))


def test_paper_text_model_and_threshold_warning():
    assert is_paper_text_model("ViT-B-32/openai") and is_paper_text_model("ViT-B/32/openai")
    assert not is_paper_text_model("ViT-B-32/laion2b_s34b_b79k")
    assert is_paper_text_model("ViT-B-32-quickgelu/openai") and not is_paper_text_model(
        "ViT-B-32-quickgelu/metaclip_400m"
    )
    assert not is_paper_text_model("ViT-L-14/openai")
    assert not is_paper_text_model("ViT-B-32/ckpt:model.bin")
    assert threshold_warning(0.82, ["ViT-B-32/openai"]) is None
    assert threshold_warning(0.5, ["ViT-L-14/openai"]) is None  # a threshold chosen for the model
    message = threshold_warning(0.82, ["ViT-L-14/openai", "ViT-B-32/openai"])
    assert "ViT-L-14/openai" in message and "LAIONLAB_LAIONET_TEXT_MODEL=ViT-B-32" in message


def test_laionet_table_has_laionets_columns_whatever_the_query():
    base = {c: [f"{c}-0"] for c in LAIONET_COLUMNS if c not in ("name_def_wnid", SIM)}
    extras = {"lemmas": [["tench"]], "text_model": ["ViT-B-32/openai"], "wnids": [["n1"]], "NOTE": ["dropped"]}
    name_def = pl.DataFrame({**base, "name_def_wnid": ["tench which is a fish"], SIM: [0.9], **extras})
    out = laionet_table(name_def)
    assert out.columns == LAIONET_COLUMNS + ["lemmas", "text_model"]
    assert out["name_def_wnid"].to_list() == ["tench which is a fish"] and out[SIM].to_list() == [0.9]
    other = "text_to_lemmas_wnid_similarity"
    lemmas = pl.DataFrame({**base, "lemmas_wnid": ["tench, Tinca tinca"], other: [0.7]})
    out = laionet_table(lemmas, "lemmas", other)
    assert out.columns == LAIONET_COLUMNS  # no lemmas or text_model column to keep
    assert out["name_def_wnid"].to_list() == ["tench, Tinca tinca"] and out[SIM].to_list() == [0.7]
