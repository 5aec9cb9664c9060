"""laionlab.swat.retrieve on constructed matches: which rows a target still downloads, the
failures kept after a download, the candidate rows and the samples table."""

import polars as pl
import pytest

from laionlab.swat import (
    candidate_rows,
    cap_per_class,
    merge_failures,
    picked_rows,
    plan_retrieval,
    rows_to_retrieve,
    samples_table,
)


def _matches():
    return pl.DataFrame(
        {
            "uid": ["a:1", "a:2", "b:1", "b:2", "c:1", "c:2"],
            "classes": [["0"], ["0", "1"], ["1"], ["0"], ["1"], ["0"]],
        }
    )


def test_rows_to_retrieve_keeps_the_rows_without_an_embedding_in_order():
    assert rows_to_retrieve(_matches(), {"a:2", "c:1"}) == ["a:1", "b:1", "b:2", "c:2"]
    assert rows_to_retrieve(_matches(), set()) == _matches()["uid"].to_list()


def test_rows_to_retrieve_caps_per_class_as_cap_per_class():
    embedded = {"a:1"}
    want = cap_per_class(_matches().filter(pl.col("uid") != "a:1"), 1, seed=3)["uid"].to_list()
    assert rows_to_retrieve(_matches(), embedded, max_per_class=1, seed=3) == want
    assert 1 <= len(want) <= 2  # at most one row per class (a:2 is of both)


def test_rows_to_retrieve_names_a_bad_matches_frame():
    with pytest.raises(ValueError, match="matches: expected string_matches' frame"):
        rows_to_retrieve(pl.DataFrame({"uid": ["a:1"]}), set())


def test_plan_retrieval_skips_retrieved_failed_and_ingested_rows():
    wanted = ["a:1", "a:2", "b:1", "b:2", "c:1"]
    plan = plan_retrieval(wanted, retrieved={"a:2", "b:2", "z:9"}, failed_before={"a:1", "q:1"}, ingested_parts=["b"])
    assert plan.todo == ["c:1"]
    # failed_in_ingest: b:1 (b:2 was retrieved for the target since); retrieved counts only wanted rows
    assert plan.counts == {
        "matched_without_embedding": 5,
        "already_retrieved": 2,
        "failed_before": 2,
        "failed_in_ingest": 1,
    }


def test_plan_retrieval_with_retry_failed_tries_every_row_not_retrieved():
    wanted = ["a:1", "a:2", "b:1", "b:2", "c:1"]
    plan = plan_retrieval(wanted, {"a:2"}, {"a:1"}, ["b"], retry_failed=True)
    assert plan.todo == ["a:1", "b:1", "b:2", "c:1"]
    assert plan.counts["failed_in_ingest"] == 2 and plan.counts["failed_before"] == 1


def test_plan_retrieval_of_nothing_is_empty():
    plan = plan_retrieval([], set(), set(), [])
    assert plan.todo == [] and set(plan.counts.values()) == {0}
    with pytest.raises(ValueError, match="wanted: expected a list of uids"):
        plan_retrieval("a:1", set(), set(), [])
    with pytest.raises(ValueError, match="uid 'nocolon'"):
        plan_retrieval(["nocolon"], set(), set(), ["a"])


def test_merge_failures_keeps_earlier_failures_not_tried_and_takes_this_outcome_for_the_rest():
    status = pl.DataFrame(
        {
            "uid": ["a:1", "a:2", "a:3"],
            "status": ["success", "failed_to_download", "failed_to_resize"],
            "error_message": [None, "timeout", "bad image"],
        }
    )
    before = pl.DataFrame({"uid": ["a:1", "a:2", "b:7"], "error_message": ["old 1", "old 2", "old 7"]})
    merged = merge_failures(status, before)
    assert merged.to_dict(as_series=False) == {
        "uid": ["a:2", "a:3", "b:7"],
        "error_message": ["timeout", "bad image", "old 7"],
    }
    empty = pl.DataFrame(schema={"uid": pl.String, "error_message": pl.String})
    assert merge_failures(status, empty)["uid"].to_list() == ["a:2", "a:3"]
    with pytest.raises(ValueError, match="failed_before"):
        merge_failures(status, pl.DataFrame({"uid": ["a:1"]}))
    with pytest.raises(ValueError, match="status: expected"):
        merge_failures(status.drop("error_message"), empty)


def test_candidate_rows_number_the_embedded_rows_and_cast_classes_to_the_key_type():
    uids = ["c:2", "zz:1", "a:2"]  # zz:1 has embeddings but no match: dropped
    frame, candidates = candidate_rows(uids, _matches(), [0, 1])
    frame, candidates = frame.sort("row"), candidates.sort("row")  # the join keeps no order
    assert frame.to_dict(as_series=False) == {"row": [0, 2], "uid": ["c:2", "a:2"], "classes": [["0"], ["0", "1"]]}
    assert candidates.schema["classes"] == pl.List(pl.Int64)
    assert candidates.to_dict(as_series=False) == {"row": [0, 2], "classes": [[0], [0, 1]]}
    _, named = candidate_rows(uids, _matches(), ["0", 1])
    assert named.schema["classes"] == pl.List(pl.String)


def test_candidate_rows_of_classes_that_are_no_keys_raise_polars_error():
    matches = pl.DataFrame({"uid": ["a:1"], "classes": [["tench"]]})
    with pytest.raises(pl.exceptions.InvalidOperationError):
        candidate_rows(["a:1"], matches, [0])
    with pytest.raises(ValueError, match="matches"):
        candidate_rows(["a:1"], pl.DataFrame({"uid": ["a:1"]}), [0])


def test_picked_rows_and_samples_table_equal_the_asset_computation():
    frame, _ = candidate_rows(["a:1", "a:2", "b:1"], _matches(), [0, 1])
    picks = pl.DataFrame(
        {
            "row": [2, 0, 2],
            "class": [1, 0, 1],
            "score": [0.9, 0.5, 0.8],
            "rank": [0, 0, 0],
            "method": ["T2T-rank", "T2T-rank", "Random"],
        },
        schema_overrides={"row": pl.UInt32},
    )
    assert picked_rows(frame, picks)["uid"].to_list() == ["a:1", "b:1"]
    assert picked_rows(frame, picks).equals(frame.join(picks.select("row").unique(), on="row").sort("row"))
    samples = samples_table(picks, frame)
    before = picks.join(frame.select("row", "uid"), on="row").select(
        "uid", pl.col("class").cast(pl.String), "score", "rank", "method"
    )
    assert samples.sort("uid", "method").equals(before.sort("uid", "method"))
    assert samples.columns == ["uid", "class", "score", "rank", "method"]
    assert sorted(samples.select("uid", "class", "method").rows()) == [
        ("a:1", "0", "T2T-rank"),
        ("b:1", "1", "Random"),
        ("b:1", "1", "T2T-rank"),
    ]
    with pytest.raises(ValueError, match="picks: expected"):
        samples_table(picks.drop("score"), frame)


def test_matched_captions_equal_the_per_part_frames_string_matches_built():
    from laionlab.swat import from_class_names, match_synonyms, matched_captions

    captions = pl.DataFrame(
        {
            "uid": ["p:0", "p:1", "p:2", "p:3"],
            "TEXT": ["A Tench on ice", None, "goldfish and tench", "a shark"],
        }
    )
    synonyms = from_class_names(["tench", "goldfish"])
    got = matched_captions(captions, synonyms)
    matched = match_synonyms(captions["TEXT"], synonyms)
    before = pl.concat([captions.select("uid"), matched.select("classes", "synonyms")], how="horizontal")
    before = before.filter(pl.col("classes").list.len() > 0).with_columns(pl.col("classes").cast(pl.List(pl.String)))
    assert got.equals(before)
    assert got.to_dict(as_series=False) == {
        "uid": ["p:0", "p:2"],
        "classes": [["0"], ["0", "1"]],
        "synonyms": [["tench"], ["goldfish", "tench"]],
    }
    assert matched_captions(captions, synonyms, prefix="ice")["uid"].to_list() == ["p:0"]
    with pytest.raises(ValueError, match="captions: expected a frame"):
        matched_captions(captions.rename({"TEXT": "caption"}), synonyms)


def test_caption_rows_add_the_part_and_the_normalised_caption():
    from laionlab.swat import caption_rows, normalise

    captions = pl.DataFrame({"uid": ["p:0", "p:1", "p:2"], "TEXT": ["Crème  Brûlée!", None, "it's a TENCH"]})
    rows = caption_rows(captions, "p")
    assert rows.columns == ["uid", "part", "TEXT", "normalised"] and rows["part"].to_list() == ["p"] * 3
    assert rows["normalised"].to_list() == normalise(captions["TEXT"]).str.strip_chars().to_list()
    assert rows["normalised"][2] == normalise(["it's a TENCH"])[0].strip() and not rows["normalised"][2].startswith(" ")
    with pytest.raises(ValueError, match="part: expected a non-empty partition key"):
        caption_rows(captions, "")
