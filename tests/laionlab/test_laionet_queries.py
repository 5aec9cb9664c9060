"""Tests of laionlab.laionet.queries: seed 001's (LAIONet) synset query texts
(core/queries.py: name = NLTK's lower-cased first lemma, name_def = name + " which is " + gloss)."""

import polars as pl
import pytest

from laionlab.io.imagenet import ilsvrc_synsets
from laionlab.laionet import (
    DEFAULT_QUERY_KIND,
    QUERY_KINDS,
    synset_name,
    synset_queries,
    synset_query,
)

COUGAR = "n02125311"
COUGAR_DEF = "large American feline resembling a lion"
COUGAR_LEMMAS_OR = "cougar or puma or catamount or mountain lion or painter or panther or Felis concolor"


@pytest.fixture(scope="module")
def ilsvrc():
    return ilsvrc_synsets()


def toy(definitions, lemmas=None):
    n = len(definitions)
    return pl.DataFrame(
        {
            "wnid": [f"n{i:08d}" for i in range(n)],
            "lemmas": lemmas if lemmas is not None else [[f"Lemma_{i}", f"other {i}"] for i in range(n)],
            "definition": definitions,
        },
        schema={"wnid": pl.String, "lemmas": pl.List(pl.String), "definition": pl.String},
    )


# --- synset name -------------------------------------------------------------------------------


def test_synset_name_is_first_lemma_lower_cased_with_spaces():
    # NLTK: synset._name = first lemma .lower() + ".n.NN"; the seed cuts ".n." and maps _ -> space.
    assert synset_name(["Chihuahua"]) == "chihuahua"
    assert synset_name(["Old English sheepdog", "bobtail"]) == "old english sheepdog"
    assert synset_name(["kit_fox", "Vulpes_macrotis"]) == "kit fox"
    assert synset_name(["Shih-Tzu"]) == "shih-tzu"


@pytest.mark.parametrize("bad", [[], "cougar", [""], ["  "], [None], [3], None])
def test_synset_name_rejects_bad_lemmas(bad):
    with pytest.raises(ValueError, match="lemmas"):
        synset_name(bad)


# --- one query ---------------------------------------------------------------------------------


def test_default_kind_is_the_seeds_name_def():
    assert DEFAULT_QUERY_KIND == "name_def"
    lemmas = ["cougar", "puma"]
    assert synset_query("cougar", lemmas, COUGAR_DEF) == "cougar which is " + COUGAR_DEF


def test_every_kind_matches_the_seed_strings():
    lemmas = ["kit_fox", "Vulpes macrotis"]
    name, gloss = "kit fox", "small grey fox of southwestern United States"
    expected = {
        "name": "kit fox",
        "name_def": "kit fox which is small grey fox of southwestern United States",
        "lemmas": "kit fox or Vulpes macrotis",
        "a_photo_of_name": "a photo of kit fox",
        "a_photo_of_name_def": "a photo of kit fox which is small grey fox of southwestern United States",
        "a_clear_photo_of_name_def": "a clear photo of kit fox which is small grey fox of southwestern United States",
        "a_photo_of_lemmas": "a photo of kit fox or Vulpes macrotis",
    }
    assert set(expected) == set(QUERY_KINDS)
    for kind, text in expected.items():
        assert synset_query(name, lemmas, gloss, kind) == text, kind


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match=r"kind: expected one of .*'name_def'.*'a_photo_of_lemmas'.*got 'a_photo'"):
        synset_query("cougar", ["cougar"], COUGAR_DEF, "a_photo")


@pytest.mark.parametrize("definition", ["", "   ", None])
def test_missing_definition_names_the_wnid(definition):
    with pytest.raises(ValueError, match=r"definition for n02125311: kind 'name_def' needs"):
        synset_query("cougar", ["cougar"], definition, wnid=COUGAR)
    with pytest.raises(ValueError, match="a_clear_photo_of_name_def"):
        synset_query("cougar", ["cougar"], definition, "a_clear_photo_of_name_def")


def test_kinds_without_definition_do_not_need_one():
    assert synset_query("cougar", ["cougar", "puma"], None, "a_photo_of_name") == "a photo of cougar"
    assert synset_query("cougar", ["cougar", "puma"], None, "lemmas") == "cougar or puma"


def test_bad_name_and_lemmas_rejected():
    with pytest.raises(ValueError, match="name for n1: expected a non-empty str"):
        synset_query("", ["x"], "d", wnid="n1")
    with pytest.raises(ValueError, match=r"lemmas\[1\] for n1"):
        synset_query("x", ["x", ""], "d", wnid="n1")


# --- frames --------------------------------------------------------------------------------------


def test_cougar_from_ilsvrc_synsets(ilsvrc):
    q = synset_queries(ilsvrc)
    row = q.filter(pl.col("wnid") == COUGAR).row(0, named=True)
    # The fact sheet's example of the seed's query, from timm's WordNet gloss.
    assert row == {"wnid": COUGAR, "name": "cougar", "query": "cougar which is " + COUGAR_DEF}
    lemmas = synset_queries(ilsvrc, "lemmas").filter(pl.col("wnid") == COUGAR)["query"][0]
    assert lemmas == COUGAR_LEMMAS_OR


def test_frame_equals_one_query_at_a_time_for_all_kinds(ilsvrc):
    rows = ilsvrc.select("wnid", "lemmas", "definition").rows()
    for kind in QUERY_KINDS:
        q = synset_queries(ilsvrc, kind)
        assert q.columns == ["wnid", "name", "query"]
        assert q["wnid"].to_list() == [r[0] for r in rows]
        assert q["name"].to_list() == [synset_name(r[1]) for r in rows]
        assert q["query"].to_list() == [synset_query(synset_name(r[1]), r[1], r[2], kind) for r in rows]


def test_ilsvrc_names_are_lower_cased_and_the_seed_cut_is_a_no_op(ilsvrc):
    q = synset_queries(ilsvrc)
    first = ilsvrc["lemmas"].list.first().to_list()
    assert q["name"].to_list() == [f.lower() for f in first]
    assert sum(f != f.lower() for f in first) > 100  # e.g. "Chihuahua", "Siberian husky"
    # The seed cuts synset.name() at ".n."; no ILSVRC name contains it.
    assert not q["name"].str.contains(".n.", literal=True).any()
    by_wnid = dict(zip(q["wnid"].to_list(), q["name"].to_list()))
    assert by_wnid["n02085620"] == "chihuahua"
    assert by_wnid["n02110185"] == "siberian husky"


def test_frame_keeps_row_order_and_replaces_underscores():
    frame = toy(["d0", "d1"], lemmas=[["Hot_Dog", "frank"], ["b_b", "c_c"]])
    q = synset_queries(frame.reverse(), "a_photo_of_lemmas")
    assert q["wnid"].to_list() == ["n00000001", "n00000000"]
    assert q["name"].to_list() == ["b b", "hot dog"]
    assert q["query"].to_list() == ["a photo of b b or c c", "a photo of Hot Dog or frank"]


def test_null_or_empty_definitions_name_the_wnids():
    frame = toy(["ok", None, "", "  ", "ok", None, None, None])
    with pytest.raises(ValueError, match="synsets.definition") as err:
        synset_queries(frame)
    msg = str(err.value)
    assert "6 synset(s)" in msg
    assert "['n00000001', 'n00000002', 'n00000003', 'n00000005', 'n00000006']" in msg
    # Kinds without the definition do not look at it.
    assert synset_queries(frame, "name").height == 8


def test_missing_columns():
    frame = toy(["d"])
    with pytest.raises(ValueError, match=r"missing \['definition'\]"):
        synset_queries(frame.drop("definition"))
    assert synset_queries(frame.drop("definition"), "lemmas")["query"].to_list() == ["Lemma 0 or other 0"]
    with pytest.raises(ValueError, match=r"missing \['lemmas'\]"):
        synset_queries(frame.drop("lemmas"), "name")


def test_bad_lemma_lists_name_the_wnids():
    frame = toy(["a", "b", "c"], lemmas=[["x"], [], ["y", ""]])
    with pytest.raises(ValueError, match=r"synsets.lemmas: .*2 synset\(s\) fail, e.g. \['n00000001', 'n00000002'\]"):
        synset_queries(frame)


def test_bad_frames():
    with pytest.raises(ValueError, match="synsets: expected a polars DataFrame"):
        synset_queries({"wnid": ["n1"]})
    frame = toy(["a", "b"])
    with pytest.raises(ValueError, match=r"synsets.wnid: expected unique wnids, duplicated \['n1'\]"):
        synset_queries(frame.with_columns(pl.lit("n1").alias("wnid")))
    with pytest.raises(ValueError, match="synsets.lemmas: expected dtype"):
        synset_queries(frame.with_columns(pl.col("lemmas").list.join(", ")))
    with pytest.raises(ValueError, match="kind: expected one of"):
        synset_queries(frame, "photo")
