"""The ILSVRC synset tables LAIONet is built on (seed 001: Shirali & Hardt, "What Makes
ImageNet Look Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion), and how this
run's lemma dictionary differs from the seed's.

The seed's dictionary came from its ``ILSVRC2012_synsets.txt``, a 999-synset file without
n03126707 (crane, the machine), so there the lemma "crane" is unique and names the bird
n02012849; with all 1000 synsets "crane" is shared and dropped. :func:`seed_dictionary_comparison`
rebuilds the dictionary the seed's way to show what the full 1000 change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from laionlab.laionet.match import UniqueLemmas, unique_lemma_map
from laionlab.laionet.queries import synset_queries

__all__ = [
    "SEED_DICTIONARY",
    "SEED_MISSING_WNIDS",
    "DictionaryComparison",
    "SynsetTables",
    "seed_dictionary_comparison",
    "synset_tables",
]

# The seed's ILSVRC2012_synsets.txt has 999 synsets: it lacks n03126707 (crane, the machine).
SEED_MISSING_WNIDS: tuple[str, ...] = ("n03126707",)
# The seed's dictionary as published: synsets in its file, unique lemmas, wnids with a lemma.
SEED_DICTIONARY = {"synsets": 999, "lemmas": 1825, "wnids": 995}


@dataclass(frozen=True)
class SynsetTables:
    """:func:`synset_tables`' result.

    synsets: ``class_index``, ``wnid``, ``lemmas``, ``definition``, ``name`` (the seed's
        lower-cased name) and ``name_def`` (``"<name> which is <definition>"``), by class index.
    lemmas: the lemma dictionary as a table, ``lemma`` → ``wnid``, in dictionary order.
    dictionary: the :class:`~laionlab.laionet.match.UniqueLemmas` behind ``lemmas``.
    """

    synsets: pl.DataFrame
    lemmas: pl.DataFrame
    dictionary: UniqueLemmas


def synset_tables(synsets: pl.DataFrame) -> SynsetTables:
    """The synset table with each synset's name_def query, and the seed's lemma dictionary.

    Args:
        synsets: ``class_index``, ``wnid`` (unique), ``lemmas`` (non-empty lists of str) and
            ``definition`` (non-empty str), e.g. :func:`laionlab.io.imagenet.ilsvrc_synsets`.

    Raises:
        ValueError: a missing column, a null/duplicate wnid, an empty lemma list or
            definition (from :func:`synset_queries` / :func:`unique_lemma_map`).
    """
    if not isinstance(synsets, pl.DataFrame):
        raise ValueError(f"synsets: expected a polars DataFrame, got {type(synsets).__name__}")
    if "class_index" not in synsets.columns:
        raise ValueError(f"synsets: expected a 'class_index' column, has {synsets.columns}")
    queries = synset_queries(synsets, kind="name_def")
    dictionary = unique_lemma_map(synsets)
    table = (
        synsets.select("class_index", "wnid", "lemmas", "definition")
        .join(queries.rename({"query": "name_def"}), on="wnid")
        .sort("class_index")
    )
    lemmas = pl.DataFrame(
        {"lemma": list(dictionary.lemma_to_wnid), "wnid": list(dictionary.lemma_to_wnid.values())},
        schema={"lemma": pl.String, "wnid": pl.String},
    )
    return SynsetTables(table, lemmas, dictionary)


@dataclass(frozen=True)
class DictionaryComparison:
    """:func:`seed_dictionary_comparison`'s result.

    counts: one row per dictionary (this run; rebuilt without ``missing_wnids``; the seed as
        published) with its ``synsets``, unique ``lemmas`` and ``wnids`` with a lemma.
    only_seed_like: ``(lemma, wnid)`` pairs only in the dictionary rebuilt the seed's way, sorted.
    only_this: ``(lemma, wnid)`` pairs only in this run's dictionary, sorted.
    """

    counts: pl.DataFrame
    only_seed_like: list[tuple[str, str]]
    only_this: list[tuple[str, str]]


def seed_dictionary_comparison(
    synsets: pl.DataFrame,
    dictionary: UniqueLemmas | None = None,
    missing_wnids: Sequence[str] = SEED_MISSING_WNIDS,
) -> DictionaryComparison:
    """This run's lemma dictionary against the one the seed's synset file gives.

    Args:
        synsets: the synsets the dictionary is built from (``wnid``, ``lemmas``).
        dictionary: ``unique_lemma_map(synsets)`` when already computed.
        missing_wnids: the synsets the seed's file lacks (default: n03126707).

    Raises:
        ValueError: ``missing_wnids`` not a list of strings, or bad ``synsets``.
    """
    if isinstance(missing_wnids, str) or not all(isinstance(w, str) for w in missing_wnids):
        raise ValueError(f"missing_wnids: expected a list of wnid strings, got {missing_wnids!r}")
    this = dictionary if dictionary is not None else unique_lemma_map(synsets)
    seed_like = unique_lemma_map(synsets.filter(~pl.col("wnid").is_in(list(missing_wnids))))
    this_pairs, seed_pairs = set(this.lemma_to_wnid.items()), set(seed_like.lemma_to_wnid.items())
    without = ", ".join(missing_wnids)
    counts = pl.DataFrame(
        {
            "dictionary": ["this run", f"without {without} (the seed's 999-synset file)", "seed 001 as published"],
            "synsets": [this.n_synsets, seed_like.n_synsets, SEED_DICTIONARY["synsets"]],
            "lemmas": [this.n_lemmas, seed_like.n_lemmas, SEED_DICTIONARY["lemmas"]],
            "wnids": [this.n_wnids, seed_like.n_wnids, SEED_DICTIONARY["wnids"]],
        }
    )
    return DictionaryComparison(counts, sorted(seed_pairs - this_pairs), sorted(this_pairs - seed_pairs))
