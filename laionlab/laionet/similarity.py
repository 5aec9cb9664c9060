"""Caption-to-synset text similarity of LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet
Look Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion).

Only captions that name exactly one synset are scored: the CLIP text cosine between the
caption and that synset's query text (default ``"<name> which is <definition>"``). The
embeddings come from the caller (any text encoder; L2-normalised rows, so the dot product is
the cosine).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

from laionlab.laionet.queries import QueryKind, synset_queries
from laionlab.laionet.select import single_synset

__all__ = [
    "caption_synset_similarity",
    "similarity_column",
    "single_synset_captions",
    "synset_queries_for",
]


def similarity_column(query: str) -> str:
    """The column holding the caption-to-synset similarity for query kind ``query``
    (``text_to_name_def_wnid_similarity`` for the seed's name_def)."""
    return f"text_to_{query}_wnid_similarity"


def single_synset_captions(matches: pl.DataFrame, captions: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The matched rows naming exactly one synset, with their caption, sorted by uid.

    Args:
        matches: ``uid``, ``wnids`` (list of str) and other columns kept (e.g. ``lemmas``), as
            ``lemma_matches`` writes them.
        captions: ``uid`` and ``TEXT`` of the part's rows (rows without a caption are dropped).

    Returns:
        ``(single, dropped)``: the single-synset rows with ``wnid`` and ``TEXT`` added, and the
        number of rows naming two or more synsets (:func:`~laionlab.laionet.single_synset`).
    """
    for name, frame, columns in (("matches", matches, ["uid", "wnids"]), ("captions", captions, ["uid", "TEXT"])):
        if not isinstance(frame, pl.DataFrame) or set(columns) - set(frame.columns):
            got = frame.columns if isinstance(frame, pl.DataFrame) else type(frame).__name__
            raise ValueError(f"{name}: expected a polars DataFrame with columns {columns}, got {got}")
    single, dropped = single_synset(matches)
    return single.join(captions.select("uid", "TEXT"), on="uid").sort("uid"), dropped


def synset_queries_for(synsets: pl.DataFrame, wnids: Iterable[str], kind: QueryKind) -> pl.DataFrame:
    """:func:`~laionlab.laionet.synset_queries` (``wnid``, ``name``, ``query``) of the synsets
    among ``wnids`` only, in the order of ``synsets``."""
    queries = synset_queries(synsets, kind=kind)
    return queries.filter(pl.col("wnid").is_in(pl.Series(list(wnids), dtype=pl.String).unique().implode()))


def caption_synset_similarity(
    single: pl.DataFrame,
    queries: pl.DataFrame,
    caption_emb: np.ndarray,
    query_emb: np.ndarray,
    kind: str,
    text_model: str,
) -> pl.DataFrame:
    """The cosine between each caption and its synset's query text.

    Args:
        single: ``uid``, ``wnid``, ``lemmas``, one row per caption
            (:func:`single_synset_captions`).
        queries: ``wnid`` and ``query`` of every synset in ``single`` (:func:`synset_queries_for`).
        caption_emb: ``(len(single), d)`` float, L2-normalised caption embeddings, row i of ``single``.
        query_emb: ``(len(queries), d)`` float, L2-normalised query embeddings, row i of ``queries``.
        kind: the query kind (names the columns: ``<kind>_wnid`` and :func:`similarity_column`).
        text_model: the id of the text model, stored in ``text_model``.

    Returns:
        ``uid``, ``wnid``, ``lemmas``, ``<kind>_wnid`` (the query text), the similarity
        (float32) and ``text_model``, in the order of ``single``.

    Raises:
        ValueError: embeddings whose row count does not match their frame, or a ``wnid`` of
            ``single`` that has no query.
    """
    caption_emb, query_emb = np.asarray(caption_emb), np.asarray(query_emb)
    if len(caption_emb) != single.height:
        raise ValueError(f"caption_emb: expected {single.height} rows (one per caption), got {len(caption_emb)}")
    if len(query_emb) != queries.height:
        raise ValueError(f"query_emb: expected {queries.height} rows (one per query), got {len(query_emb)}")
    row_of = {w: i for i, w in enumerate(queries["wnid"].to_list())}
    unknown = sorted(set(single["wnid"].to_list()) - set(row_of))
    if unknown:
        raise ValueError(f"queries: no query for wnids {unknown[:5]} of single")
    idx = np.array([row_of[w] for w in single["wnid"].to_list()], np.int64)
    sims = np.einsum("nd,nd->n", caption_emb, query_emb[idx]) if len(idx) else np.zeros(0, np.float32)
    return single.select("uid", "wnid", "lemmas").with_columns(
        pl.Series(f"{kind}_wnid", queries["query"].to_numpy()[idx] if len(idx) else [], dtype=pl.String),
        pl.Series(similarity_column(kind), sims.astype(np.float32)),
        pl.lit(text_model).alias("text_model"),
    )
