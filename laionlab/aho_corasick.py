"""Many literal patterns searched in many texts in one Aho-Corasick pass, for the caption
matchers of seed 001 (:mod:`laionlab.laionet.match`, LAIONet's lemma rule, which the seed ran
as a Python loop over rows and lemmas in ``scripts/createdataset/label_laion.py``) and seed 003
(:mod:`laionlab.swat.match`, SWAT's synonym rule, which the seed ran as SQLite FTS5 queries in
``retrieval/laion_parser.py``).

Each caller keeps its own rule: how texts and patterns are normalised and padded (which is what
makes a match whole-word) and what it returns. Both rules come down to "the padded pattern is a
substring of the padded text"; :func:`matches_per_row` answers that for all patterns at once:
polars ``str.extract_many(overlapping=True)`` builds one automaton from the patterns and scans
each text once, finding every occurrence of every pattern, overlapping ones included
(" hot dog bun " yields both " hot dog " and " dog ").
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

__all__ = ["matches_per_row"]


def matches_per_row(texts: pl.LazyFrame, n_rows: int, table: pl.DataFrame, gather: Mapping[str, str]) -> pl.DataFrame:
    """For each row ``0 .. n_rows - 1``, the table values of the patterns found in its text.

    Args:
        texts: ``row`` (polars' index dtype, as ``with_row_index``) and ``text`` (str,
            normalised and padded by the caller); a null text, or a row missing here, matches
            nothing, and rows may come in any order.
        n_rows: how many rows the result has.
        table: ``pattern`` (str, non-empty; the same pattern may stand on several lines, which
            then all match) and the value columns named in ``gather``.
        gather: output column → column of ``table``.

    Returns:
        One row per row, in order: ``row``, then per ``gather`` entry the sorted, unique list
        of the column's values over the lines whose pattern occurs in the text (empty where
        none).
    """
    if "pattern" not in table.columns or table.schema["pattern"] != pl.String:
        raise ValueError(f"table: expected a 'pattern' column of dtype String, got schema {dict(table.schema)}")
    missing = set(gather.values()) - set(table.columns)
    if missing:
        raise ValueError(f"gather: expected columns of table, got {sorted(missing)}")
    if table["pattern"].null_count() or (table["pattern"].str.len_chars() == 0).any():
        raise ValueError("table: expected non-null, non-empty patterns (an empty one matches everywhere)")

    empty = {out: pl.lit([], dtype=pl.List(table.schema[col])) for out, col in gather.items()}
    rows = pl.LazyFrame({"row": pl.int_range(n_rows, dtype=pl.get_index_type(), eager=True)})
    if table.height == 0:  # extract_many refuses an empty pattern list
        return rows.with_columns(value.alias(out) for out, value in empty.items()).collect()

    patterns = table["pattern"].unique(maintain_order=True).to_list()
    found = (
        texts.select("row", pl.col("text").str.extract_many(patterns, overlapping=True).alias("pattern"))
        .explode("pattern")
        .drop_nulls("pattern")
        .join(table.lazy(), on="pattern", how="inner")
        .group_by("row")
        .agg(pl.col(col).unique().sort().alias(out) for out, col in gather.items())
    )
    return (
        rows.join(found, on="row", how="left", maintain_order="left")
        .with_columns(pl.col(out).fill_null(value) for out, value in empty.items())
        .collect()
    )
