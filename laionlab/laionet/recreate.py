"""ImageNet recreated from LAION by nearest captions (seed 001: Shirali & Hardt, "What Makes
ImageNet Look Unlike LAION", TMLR 2025, Section 4.3; public code alishiraliGit/eval-on-laion,
``scripts/createdataset/find_most_similar_texts_to_texts.py``).

For every caption of ImageNet-Captions (an ImageNet image's Flickr caption and its wnid), the
seed looks up the most similar LAION caption in its faiss index (k = 1) and labels that LAION
row with the ImageNet image's wnid. :func:`nearest_caption_rows` turns the index's answer into
that table; a query with no neighbour (faiss returns id -1, e.g. when the probed IVF lists are
empty) is dropped and counted. Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["nearest_caption_rows", "pairs_with_vectors", "recreated_pairs"]


def nearest_caption_rows(
    caption_uids: Sequence[str],
    captions: Sequence[str],
    wnids: Sequence[str],
    scores: np.ndarray,
    ids: np.ndarray,
    id_map: pl.DataFrame,
) -> tuple[pl.DataFrame, int]:
    """The nearest LAION caption of each query caption.

    Args:
        caption_uids, captions, wnids: the ``n`` query captions, their uids and labels.
        scores, ids: ``(n, k >= 1)`` from :meth:`laionlab.neighbours.CaptionIndex.search`; the
            first column (the nearest) is used.
        id_map: the index's ids → LAION uids (columns ``id``, ``uid``).

    Returns:
        ``(found, no_neighbour)``: one row per query with a neighbour, in query order
        (``caption_uid``, ``caption``, ``wnid``, ``id``, ``caption_similarity``, ``uid``), and
        the number of queries without one (id -1).

    Raises:
        ValueError: mismatched lengths, or an id the map does not know (a stale id map).
    """
    scores, ids = np.asarray(scores), np.asarray(ids)
    n = len(caption_uids)
    if not (len(captions) == len(wnids) == n) or scores.shape[:1] != (n,) or ids.shape[:1] != (n,):
        raise ValueError(
            f"caption_uids, captions, wnids, scores, ids: expected {n} rows each, got "
            f"{len(captions)}, {len(wnids)}, {scores.shape}, {ids.shape}"
        )
    missing = {"id", "uid"} - set(id_map.columns)
    if missing:
        raise ValueError(f"id_map: missing columns {sorted(missing)}")
    frame = pl.DataFrame(
        {
            "caption_uid": pl.Series(list(caption_uids), dtype=pl.String),
            "caption": pl.Series(list(captions), dtype=pl.String),
            "wnid": pl.Series(list(wnids), dtype=pl.String),
            "id": ids.reshape(n, -1)[:, 0].astype(np.int64),
            "caption_similarity": scores.reshape(n, -1)[:, 0].astype(np.float32),
        }
    )
    found = frame.filter(pl.col("id") >= 0)
    joined = found.join(id_map.select(pl.col("id").cast(pl.Int64), "uid"), on="id", how="left", maintain_order="left")
    unknown = joined.filter(pl.col("uid").is_null())["id"]
    if unknown.len():
        raise ValueError(
            f"id_map: {unknown.len()} ids found in the index have no uid (e.g. {unknown.head(3).to_list()}): "
            "rebuild the index"
        )
    return joined, frame.height - found.height


def recreated_pairs(found: pl.DataFrame) -> pl.DataFrame:
    """The recreated dataset: distinct (LAION ``uid``, ``wnid``) pairs, in order of first
    appearance (a LAION row nearest to several captions of one class counts once)."""
    return found.select("uid", "wnid").unique(maintain_order=True)


def pairs_with_vectors(pairs: pl.DataFrame, uids: Sequence[str], emb: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
    """The rows of ``pairs`` (a ``uid`` column, e.g. :func:`recreated_pairs`) whose uid has a
    vector, and their vectors row for row.

    Args:
        pairs: a frame with ``uid``; a uid may appear in several rows.
        uids, emb: the uids that have a vector and their ``(len(uids), d)`` vectors, row i
            of ``emb`` being ``uids[i]``'s (in any order).

    Returns:
        ``(kept, vectors)``: the rows of ``pairs`` with a vector, in their order, and a
        ``(kept.height, d)`` array (``(0, 1)`` float32 when no row is kept).
    """
    row_of = {u: i for i, u in enumerate(uids)}
    kept = pairs.filter(pl.col("uid").is_in(uids))
    vectors = emb[[row_of[u] for u in kept["uid"]]] if kept.height else np.zeros((0, 1), np.float32)
    return kept, vectors
