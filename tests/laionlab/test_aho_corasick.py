"""Tests of laionlab.aho_corasick: the one-pass literal-pattern search shared by LAIONet's lemma
matcher (seed 001) and SWAT's synonym matcher (seed 003)."""

import random

import polars as pl
import pytest

from laionlab.aho_corasick import matches_per_row

GATHER = {"names": "name", "ids": "id"}


def _texts(texts):
    return pl.LazyFrame({"text": pl.Series(texts, dtype=pl.String)}).with_row_index("row")


def _table(pairs, ids=None):
    patterns = [p for p, _ in pairs]
    names = [n for _, n in pairs]
    return pl.DataFrame(
        {"pattern": patterns, "name": names, "id": list(range(len(pairs))) if ids is None else ids},
        schema={"pattern": pl.String, "name": pl.String, "id": pl.Int64},
    )


def test_every_occurrence_overlapping_included_sorted_unique():
    table = _table([(" hot dog ", "hot dog"), (" dog ", "dog"), (" bun ", "bun")])
    out = matches_per_row(_texts([" hot dog bun ", " dog dog ", " hotdog ", None]), 4, table, GATHER)
    assert out.columns == ["row", "names", "ids"]
    assert out.schema["row"] == pl.get_index_type()
    assert out.schema["ids"] == pl.List(pl.Int64)
    assert out["row"].to_list() == [0, 1, 2, 3]
    assert out["names"].to_list() == [["bun", "dog", "hot dog"], ["dog"], [], []]
    assert out["ids"].to_list() == [[0, 1, 2], [1], [], []]


def test_a_pattern_on_several_lines_matches_them_all():
    table = _table([(" fox ", "b"), (" fox ", "a"), (" cat ", "c")])
    out = matches_per_row(_texts([" red fox ", " cat "]), 2, table, GATHER)
    assert out["names"].to_list() == [["a", "b"], ["c"]]
    assert out["ids"].to_list() == [[0, 1], [2]]


def test_rows_missing_or_out_of_order_match_nothing_and_keep_row_order():
    texts = _texts([" a ", " b ", " c "]).filter(pl.col("row") != 1).sort("row", descending=True)
    out = matches_per_row(texts, 3, _table([(" a ", "A"), (" b ", "B"), (" c ", "C")]), {"names": "name"})
    assert out["row"].to_list() == [0, 1, 2]
    assert out["names"].to_list() == [["A"], [], ["C"]]


def test_empty_table_and_no_rows():
    out = matches_per_row(_texts([" a "]), 1, _table([]), GATHER)
    assert out["names"].to_list() == [[]] and out["ids"].to_list() == [[]]
    assert out.schema["names"] == pl.List(pl.String) and out.schema["ids"] == pl.List(pl.Int64)
    out = matches_per_row(_texts([]), 0, _table([(" a ", "A")]), GATHER)
    assert out.height == 0 and out.columns == ["row", "names", "ids"]


def test_same_sets_as_substring_tests():
    rng = random.Random(0)
    words = ["ab", "b", "abc", "ca", "bc", "a"]
    pairs = [(" " + " ".join(rng.choices(words, k=rng.randint(1, 2))) + " ", f"p{i}") for i in range(20)]
    texts = [" " + " ".join(rng.choices(words, k=rng.randint(0, 8))) + " " for _ in range(300)]
    out = matches_per_row(_texts(texts), len(texts), _table(pairs), {"names": "name"})
    want = [sorted({name for pattern, name in pairs if pattern in text}) for text in texts]
    assert out["names"].to_list() == want


@pytest.mark.parametrize(
    ("table", "gather", "match"),
    [
        (pl.DataFrame({"name": ["a"]}), {"names": "name"}, "table: expected a 'pattern' column"),
        (pl.DataFrame({"pattern": [1]}), {}, "table: expected a 'pattern' column of dtype String"),
        (_table([(" a ", "A")]), {"x": "missing"}, r"gather: expected columns of table, got \['missing'\]"),
        (_table([("", "A")]), {"names": "name"}, "table: expected non-null, non-empty patterns"),
        (
            pl.DataFrame(
                {"pattern": [None, " a "], "name": ["x", "y"]}, schema={"pattern": pl.String, "name": pl.String}
            ),
            {"names": "name"},
            "table: expected non-null, non-empty patterns",
        ),
    ],
)
def test_bad_table(table, gather, match):
    with pytest.raises(ValueError, match=match):
        matches_per_row(_texts([" a "]), 1, table, gather)
