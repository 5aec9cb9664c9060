"""Pruning a training pool by similarity to an eval set (seed 004: Mayilvahanan et al., "Does
CLIP's Generalization Performance Mainly Stem from High Train-Test Similarity?", ICLR 2024;
public code brendel-group/clip-ood, ``src/sims_and_paths/get_paths_chunk.py`` and
``src/sampling/subsample_dataset.py``).

The paper's "similarity gap" rule: an eval sample (ImageNet-Sketch, -R, ... ) sets its own
threshold, its similarity to the nearest ImageNet-train image (:func:`nearest_similarity`,
the seed's ``per_query_imagenet_train``); every LAION row that is more similar than that to
some eval sample is removed (:func:`prune_mask`, the seed's
``sims_chunk > per_query_chunk``), so the pruned LAION is no closer to the eval set than
ImageNet-train is. The pruned pool is then subsampled to a fixed size (:func:`subsample_parts`) to
compare pruned and unpruned datasets at equal scale.

The candidates come from :func:`laionlab.neighbours.topk_similar` (per LAION chunk, then
:func:`laionlab.neighbours.merge_topk`); the rule only sees those ``k`` candidates per eval
sample, which is why :func:`prune_mask` warns when an eval sample's whole candidate list
lies above its threshold.
"""

from __future__ import annotations

import warnings

import numpy as np

from laionlab import validate
from laionlab.neighbours.search import (
    MAX_SIM_BLOCK_ROWS,
    MAX_SIM_QUERY_BLOCK_ROWS,
    _max_similarity,
)

__all__ = ["nearest_similarity", "prune_mask", "subsample_parts"]


def nearest_similarity(
    eval_emb,
    train_emb,
    *,
    block_rows: int = MAX_SIM_BLOCK_ROWS,
    query_block_rows: int = MAX_SIM_QUERY_BLOCK_ROWS,
    device="auto",
) -> np.ndarray:
    """Each eval sample's cosine similarity to its nearest train sample: the per-sample
    pruning threshold (ImageNet-train → ImageNet-X in the paper; the seed's
    ``per_query_imagenet_train``, the top-1 of ``compute_sims.py`` over ImageNet-train).

    Args:
        eval_emb: ``(q, d)`` float, L2-normalised eval embeddings.
        train_emb: ``(m, d)`` float, L2-normalised train embeddings; may be memory-mapped
            (read ``query_block_rows`` rows at a time).
        block_rows, query_block_rows, device: as in
            :func:`laionlab.neighbours.max_similarity` (``eval_emb`` is its corpus,
            ``train_emb`` its queries).

    Returns:
        ``(q,)`` float32, ``max_j <eval_emb[i], train_emb[j]>``.
    """
    return _max_similarity(
        eval_emb,
        train_emb,
        "eval_emb",
        "train_emb",
        block_rows=block_rows,
        query_block_rows=query_block_rows,
        device=device,
    )


def prune_mask(
    candidate_ids, candidate_scores, thresholds, n_pool: int, *, return_saturated: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Which pool rows survive pruning (``get_paths_chunk.py``).

    A pool row is removed when it is among some eval sample's candidates with similarity
    strictly greater than that sample's threshold (``candidate_scores[i, j] >
    thresholds[i]``); a row at exactly the threshold stays.

    Args:
        candidate_ids: ``(q, k)`` integer pool row numbers in ``[0, n_pool)``, e.g.
            ``TopK.ids`` of the eval set against the pool; ``-1`` (any negative id) marks an
            empty slot, e.g. a candidate that is not in the pool any more, and is ignored.
        candidate_scores: ``(q, k)`` their similarities (``TopK.scores``); finite except in
            empty slots, whose scores are ignored (``-inf`` or NaN allowed).
        thresholds: ``(q,)`` per-eval-sample thresholds (:func:`nearest_similarity`).
        n_pool: rows in the pool.
        return_saturated: also return which eval samples are saturated (below).

    Returns:
        ``(n_pool,)`` bool, True where the row is kept; with ``return_saturated``, also
        ``(q,)`` bool, True for an eval sample whose ``k`` slots all hold a candidate above
        its threshold while ``k < n_pool`` (all False when ``k >= n_pool``).

    Warns (``UserWarning``) when some eval sample is saturated: rows past its ``k``-th
    candidate may exceed its threshold too and are not removed, so ``k`` should be larger.
    """
    ids = np.asarray(candidate_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"candidate_ids: expected a 2-D integer array (q, k), got shape {ids.shape} dtype {ids.dtype}")
    scores = validate.matrix("candidate_scores", candidate_scores, min_rows=0, finite=False)
    if scores.shape != ids.shape:
        raise ValueError(f"candidate_scores: expected the shape of candidate_ids {ids.shape}, got {scores.shape}")
    thr = np.asarray(thresholds)
    if thr.shape != (ids.shape[0],) or not np.issubdtype(thr.dtype, np.number):
        raise ValueError(
            f"thresholds: expected a 1-D array of {ids.shape[0]} numbers (one per row of "
            f"candidate_ids), got shape {thr.shape} dtype {thr.dtype}"
        )
    if not np.isfinite(thr).all():
        raise ValueError("thresholds: contains NaN or inf")
    n_pool = validate.int_at_least("n_pool", n_pool, 1)
    if ids.size and ids.max() >= n_pool:
        raise ValueError(
            f"candidate_ids: expected pool row numbers in [0, {n_pool}) or -1 for an empty slot, got {ids.max()}"
        )
    filled = ids >= 0
    if not np.isfinite(scores[filled]).all():
        raise ValueError("candidate_scores: contains NaN or inf outside empty (-1) slots")

    above = filled & (scores > thr[:, None])
    keep = np.ones(n_pool, dtype=bool)
    keep[ids[above]] = False

    k = ids.shape[1]
    saturated = above.all(axis=1) if 0 < k < n_pool else np.zeros(ids.shape[0], dtype=bool)
    if saturated.any():
        warnings.warn(
            f"candidate_scores: {int(saturated.sum())} eval sample(s) have all {k} candidates "
            "above their threshold; more pool rows may exceed it (search with a larger k)",
            stacklevel=2,
        )
    return (keep, saturated) if return_saturated else keep


def subsample_parts(part_sizes, target_size: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """A uniform, seeded subsample of ``target_size`` rows from parts of ``part_sizes`` rows,
    drawn part by part (the pruned pool brought to a fixed size before training, as
    ``subsample_dataset.py`` does with its path list, without holding the pool at once).

    How many rows each part gives is drawn from the multivariate hypergeometric distribution,
    which is exactly how a uniform draw of ``target_size`` from all rows spreads over the
    parts; each part's rows are then drawn uniformly (seeded by ``(seed, part index)``). So
    every subset of ``target_size`` rows is equally likely, as with one draw from the whole.

    Args:
        part_sizes: ``(n_parts,)`` non-negative row counts.
        target_size: rows to draw without replacement, at most ``sum(part_sizes)``; ``None``
            keeps them all.
        seed: non-negative integer; the same sizes and seed give the same rows.

    Returns:
        per part, ascending int64 row numbers in ``[0, part_sizes[i])``.
    """
    sizes = np.asarray(part_sizes)
    if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 0).any():
        raise ValueError(f"part_sizes: expected a 1-D array of row counts >= 0, got {part_sizes!r}")
    sizes = sizes.astype(np.int64)
    if target_size is None:
        return [np.arange(n, dtype=np.int64) for n in sizes]
    target_size = validate.int_at_least("target_size", target_size, 0)
    seed = validate.int_at_least("seed", seed, 0)
    if target_size > sizes.sum():
        raise ValueError(f"target_size: expected at most the {int(sizes.sum())} kept rows, got {target_size}")
    quota = np.random.default_rng(seed).multivariate_hypergeometric(sizes, target_size) if len(sizes) else sizes
    return [
        np.sort(np.random.default_rng([seed, i]).choice(n, size=q, replace=False)).astype(np.int64)
        for i, (n, q) in enumerate(zip(sizes.tolist(), quota.tolist()))
    ]
