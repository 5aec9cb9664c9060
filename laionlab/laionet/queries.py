"""Synset query texts for LAIONet's text filter (seed 001: Shirali & Hardt, "What Makes
ImageNet Look Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion,
``core/queries.py`` and ``utils/wordnet_utils.py``).

LAIONet keeps a caption for a synset when the CLIP text similarity between the caption and
the synset's *query* exceeds 0.82. The seed's default query is ``QueryType.NAME_DEF`` with
``query_key='wnid'``::

    name + " which is " + definition        # "cougar which is large American feline resembling a lion"

The paper writes the query as "[name]: [definition]", but every version of the seed's code
uses the connector ``" which is "``; the code is what we reproduce.

**Synset name.** The seed takes NLTK's ``synset.name()`` (e.g. ``"kit_fox.n.01"``), cuts it at
``".n."`` and turns ``_`` into spaces. NLTK builds that name in
``WordNetCorpusReader._synset_from_pos_and_line`` (nltk/nltk,
``nltk/corpus/reader/wordnet.py``)::

    # the canonical name is based on the first lemma
    lemma_name = synset._lemmas[0]._name.lower()
    ...
    synset._name = "%s.%s.%02i" % (lemma_name, synset._pos, sense_index + 1)

so the name is the synset's **first lemma, lower-cased** ("Chihuahua" → "chihuahua",
"Old English sheepdog" → "old english sheepdog"). :func:`synset_name` does exactly that to
the first lemma of the ILSVRC lemma list (which lists WordNet 3.0's lemmas in WordNet order,
original case), with no NLTK or WordNet download. The seed's cut at ``".n."`` changes none of
the 1000 ILSVRC names (none contains ``".n."``), so it is not repeated. The seed's special case
for Siberian husky (its synset file lists n02112837; ``get_synset`` substitutes
``wn.synsets('siberian_husky')[0]``, i.e. n02110185) is moot here: timm's list, read by
:func:`laionlab.io.imagenet.ilsvrc_synsets`, already has n02110185.

The lemma lists keep their original case (the ``"lemmas"`` query joins NLTK's
``lemma.name()``, which is not lower-cased). Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import polars as pl

__all__ = [
    "DEFAULT_QUERY_KIND",
    "QUERY_KINDS",
    "QueryKind",
    "synset_name",
    "synset_queries",
    "synset_query",
]

# The seed's QueryType values, spelled as in core/queries.py.
QueryKind = Literal[
    "name",
    "name_def",
    "lemmas",
    "a_photo_of_name",
    "a_photo_of_name_def",
    "a_clear_photo_of_name_def",
    "a_photo_of_lemmas",
]
QUERY_KINDS: tuple[str, ...] = get_args(QueryKind)
# LAIONet's query (configs / notebooks: q_type = QueryType.NAME_DEF, q_key = 'wnid').
DEFAULT_QUERY_KIND: QueryKind = "name_def"
# The seed's connector between name and definition (core/queries.query_name_def).
NAME_DEF_CONNECTOR = " which is "
# How many offending wnids an error message lists.
SHOW_WNIDS = 5

_DEF_KINDS = frozenset({"name_def", "a_photo_of_name_def", "a_clear_photo_of_name_def"})
_PREFIX = {
    "name": "",
    "name_def": "",
    "lemmas": "",
    "a_photo_of_name": "a photo of ",
    "a_photo_of_name_def": "a photo of ",
    "a_clear_photo_of_name_def": "a clear photo of ",
    "a_photo_of_lemmas": "a photo of ",
}


def _check_kind(kind) -> str:
    if kind not in QUERY_KINDS:
        raise ValueError(f"kind: expected one of {list(QUERY_KINDS)}, got {kind!r}")
    return kind


def _for(wnid: str | None) -> str:
    return f" for {wnid}" if wnid is not None else ""


def _check_lemma_list(lemmas, wnid: str | None) -> list[str]:
    if isinstance(lemmas, str) or not isinstance(lemmas, Sequence):
        raise ValueError(f"lemmas{_for(wnid)}: expected a list of str, got {type(lemmas).__name__}")
    if len(lemmas) == 0:
        raise ValueError(f"lemmas{_for(wnid)}: expected at least one lemma, got an empty list")
    for i, lemma in enumerate(lemmas):
        if not isinstance(lemma, str) or not lemma.strip():
            raise ValueError(f"lemmas[{i}]{_for(wnid)}: expected a non-empty str, got {lemma!r}")
    return list(lemmas)


def synset_name(lemmas: Sequence[str]) -> str:
    """The seed's synset name: NLTK's ``synset.name()`` without ``.n.NN``, ``_`` → space.

    NLTK names a synset by its first lemma, lower-cased (see the module docstring), so this is
    ``lemmas[0].lower()`` with underscores turned into spaces (WordNet files spell
    "kit_fox"; the ILSVRC lists already spell "kit fox").

    Args:
        lemmas: the synset's lemmas in WordNet order, e.g. a ``lemmas`` entry of
            :func:`laionlab.io.imagenet.ilsvrc_synsets`.

    Raises:
        ValueError: ``lemmas`` is not a non-empty list of non-empty str.
    """
    first = _check_lemma_list(lemmas, None)[0]
    return first.lower().replace("_", " ")


def synset_query(
    name: str,
    lemmas: Sequence[str],
    definition: str | None,
    kind: QueryKind = DEFAULT_QUERY_KIND,
    *,
    wnid: str | None = None,
) -> str:
    """One synset's query text, as the seed's ``core/queries.py`` builds it.

    ``kind`` (the seed's ``QueryType``), with ``lemmas_or = " or ".join(lemmas)`` (``_`` →
    space, original case):

    * ``"name"``: ``name``
    * ``"name_def"`` (default): ``name + " which is " + definition``
    * ``"lemmas"``: ``lemmas_or``
    * ``"a_photo_of_name"``: ``"a photo of " + name``
    * ``"a_photo_of_name_def"``: ``"a photo of " + name + " which is " + definition``
    * ``"a_clear_photo_of_name_def"``: ``"a clear photo of " + name + " which is " + definition``
    * ``"a_photo_of_lemmas"``: ``"a photo of " + lemmas_or``

    Args:
        name: the synset name (:func:`synset_name`); the seed's ``query_key='lemma'`` passes a
            matched lemma here instead.
        lemmas: the synset's lemmas (only the ``*lemmas`` kinds use them, but they are
            checked for every kind).
        definition: the WordNet gloss; required, non-empty, for the ``*name_def`` kinds.
        kind: one of :data:`QUERY_KINDS`.
        wnid: only used to name the synset in error messages.

    Raises:
        ValueError: unknown ``kind`` (the message lists the kinds), empty ``name``, bad
            ``lemmas``, or a missing/empty ``definition`` for a ``*name_def`` kind.
    """
    kind = _check_kind(kind)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name{_for(wnid)}: expected a non-empty str, got {name!r}")
    lemmas = _check_lemma_list(lemmas, wnid)
    if kind in _DEF_KINDS:
        if not isinstance(definition, str) or not definition.strip():
            raise ValueError(f"definition{_for(wnid)}: kind {kind!r} needs a non-empty definition, got {definition!r}")
        body = name + NAME_DEF_CONNECTOR + definition
    elif kind in ("lemmas", "a_photo_of_lemmas"):
        body = " or ".join(lemma.replace("_", " ") for lemma in lemmas)
    else:
        body = name
    return _PREFIX[kind] + body


def synset_queries(synsets: pl.DataFrame, kind: QueryKind = DEFAULT_QUERY_KIND) -> pl.DataFrame:
    """The query text of every synset in ``synsets`` (:func:`synset_query`, vectorised).

    Args:
        synsets: a frame with ``wnid`` (String), ``lemmas`` (List(String), non-empty) and,
            for the ``*name_def`` kinds, ``definition`` (String, non-empty), e.g.
            :func:`laionlab.io.imagenet.ilsvrc_synsets` (its ``name`` column, the first lemma
            in original case, is not used: the seed's name is lower-cased).
        kind: one of :data:`QUERY_KINDS`.

    Returns:
        ``wnid``, ``name`` (:func:`synset_name`), ``query``, one row per input row, in order.

    Raises:
        ValueError: not a DataFrame, a missing or mistyped column, null/duplicate wnids,
            null/empty lemma lists or lemmas, or null/empty definitions for a ``*name_def``
            kind; the message names the column and the first offending wnids.
    """
    kind = _check_kind(kind)
    if not isinstance(synsets, pl.DataFrame):
        raise ValueError(f"synsets: expected a polars DataFrame, got {type(synsets).__name__}")
    needs_def = kind in _DEF_KINDS
    required = {"wnid": pl.String, "lemmas": pl.List(pl.String)}
    if needs_def:
        required["definition"] = pl.String
    missing = [c for c in required if c not in synsets.columns]
    if missing:
        raise ValueError(f"synsets: kind {kind!r} needs columns {list(required)}, missing {missing}")
    for col, dtype in required.items():
        if synsets.schema[col] != dtype:
            raise ValueError(f"synsets.{col}: expected dtype {dtype}, got {synsets.schema[col]}")
    wnids = synsets["wnid"]
    if wnids.null_count():
        raise ValueError(f"synsets.wnid: expected no nulls, got {wnids.null_count()}")
    if wnids.is_duplicated().any():
        dup = wnids.filter(wnids.is_duplicated()).unique(maintain_order=True).to_list()
        raise ValueError(f"synsets.wnid: expected unique wnids, duplicated {dup[:SHOW_WNIDS]}")

    lemmas = pl.col("lemmas")
    bad_lemmas = (
        lemmas.is_null()
        | (lemmas.list.len() == 0)
        | lemmas.list.eval(pl.element().is_null() | (pl.element().str.strip_chars() == "")).list.any()
    )
    _fail_rows(synsets, bad_lemmas, "synsets.lemmas", "non-empty lists of non-empty lemmas")
    if needs_def:
        bad_def = pl.col("definition").is_null() | (pl.col("definition").str.strip_chars() == "")
        _fail_rows(synsets, bad_def, "synsets.definition", f"a non-empty definition for kind {kind!r}")

    name = lemmas.list.first().str.to_lowercase().str.replace_all("_", " ", literal=True)
    lemmas_or = lemmas.list.eval(pl.element().str.replace_all("_", " ", literal=True)).list.join(" or ")
    if needs_def:
        body = pl.concat_str(name, pl.lit(NAME_DEF_CONNECTOR), pl.col("definition"))
    elif kind in ("lemmas", "a_photo_of_lemmas"):
        body = lemmas_or
    else:
        body = name
    return synsets.select(
        "wnid",
        name.alias("name"),
        pl.concat_str(pl.lit(_PREFIX[kind]), body).alias("query"),
    )


def _fail_rows(frame: pl.DataFrame, bad: pl.Expr, column: str, expected: str) -> None:
    wnids = frame.filter(bad)["wnid"].to_list()
    if wnids:
        raise ValueError(f"{column}: expected {expected}; {len(wnids)} synset(s) fail, e.g. {wnids[:SHOW_WNIDS]}")
