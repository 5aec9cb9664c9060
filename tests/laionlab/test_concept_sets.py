"""Tests of the stimulus-set side of laionlab.ood.concepts: the ILSVRC concepts named in
captions (LAIONet's lemma rule) and one concept-distribution row per sampling strategy."""

import polars as pl
import pytest

from laionlab.ood import caption_concepts, compare_distributions, strategy_concept_table


def synsets() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "wnid": ["n1", "n2", "n3"],
            "lemmas": [["tench", "Tinca tinca"], ["goldfish"], ["crane"]],
            "name": ["tench", "goldfish", "crane"],
        }
    )


def pool() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "uid": ["p:0", "p:1", "p:2", "p:3", "p:4"],
            "TEXT": ["a tench and a goldfish", "Goldfish bowl", "crane, flying", None, "a goldfish"],
        }
    )


def test_caption_concepts_names_the_synsets_a_caption_names():
    concepts = caption_concepts(pool(), synsets())
    assert concepts["uid"].to_list() == pool()["uid"].to_list()
    # case-sensitive by default; punctuation is a space ("crane,"); no caption: no concept
    assert concepts["concepts"].to_list() == [["tench", "goldfish"], [], ["crane"], [], ["goldfish"]]
    folded = caption_concepts(pool(), synsets(), case_sensitive=False)
    assert folded["concepts"].to_list()[1] == ["goldfish"]
    columns = r"\['wnid', 'lemmas', 'name'\]"
    with pytest.raises(ValueError, match=rf"synsets: expected a polars DataFrame with columns {columns}"):
        caption_concepts(pool(), synsets().drop("name"))


def test_strategy_concept_table_is_compare_distributions_per_strategy():
    keywords = caption_concepts(pool(), synsets())
    sets = pl.DataFrame(
        {"strategy": ["random", "random", "kcenter", "kcenter", "kcenter"], "rank": [0, 1, 0, 1, 2],
         "uid": ["p:0", "p:4", "p:2", "p:4", "p:9"]}
    )  # fmt: skip
    table = strategy_concept_table(sets, keywords, smoothing=1e-3)
    assert table.columns == [
        "strategy", "images", "concepts", "pool_coverage", "entropy_bits", "kl_to_pool_bits", "js_distance", "top_over",
    ]  # fmt: skip
    assert table["strategy"].to_list() == ["random", "kcenter"]
    # p:9 is not in the pool: an image without a concept
    expected = compare_distributions([["crane"], ["goldfish"], []], keywords["concepts"], smoothing=1e-3)
    row = table.row(1, named=True)
    assert row["images"] == expected["n_images_subset"] == 3
    assert row["js_distance"] == pytest.approx(expected["js_distance"])
    assert row["kl_to_pool_bits"] == pytest.approx(expected["kl_subset_pool_bits"])
    assert row["top_over"] == ", ".join(o["concept"] for o in expected["over_represented"][:3])
    first = compare_distributions([["tench", "goldfish"], ["goldfish"]], keywords["concepts"], smoothing=1e-3)
    assert table.row(0, named=True)["pool_coverage"] == pytest.approx(first["pool_coverage"])
    assert strategy_concept_table(sets, keywords, top_over=1)["top_over"].str.contains(",").not_().all()
    with pytest.raises(ValueError, match="sets: expected a polars DataFrame"):
        strategy_concept_table(sets.drop("strategy"), keywords)
