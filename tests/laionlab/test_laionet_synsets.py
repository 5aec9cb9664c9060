"""Tests of laionlab.laionet.synsets (the synset table, the lemma dictionary as a table, and the
comparison with the seed's 999-synset dictionary) and laionlab.io.imagenet.read_synsets_table."""

import polars as pl
import pytest

from laionlab.io.imagenet import ilsvrc_synsets, read_synsets_table
from laionlab.laionet import SEED_DICTIONARY, seed_dictionary_comparison, synset_tables, unique_lemma_map


def toy_synsets() -> pl.DataFrame:
    """Three synsets; "crane" is shared by n2 and n3, so with n3 left out (the seed's file)
    "crane" becomes n2's."""
    return pl.DataFrame(
        {
            "class_index": [0, 1, 2],
            "wnid": ["n1", "n2", "n3"],
            "lemmas": [["tench", "Tinca tinca"], ["crane"], ["crane", "derrick"]],
            "definition": ["a fish", "a bird", "a machine"],
        }
    )


def test_synset_tables_on_a_toy_table():
    tables = synset_tables(toy_synsets())
    assert tables.synsets.columns == ["class_index", "wnid", "lemmas", "definition", "name", "name_def"]
    assert tables.synsets["name_def"].to_list() == [
        "tench which is a fish", "crane which is a bird", "crane which is a machine",
    ]  # fmt: skip
    # the lemma table is the seed's dictionary: "crane" is listed twice, so it is dropped and
    # n2 has no lemma left
    assert tables.lemmas.rows() == [("tench", "n1"), ("Tinca tinca", "n1"), ("derrick", "n3")]
    assert tables.dictionary.dropped_wnids == ["n2"]


def test_synset_tables_sorts_by_class_index_and_names_bad_inputs():
    shuffled = toy_synsets().reverse()
    assert synset_tables(shuffled).synsets["wnid"].to_list() == ["n1", "n2", "n3"]
    with pytest.raises(ValueError, match="class_index"):
        synset_tables(toy_synsets().drop("class_index"))
    with pytest.raises(ValueError, match="definition"):
        synset_tables(toy_synsets().with_columns(pl.lit("").alias("definition")))
    with pytest.raises(ValueError, match="synsets: expected a polars DataFrame"):
        synset_tables({"wnid": ["n1"]})


def test_seed_dictionary_comparison_on_a_toy_table():
    seed = seed_dictionary_comparison(toy_synsets(), missing_wnids=["n3"])
    assert seed.only_seed_like == [("crane", "n2")]
    assert seed.only_this == [("derrick", "n3")]
    assert seed.counts["dictionary"].to_list()[1] == "without n3 (the seed's 999-synset file)"
    assert seed.counts.select("synsets", "lemmas", "wnids").rows() == [
        (3, 3, 2),
        (2, 3, 2),
        (SEED_DICTIONARY["synsets"], SEED_DICTIONARY["lemmas"], SEED_DICTIONARY["wnids"]),
    ]
    # a precomputed dictionary gives the same answer
    again = seed_dictionary_comparison(toy_synsets(), unique_lemma_map(toy_synsets()), ["n3"])
    assert again.counts.equals(seed.counts) and again.only_this == seed.only_this
    with pytest.raises(ValueError, match="missing_wnids"):
        seed_dictionary_comparison(toy_synsets(), missing_wnids="n3")


def test_seed_dictionary_comparison_reproduces_the_seed_on_ilsvrc():
    """Without crane-the-machine, the 1000 ILSVRC synsets give the seed's published 1825
    lemmas of 995 wnids, and 'crane' names the bird."""
    seed = seed_dictionary_comparison(ilsvrc_synsets())
    assert seed.counts.row(1)[1:] == (999, 1825, 995)
    assert seed.counts.row(0)[1:] == (1000, 1824, 994)
    assert ("crane", "n02012849") in seed.only_seed_like


def test_read_synsets_table_tsv_and_parquet(tmp_path):
    tsv = tmp_path / "synsets.tsv"
    tsv.write_text("wnid\tlemmas\tdefinition\nn1\ttench, Tinca tinca\ta fish\nn2\tgoldfish\ta small fish\n")
    frame = read_synsets_table(str(tsv))
    assert frame.columns == ["class_index", "wnid", "lemmas", "definition", "name"]
    assert frame["lemmas"].to_list() == [["tench", "Tinca tinca"], ["goldfish"]]
    assert frame["name"].to_list() == ["tench", "goldfish"] and frame["class_index"].to_list() == [0, 1]
    parquet = tmp_path / "synsets.parquet"
    frame.drop("class_index", "name").write_parquet(parquet)
    assert read_synsets_table(str(parquet)).equals(frame)
    # the table feeds synset_tables like timm's
    name_defs = synset_tables(frame).synsets["name_def"].to_list()
    assert name_defs == ["tench which is a fish", "goldfish which is a small fish"]


def test_read_synsets_table_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="synsets_file not found: .*nowhere.tsv"):
        read_synsets_table(str(tmp_path / "nowhere.tsv"))
    no_def = tmp_path / "no_def.tsv"
    no_def.write_text("wnid\tlemmas\nn1\ttench\n")
    with pytest.raises(ValueError, match=r"lacks columns \['definition'\]"):
        read_synsets_table(str(no_def), name="my_table")
    blank = tmp_path / "blank.tsv"
    blank.write_text("wnid\tlemmas\tdefinition\nn1\ttench\ta fish\nn2\tgoldfish\t \n")
    with pytest.raises(ValueError, match=r"1 synsets have no definition \(e.g. \['n2'\]\)"):
        read_synsets_table(str(blank))
