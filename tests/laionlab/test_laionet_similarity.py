"""Tests of laionlab.laionet.similarity: single-synset captions and their caption-to-synset
cosine, against values computed by hand."""

import numpy as np
import polars as pl
import pytest

from laionlab.laionet import caption_synset_similarity, similarity_column, single_synset_captions, synset_queries_for


def matches() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "uid": ["p:2", "p:0", "p:1", "p:3"],
            "lemmas": [["crane"], ["tench"], ["tench", "crane"], ["goldfish"]],
            "wnids": [["n2"], ["n1"], ["n1", "n2"], ["n3"]],
        }
    )


def captions() -> pl.DataFrame:
    # p:3 has no metadata row: left out
    return pl.DataFrame(
        {"uid": ["p:0", "p:1", "p:2"], "TEXT": ["a tench", "tench and crane", "a crane"], "NSFW": ["UNLIKELY"] * 3}
    )


def synsets() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "wnid": ["n1", "n2", "n3"],
            "lemmas": [["tench"], ["crane"], ["goldfish"]],
            "definition": ["a fish", "a bird", "a fish"],
        }
    )


def test_similarity_column_names_the_query():
    assert similarity_column("name_def") == "text_to_name_def_wnid_similarity"
    assert similarity_column("lemmas") == "text_to_lemmas_wnid_similarity"


def test_single_synset_captions_keeps_one_synset_rows_with_their_caption():
    single, dropped = single_synset_captions(matches(), captions())
    assert dropped == 1
    assert single["uid"].to_list() == ["p:0", "p:2"] and single["wnid"].to_list() == ["n1", "n2"]
    assert single["TEXT"].to_list() == ["a tench", "a crane"] and "NSFW" not in single.columns
    with pytest.raises(ValueError, match="captions: expected a polars DataFrame with columns"):
        single_synset_captions(matches(), captions().drop("TEXT"))


def test_synset_queries_for_keeps_the_wanted_synsets_in_order():
    queries = synset_queries_for(synsets(), pl.Series(["n2", "n1", "n2"]), kind="name_def")
    assert queries["wnid"].to_list() == ["n1", "n2"]
    assert queries["query"].to_list() == ["tench which is a fish", "crane which is a bird"]
    assert synset_queries_for(synsets(), [], kind="name").height == 0


def test_caption_synset_similarity_is_the_row_cosine():
    single, _ = single_synset_captions(matches(), captions())
    queries = synset_queries_for(synsets(), single["wnid"], kind="name_def")
    rng = np.random.default_rng(0)
    caption_emb = rng.normal(size=(2, 4)).astype(np.float32)
    query_emb = rng.normal(size=(2, 4)).astype(np.float32)
    caption_emb /= np.linalg.norm(caption_emb, axis=1, keepdims=True)
    query_emb /= np.linalg.norm(query_emb, axis=1, keepdims=True)
    out = caption_synset_similarity(single, queries, caption_emb, query_emb, "name_def", "toy/model")
    assert out.columns == ["uid", "wnid", "lemmas", "name_def_wnid", "text_to_name_def_wnid_similarity", "text_model"]
    assert out["name_def_wnid"].to_list() == ["tench which is a fish", "crane which is a bird"]
    expected = [float(caption_emb[0] @ query_emb[0]), float(caption_emb[1] @ query_emb[1])]
    np.testing.assert_allclose(out["text_to_name_def_wnid_similarity"].to_numpy(), expected, rtol=1e-6)
    assert out.schema["text_to_name_def_wnid_similarity"] == pl.Float32 and set(out["text_model"]) == {"toy/model"}


def test_caption_synset_similarity_of_no_caption_and_bad_inputs():
    single, _ = single_synset_captions(matches().head(0), captions())
    queries = synset_queries_for(synsets(), single["wnid"], kind="name")
    none = np.zeros((0, 4), np.float32)
    out = caption_synset_similarity(single, queries, none, none, "name", "m")
    assert out.height == 0 and out.schema["name_wnid"] == pl.String
    single, _ = single_synset_captions(matches(), captions())
    queries = synset_queries_for(synsets(), ["n1"], kind="name")
    with pytest.raises(ValueError, match=r"caption_emb: expected 2 rows"):
        caption_synset_similarity(single, queries, np.zeros((3, 4)), np.zeros((1, 4)), "name", "m")
    with pytest.raises(ValueError, match=r"query_emb: expected 1 rows"):
        caption_synset_similarity(single, queries, np.zeros((2, 4)), np.zeros((2, 4)), "name", "m")
    with pytest.raises(ValueError, match=r"no query for wnids \['n2'\]"):
        caption_synset_similarity(single, queries, np.zeros((2, 4)), np.zeros((1, 4)), "name", "m")
