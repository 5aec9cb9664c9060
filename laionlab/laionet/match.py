"""LAIONet lemma → caption matching (seed 001: Shirali & Hardt, "What Makes ImageNet Look
Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion,
``scripts/preprocess/preprocess_ilsvrc_classes.py``, ``scripts/createdataset/label_laion.py``).

The seed's rule, reproduced exactly:

* **Lemma dictionary** (:func:`unique_lemma_map`): a lemma is kept only if its exact,
  case-sensitive string occurs once across all synsets' lemma lists (a lemma listed twice,
  even within one synset, is dropped); synsets left with no unique lemma are dropped.
* **Matching** (:func:`match_lemmas`, :func:`match_lemmas_frame`): every ASCII punctuation
  character of the caption (``string.punctuation``) becomes a space, caption and lemma are
  padded with one space each, and the lemma matches when ``" " + lemma + " "`` is a
  substring of ``" " + caption + " "``. So matching is whole-word ("paid" does not match
  "ai"), "soccer-ball" matches "soccer ball", and matching is case-sensitive ("Goldfish" does
  not match "goldfish"). Consequences kept from the seed: a lemma that itself contains
  punctuation ("three-toed sloth", "carpenter's plane") can never match, because the caption
  no longer holds any punctuation (:func:`punctuated_lemmas` lists them); tabs and newlines
  are not turned into spaces, so "hot\\tdog" does not match "hot dog".

The seed looped over rows and lemmas in Python; here all lemmas are searched in one
Aho-Corasick pass per caption (:func:`laionlab.aho_corasick.matches_per_row`, polars
``str.extract_many`` with ``overlapping=True``), which finds every occurrence of every padded
lemma, overlapping ones included (" hot dog bun " yields both "hot dog" and "dog").
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from laionlab import aho_corasick, validate

__all__ = [
    "UniqueLemmas",
    "match_lemmas",
    "match_lemmas_frame",
    "punctuated_lemmas",
    "unique_lemma_map",
]

# The seed's caption clean-up: str.maketrans(string.punctuation, " " * 32).
PUNCTUATION = string.punctuation


@dataclass(frozen=True)
class UniqueLemmas:
    """The seed's lemma dictionary and what building it left out.

    ``lemma_to_wnid``: lemma → wnid, lemmas in synset order then WordNet order.
    ``dropped_wnids``: synsets with no unique lemma, in input order.
    ``shared_lemmas``: lemmas occurring more than once across all lemma lists, sorted.
    ``punctuated``: kept lemmas that contain ASCII punctuation and so can never match.
    """

    lemma_to_wnid: dict[str, str]
    dropped_wnids: list[str]
    shared_lemmas: list[str]
    punctuated: list[str]
    n_synsets: int

    @property
    def n_lemmas(self) -> int:
        return len(self.lemma_to_wnid)

    @property
    def n_wnids(self) -> int:
        return len(set(self.lemma_to_wnid.values()))


def punctuated_lemmas(lemmas) -> list[str]:
    """The lemmas (in the given order) that contain an ASCII punctuation character; the
    seed's rule can never match them against a caption."""
    return [lemma for lemma in lemmas if any(ch in PUNCTUATION for ch in lemma)]


def unique_lemma_map(synsets: pl.DataFrame) -> UniqueLemmas:
    """Lemma → wnid for lemmas whose exact string occurs once across all synsets.

    ``synsets``: a frame with ``wnid`` (str, unique) and ``lemmas`` (list of str), e.g.
    :func:`laionlab.io.imagenet.ilsvrc_synsets`. Uniqueness is case-sensitive and counts
    every listing, so a lemma repeated inside one synset's list is not unique either (as in
    the seed's ``lemma_is_unique``).
    """
    if not isinstance(synsets, pl.DataFrame):
        raise ValueError(f"synsets: expected a polars DataFrame, got {type(synsets).__name__}")
    missing = {"wnid", "lemmas"} - set(synsets.columns)
    if missing:
        raise ValueError(f"synsets: expected columns 'wnid' and 'lemmas', missing {sorted(missing)}")
    if synsets.schema["wnid"] != pl.String:
        raise ValueError(f"synsets: expected 'wnid' of dtype String, got {synsets.schema['wnid']}")
    if synsets.schema["lemmas"] != pl.List(pl.String):
        raise ValueError(f"synsets: expected 'lemmas' of dtype List(String), got {synsets.schema['lemmas']}")
    if synsets["wnid"].null_count() or synsets["wnid"].is_duplicated().any():
        raise ValueError("synsets: expected non-null, unique 'wnid' values")

    long = synsets.select("wnid", "lemmas").explode("lemmas")
    lists = synsets["lemmas"]
    if lists.null_count() or (lists.list.len() == 0).any() or long["lemmas"].null_count():
        raise ValueError("synsets: expected 'lemmas' to hold non-empty lists of non-null strings")
    _check_lemmas("synsets.lemmas", long["lemmas"])

    long = long.with_columns(pl.len().over("lemmas").alias("listings"))
    kept = long.filter(pl.col("listings") == 1)
    lemma_to_wnid = dict(zip(kept["lemmas"].to_list(), kept["wnid"].to_list()))
    dropped = synsets.filter(~pl.col("wnid").is_in(kept["wnid"].implode()))["wnid"].to_list()
    shared = long.filter(pl.col("listings") > 1)["lemmas"].unique().sort().to_list()
    return UniqueLemmas(
        lemma_to_wnid=lemma_to_wnid,
        dropped_wnids=dropped,
        shared_lemmas=shared,
        punctuated=punctuated_lemmas(lemma_to_wnid),
        n_synsets=synsets.height,
    )


def _check_lemmas(name: str, lemmas: pl.Series) -> None:
    # An empty or space-padded lemma would match plain whitespace in every caption.
    bad = lemmas.filter((lemmas.str.strip_chars() != lemmas) | (lemmas.str.len_chars() == 0))
    if bad.len():
        raise ValueError(f"{name}: expected non-empty lemmas without leading/trailing whitespace, got {bad[0]!r}")


def _padded(text: pl.Expr, case_sensitive: bool) -> pl.Expr:
    text = text.str.replace_many(list(PUNCTUATION), [" "] * len(PUNCTUATION))
    if not case_sensitive:
        text = text.str.replace_many(list(string.ascii_uppercase), list(string.ascii_lowercase))
    return pl.concat_str(pl.lit(" "), text, pl.lit(" "))


def match_lemmas_frame(
    captions: Sequence[str | None] | pl.Series,
    lemma_to_wnid: Mapping[str, str],
    *,
    case_sensitive: bool = True,
) -> pl.DataFrame:
    """Every lemma of ``lemma_to_wnid`` that occurs in each caption, by the seed's rule.

    Returns one row per caption, in order: ``row`` (UInt32, the caption's position),
    ``lemmas`` and ``wnids`` (list of str, sorted, unique; empty where nothing matched, and
    for null or empty captions). ``case_sensitive=False`` folds ASCII letters only (as polars'
    ``ascii_case_insensitive``); lemmas equal up to case then all match together.
    """
    series = validate.string_series("captions", captions)
    if not isinstance(lemma_to_wnid, Mapping):
        raise ValueError(f"lemma_to_wnid: expected a mapping lemma -> wnid, got {type(lemma_to_wnid).__name__}")
    if not isinstance(case_sensitive, bool):
        raise ValueError(f"case_sensitive: expected a bool, got {case_sensitive!r}")
    try:
        table = pl.DataFrame(
            {"lemma": list(lemma_to_wnid), "wnid": list(lemma_to_wnid.values())},
            schema={"lemma": pl.String, "wnid": pl.String},
            strict=True,
        )
    except (TypeError, pl.exceptions.PolarsError) as err:
        raise ValueError(f"lemma_to_wnid: expected str keys and values ({err})") from None
    if table["wnid"].null_count():
        raise ValueError("lemma_to_wnid: expected str wnids, got None")
    _check_lemmas("lemma_to_wnid", table["lemma"])

    folded = (
        pl.col("lemma")
        if case_sensitive
        else pl.col("lemma").str.replace_many(list(string.ascii_uppercase), list(string.ascii_lowercase))
    )
    table = table.with_columns(pl.concat_str(pl.lit(" "), folded, pl.lit(" ")).alias("pattern"))
    texts = pl.LazyFrame({"caption": series}).with_row_index("row")
    texts = texts.select("row", _padded(pl.col("caption"), case_sensitive).alias("text"))
    return aho_corasick.matches_per_row(texts, series.len(), table, {"lemmas": "lemma", "wnids": "wnid"})


def match_lemmas(
    captions: Sequence[str | None] | pl.Series,
    lemma_to_wnid: Mapping[str, str],
    *,
    case_sensitive: bool = True,
) -> list[list[str]]:
    """The wnids matched in each caption (sorted, unique; ``[]`` for none), by the seed's
    rule; see :func:`match_lemmas_frame`, which also gives the matched lemmas."""
    return match_lemmas_frame(captions, lemma_to_wnid, case_sensitive=case_sensitive)["wnids"].to_list()
