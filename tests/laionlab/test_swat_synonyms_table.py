"""laionlab.swat.synonyms_table / synonyms_from_table: the concept_synonyms table of a target
and what string matching reads back from it."""

import polars as pl
import pytest

from laionlab.swat import ClassSynonyms, from_class_names, synonyms_from_table, synonyms_table


def _synonyms():
    return {
        0: ClassSynonyms(name="tench", synonyms=("tench", "Tinca tinca"), most_common_name="tench"),
        -1: ClassSynonyms(name="goldfish", synonyms=("goldfish", "carassius")),
        "n015": ClassSynonyms(name="shark", synonyms=("great white shark",)),
    }


def test_synonyms_table_is_one_row_per_class_as_concept_synonyms_built_it():
    synonyms = _synonyms()
    frame = synonyms_table(synonyms, "satellite")
    # the frame concept_synonyms built inline before
    before = pl.DataFrame(
        {
            "class": [str(k) for k in synonyms],
            "name": [s.name for s in synonyms.values()],
            "synonyms": [list(s.synonyms) for s in synonyms.values()],
            "most_common_name": [s.most_common_name or s.name for s in synonyms.values()],
        }
    ).with_columns(prefix=pl.lit("satellite", dtype=pl.String))
    assert frame.equals(before)
    assert frame["class"].to_list() == ["0", "-1", "n015"]
    assert frame["most_common_name"].to_list() == ["tench", "goldfish", "shark"]
    assert synonyms_table(synonyms)["prefix"].to_list() == [None, None, None]
    assert synonyms_table(synonyms)["prefix"].dtype == pl.String


def test_synonyms_from_table_gives_back_int_keys_and_the_synonyms_searched():
    ints = {k: v for k, v in _synonyms().items() if isinstance(k, int)}
    synonyms, prefix = synonyms_from_table(synonyms_table(ints, "satellite"))
    assert prefix == "satellite" and list(synonyms) == [0, -1]
    assert synonyms == from_class_names({0: ["tench", "Tinca tinca"], -1: ["goldfish", "carassius"]})
    named = {"n015": ClassSynonyms(name="shark", synonyms=("great white shark", "shark"))}
    synonyms, prefix = synonyms_from_table(synonyms_table(named))
    assert prefix is None and synonyms == from_class_names({"n015": ["great white shark", "shark"]})


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: synonyms_table({0: "tench"}), "synonyms: expected a mapping class"),
        (lambda: synonyms_table(_synonyms(), prefix=3), "prefix: expected a word"),
        (lambda: synonyms_from_table(pl.DataFrame({"class": ["0"]})), "frame: expected a synonyms_table table"),
        (lambda: synonyms_from_table(synonyms_table(_synonyms()).head(0)), "at least one class"),
    ],
)
def test_bad_inputs_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
