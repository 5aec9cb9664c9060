"""Semantic deduplication inside k-means clusters, for seed 004 (Mayilvahanan et al., "Does
CLIP's Generalization Performance Mainly Stem from High Train-Test Similarity?", ICLR 2024,
brendel-group/clip-ood ``src/deduplication/``), with SemDeDup's rule (Abbas et al., 2023) for
comparison.

What the seed's code does, step by step:

* ``assign_clusters.py``: 50,000-way k-means of the LAION-400M CLIP image embeddings
  (here :func:`laionlab.cluster.kmeans` with ``redraw_duplicate_cosine=0.9``).
* ``save_cluster_embeddings_and_sims.py`` / ``utils.compute_sims``: for each cluster,
  ``sims = tril(E @ E.T, diagonal=-1)``, i.e. row ``i`` sees its cosine similarity to every
  **earlier** row ``j < i`` of the cluster and zeros elsewhere. A cluster too big for the GPU
  is cut into 40,000-row minibatches, each compared with the **whole** cluster and masked
  with ``tril(diagonal=start-1)``, so the rule does not change with the cut.
* ``deduplicate.py`` / ``utils.compute_dedup_paths``: ``keep = max(sims, axis=1) <= 1 - eps``
  with ``eps = 0.124`` (similarity 0.876).

So a row is dropped when its most similar earlier row of the cluster is more similar than
``1 - eps``, **whether that earlier row was kept or dropped**: there is no sequential
removal, and a chain ``a ~ b ~ c`` drops both ``b`` and ``c`` even when ``a`` and ``c`` are
far apart. The order is the order the rows were stored in the cluster file (shard files in
``glob`` order, then ascending image-path id inside a shard); here it is the row order of
``emb``. The seed's maxima are clipped at 0 by the zero-filled triangle (the first row of a
cluster gets 0); this changes no decision for ``eps`` in (0, 1), and
:func:`max_earlier_similarity` reports the true maximum (``-inf`` for a first row).

Memory is bounded by a block, not by the cluster or the table: rows of a cluster are read
``block_rows`` at a time, each block is compared with the full blocks before it (one
``(block_rows, block_rows)`` float32 tile at a time) and with itself in strips of
``DIAG_ROWS`` rows (strict lower triangle only).

SemDeDup's keep order (``keep_order_keys``; ``keys`` of :func:`dedup_keep`,
:func:`max_earlier_similarity`, :func:`dedup_shards`): its released code applies the seed's
rule to each cluster sorted by distance to the centroid (``hard``: farthest first, so the
farthest row of a duplicate chain is kept; ``easy``: nearest first; ``random``: shuffled).

The per-cluster loops log progress lines (rows done, rate, ETA) every ``log_every_s``
seconds through the ``laionlab`` logger; a call shorter than that logs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.progress import Progress

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_EPS",
    "DEFAULT_GROUP_ROWS",
    "ClusterShard",
    "RemovalSummary",
    "cluster_offsets",
    "dedup_keep",
    "dedup_shards",
    "keep_from_max_sim",
    "keep_order_keys",
    "max_earlier_similarity",
    "removal_curve",
    "removal_summary",
]

Rule = Literal["seed", "semdedup"]
# Which row of a duplicate group survives: the stable row order (seed 004) or SemDeDup's
# order by distance to the cluster centroid (``keep_order_keys``).
Keep = Literal["earlier_row", "hard", "easy", "random"]
KEEP_ORDERS = ("earlier_row", "hard", "easy", "random")

log = logging.getLogger(__name__)

# Seed 004's threshold (deduplicate.py ``--threshold 0.124``): similarity above 0.876 is a
# duplicate. SemDeDup's LAION runs used eps in roughly 0.0005-0.3.
DEFAULT_EPS = 0.124
# Seed 004's minibatch for clusters too big for one Gram matrix (compute_sims).
DEFAULT_BLOCK_ROWS = 40_000
# Rows per strip of a block's own (diagonal) tile: only its lower part is computed, roughly
# halving the work there, and a strip is small next to a full tile.
DIAG_ROWS = 2_048
# Rows of consecutive clusters gathered from the shards at once by dedup_shards (2 GiB of
# float32 at d = 512); a single cluster bigger than this is still read whole.
DEFAULT_GROUP_ROWS = 1_000_000
# Tolerance on row norms: float16 CLIP embeddings are unit norm only to ~1e-3.
NORM_TOL = 1e-2
# SemDeDup's edges (pairs above threshold) are listed from a tile this many row strips at a
# time, so the index arrays of a strip stay no larger than the float32 tile itself.
EDGE_STRIPS = 8


def dedup_keep(
    emb: np.ndarray,
    labels: np.ndarray,
    eps: float = DEFAULT_EPS,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    rule: Rule = "seed",
    log_every_s: float = 30.0,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """Which rows survive semantic deduplication inside their cluster.

    Two rules, both on cosine similarity ``s`` inside one cluster, rows in the order given
    (the stable order of ``emb``; rows of other clusters may be interleaved), threshold
    ``s > 1 - eps`` (1 - eps rounded to float32):

    ``rule="seed"`` (seed 004, ``compute_dedup_paths``): drop row ``i`` when some **earlier**
        row ``j < i`` of its cluster has ``s(i, j) > 1 - eps``, counting earlier rows that
        were themselves dropped. Exactly ``keep_from_max_sim(max_earlier_similarity(...))``.
        SemDeDup's released code (``semdedup.py``: ``triu(sims, 1).max(dim=0) > 1 - eps``)
        applies this same rule, after sorting each cluster by decreasing distance to its
        centroid (``keep_hard``), so the row farthest from the centroid is the one kept.
    ``rule="semdedup"`` (SemDeDup as the paper states it): rows joined by ``s > 1 - eps``,
        directly or through other rows of the cluster, form a group, and one row per group
        is kept: here the earliest. Sort rows by decreasing distance to the centroid first
        to keep the row SemDeDup's default keeps. Every row the seed rule drops is dropped
        here too (it is not the earliest of its group); here more can go, e.g. for
        ``a ~ c``, ``b ~ c``, ``a !~ b`` in that order the seed keeps ``a, b`` and this rule
        keeps only ``a``.

    Args:
        emb: ``(n, d)`` float embeddings, L2-normalised rows (any float dtype; memory-mapped
            arrays are read block by block and cast to float32).
        labels: ``(n,)`` integer cluster id of each row (e.g. ``KMeansResult.labels``).
        eps: in (0, 1); seed 004 uses 0.124 (similarity 0.876).
        block_rows: rows of a cluster compared at once; peak memory is one
            ``(block_rows, block_rows)`` float32 tile (6.4 GB at the seed's 40,000) plus two
            ``(block_rows, d)`` blocks, and for ``"semdedup"`` about as much again for the
            pairs above threshold. Never the whole cluster or table.
        rule: ``"seed"`` or ``"semdedup"``, see above.
        log_every_s: seconds between progress lines (rows of multi-row clusters done).
        keys: ``(n,)`` float, the order inside each cluster: rows by ascending key, ties in
            row order (:func:`keep_order_keys`: SemDeDup's hard/easy/random); ``None``: the
            row order. "Earlier" in both rules means earlier in this order; with
            ``rule="seed"`` and ``keys`` from ``keep_order_keys(.., "hard")`` this is
            SemDeDup's released loop (``semdedup.py``) exactly.

    Returns:
        ``(n,)`` bool, True for rows kept. The first row of every cluster (in the order) is kept.

    Raises:
        ValueError: naming the argument: ``eps`` outside (0, 1), ``emb`` not 2-D, with NaN/inf
            or rows not of unit norm, ``labels`` not ``(n,)`` integers, bad ``block_rows`` or
            ``rule``.
    """
    eps = _check_eps("eps", eps)
    if rule not in ("seed", "semdedup"):
        raise ValueError(f"rule: expected 'seed' or 'semdedup', got {rule!r}")
    if rule == "seed":
        return keep_from_max_sim(max_earlier_similarity(emb, labels, block_rows, log_every_s, keys=keys), eps)
    emb, labels = _check_inputs(emb, labels)
    block_rows = validate.int_at_least("block_rows", block_rows, 1)
    return _semdedup_keep(emb, labels, _threshold(eps), block_rows, log_every_s, _check_keys(keys, len(labels)))


def keep_order_keys(centroid_sim: np.ndarray, keep: Keep, seed: int = 0, stream: int = 0) -> np.ndarray | None:
    """Sort keys that put the rows of a cluster in SemDeDup's keep order (Abbas et al. 2023,
    facebookresearch/SemDeDup): rows are visited by ascending key, and a row is dropped when a
    row **before it in that order** is a duplicate (:func:`dedup_keep` with ``keys``), so the
    first row of a duplicate group in this order is the one kept.

    ``"earlier_row"``: ``None``, the stable row order (seed 004, unchanged).
    ``"hard"`` (SemDeDup's default, ``keep_hard=True`` in ``sort_clusters.py``): rows by
        decreasing cosine distance ``1 - centroid_sim`` to their centroid, so the row farthest
        from the centroid survives: key ``centroid_sim``.
    ``"easy"`` (``which_to_keep="easy"``, the hard list reversed): nearest first, key
        ``-centroid_sim``.
    ``"random"`` (``which_to_keep="random"``, a shuffle of the cluster): independent uniform
        keys from ``np.random.default_rng([seed, stream])``, so the order of the rows of a
        cluster is a uniform random permutation; ``stream`` (e.g. a hash of the LAION part)
        makes each part's keys independent of which other parts exist.

    Ties keep the stable order in every case (numpy's lexsort is stable; SemDeDup's
    ``sorted`` is too, but its ``easy`` reverses the hard list, so its exact ties run
    backwards: a difference only for rows at exactly the same distance).

    Args:
        centroid_sim: ``(n,)`` cosine of each row to its cluster's centroid (unit centroids:
            ``dedup_assignments.centroid_sim``).
        keep: ``"earlier_row"``, ``"hard"``, ``"easy"`` or ``"random"``.
        seed, stream: the random order's generator (``"random"`` only).

    Returns:
        ``(n,)`` float64 keys (ascending = earlier), or ``None`` for ``"earlier_row"``.
    """
    if keep not in KEEP_ORDERS:
        raise ValueError(f"keep: expected one of {', '.join(KEEP_ORDERS)}, got {keep!r}")
    sim = np.asarray(centroid_sim)
    if sim.ndim != 1 or not np.issubdtype(sim.dtype, np.floating) or np.isnan(sim).any():
        raise ValueError(f"centroid_sim: expected a 1-D float array without NaN, got {sim.shape} {sim.dtype}")
    if keep == "earlier_row":
        return None
    if keep == "hard":
        return sim.astype(np.float64)
    if keep == "easy":
        return -sim.astype(np.float64)
    seed = validate.int_at_least("seed", seed, 0)
    return np.random.default_rng([seed, validate.int_at_least("stream", stream, 0)]).random(sim.size)


def max_earlier_similarity(
    emb: np.ndarray,
    labels: np.ndarray,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    log_every_s: float = 30.0,
    rows_from: int = 0,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's largest cosine similarity to an earlier row of the same cluster.

    The quantity seed 004 thresholds (``np.amax`` of the strict lower triangle of the
    cluster's Gram matrix); one pass gives the keep mask for every ``eps``
    (:func:`keep_from_max_sim`) and the removal curve (:func:`removal_curve`).

    Args:
        emb: ``(n, d)`` float embeddings, L2-normalised rows.
        labels: ``(n,)`` integer cluster ids.
        block_rows: rows of a cluster compared at once (see :func:`dedup_keep`).
        log_every_s: seconds between progress lines (rows of multi-row clusters done).
        rows_from: compute only rows ``rows_from..n-1`` (each still against every earlier
            row of its cluster, before ``rows_from`` or not); rows before it are left
            ``-inf``. Appending rows to a table costs only the new rows' comparisons.
        keys: ``(n,)`` float, "earlier" means a smaller key (ties: row order); see
            :func:`dedup_keep`. Not with ``rows_from``.

    Returns:
        ``(n,)`` float32; ``-inf`` for the first row of each cluster.
    """
    emb, labels = _check_inputs(emb, labels)
    block_rows = validate.int_at_least("block_rows", block_rows, 1)
    rows_from = validate.int_at_least("rows_from", rows_from, 0)
    keys = _check_keys(keys, len(labels))
    if keys is not None and rows_from:
        raise ValueError("rows_from: must be 0 when keys are given (the rows to compute are a suffix of the row order)")
    out = np.full(emb.shape[0], -np.inf, dtype=np.float32)
    tri = _upper_mask(block_rows)
    progress = _cluster_progress("max earlier similarity", labels, log_every_s)
    for idx in _clusters(labels, keys):
        # a cluster's rows ascend, so the rows to compute are a suffix of idx; the blocks
        # start there and _earlier_tiles compares each with every earlier position
        for a in range(int(np.searchsorted(idx, rows_from)) if rows_from else 0, idx.size, block_rows):
            R = _gather(emb, idx[a : a + block_rows])
            best = np.full(R.shape[0], -np.inf, dtype=np.float32)
            for r0, _, S in _earlier_tiles(emb, idx, a, R, block_rows, tri):
                part = best[r0 : r0 + S.shape[0]]
                np.maximum(part, S.max(axis=1), out=part)
            out[idx[a : a + R.shape[0]]] = best
        progress.update(idx.size)
    progress.close()
    return out


def duplicate_partner(
    query: np.ndarray, candidates: np.ndarray, max_sim: float, kept: np.ndarray | None = None, atol: float = 1e-4
) -> tuple[int, float]:
    """The earlier row a dropped row duplicates, found again for one row (a gallery's few):
    the candidate whose cosine equals the row's recorded :func:`max_earlier_similarity`.

    ``laion_dedup`` stores only the maximum, not its argmax (keeping the argmax would cost
    every row of the pass); recomputing it for the rows shown costs one ``(m, d) @ (d,)``
    product each. Candidates are the other rows of the row's cluster in the row's part and
    the earlier parts, in (part, row) order: the maximum is reached by one of its earlier rows,
    and a later row reaching the same value (an exact tie) is told apart by preferring a kept
    row, then the first.

    Args:
        query: ``(d,)`` the dropped row's unit vector.
        candidates: ``(m, d)`` unit vectors, ``m >= 1``.
        max_sim: the row's recorded maximum cosine to an earlier row.
        kept: ``(m,)`` bool, whether each candidate was kept (None: all alike).
        atol: how far a cosine may be from ``max_sim`` (float32 sums in another order).

    Returns:
        (candidate index, its cosine); with no cosine within ``atol`` (``max_sim`` from other
        vectors), the most similar candidate.
    """
    candidates = np.asarray(candidates, dtype=np.float32)
    query = np.asarray(query, dtype=np.float32)
    if candidates.ndim != 2 or not len(candidates) or query.shape != candidates.shape[1:]:
        raise ValueError(f"candidates: expected (m >= 1, {query.shape}) vectors, got {candidates.shape}")
    sims = candidates @ query
    match = np.flatnonzero(np.abs(sims - np.float32(max_sim)) <= atol)
    if not match.size:
        best = int(np.argmax(sims))
        return best, float(sims[best])
    if kept is not None:
        kept = np.asarray(kept, dtype=bool)
        if kept.shape != (len(candidates),):
            raise ValueError(f"kept: expected ({len(candidates)},) bools, got {kept.shape}")
        if kept[match].any():
            match = match[kept[match]]
    return int(match[0]), float(sims[match[0]])


def keep_from_max_sim(max_sim: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Seed 004's keep mask from :func:`max_earlier_similarity`: ``max_sim <= 1 - eps``."""
    eps = _check_eps("eps", eps)
    return _check_max_sim(max_sim) <= _threshold(eps)


def removal_curve(max_sim: np.ndarray, eps_values: Iterable[float]) -> list[tuple[float, float]]:
    """Fraction of rows the seed rule removes at each ``eps``, from one similarity pass.

    Args:
        max_sim: ``(n,)`` output of :func:`max_earlier_similarity`.
        eps_values: thresholds, each in (0, 1).

    Returns:
        ``[(eps, removal_fraction), ...]`` in the order given; the fraction is
        ``mean(max_sim > 1 - eps)`` (0.0 for empty ``max_sim``), non-decreasing in ``eps``.
    """
    max_sim = _check_max_sim(max_sim)
    eps_list = validate.real_list("eps_values", eps_values, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    n = max_sim.size
    return [(e, float(np.count_nonzero(max_sim > _threshold(e)) / n) if n else 0.0) for e in eps_list]


def removal_curve_table(curve: Sequence[tuple[float, float]]) -> pl.DataFrame:
    """A removal curve (:func:`removal_curve`, :attr:`RemovalSummary.curve`) as a table.

    Args:
        curve: ``[(eps, removal_fraction), ...]``.

    Returns:
        One row per ``eps``, in the order given: ``eps``, ``drop_when_cosine_above``
        (``1 - eps``) and ``fraction_removed``, both rounded to 4 decimals.
    """
    return pl.DataFrame(
        {
            "eps": [e for e, _ in curve],
            "drop_when_cosine_above": [round(1 - e, 4) for e, _ in curve],
            "fraction_removed": [round(f, 4) for _, f in curve],
        }
    )


@dataclass(frozen=True)
class RemovalSummary:
    """Totals of a deduplication over all shards (:func:`removal_summary`).

    ``rows``: rows of all shards; ``removed``: rows whose ``keep`` is False (under the rule
    that made ``keep``); ``curve``: ``[(eps, fraction), ...]``, the fraction of all rows the
    **seed** rule removes at each ``eps`` (:func:`removal_curve` of the concatenated maxima).
    """

    rows: int
    removed: int
    curve: list[tuple[float, float]]

    @property
    def removal_fraction(self) -> float:
        return self.removed / self.rows if self.rows else 0.0


def removal_summary(flags: Iterable[tuple[np.ndarray, np.ndarray]], eps_values: Iterable[float]) -> RemovalSummary:
    """Rows, rows removed and the seed rule's removal curve over every shard of
    :func:`dedup_shards`' output, one shard at a time (integer counts, so the curve equals
    ``removal_curve(np.concatenate(max_sims), eps_values)`` exactly).

    The curve is the seed rule's whatever rule made ``keep``: SemDeDup's rule removes every
    row the seed rule removes and possibly more, so for ``rule="semdedup"`` the curve is a
    lower bound (computing SemDeDup's own curve needs one grouping pass per ``eps``).

    Args:
        flags: per shard, ``(keep, max_sim)``: ``(n,)`` bool and ``(n,)`` float from
            :func:`dedup_shards` (or :func:`dedup_keep` and :func:`max_earlier_similarity`).
        eps_values: thresholds of the curve, each in (0, 1).
    """
    eps_list = validate.real_list("eps_values", eps_values, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    rows = removed = 0
    counts = np.zeros(len(eps_list), dtype=np.int64)
    for j, (keep, max_sim) in enumerate(flags):
        keep, max_sim = np.asarray(keep), _check_max_sim(max_sim)
        if keep.dtype != bool or keep.shape != max_sim.shape:
            raise ValueError(
                f"flags[{j}]: expected a bool keep mask of the shape of max_sim {max_sim.shape}, "
                f"got {keep.dtype} {keep.shape}"
            )
        rows += keep.size
        removed += int(np.count_nonzero(~keep))
        counts += [np.count_nonzero(max_sim > _threshold(e)) for e in eps_list]
    return RemovalSummary(rows, removed, [(e, float(c / rows) if rows else 0.0) for e, c in zip(eps_list, counts)])


@dataclass(frozen=True)
class ClusterShard:
    """One shard of a table whose rows are sorted by cluster (seed 004's per-cluster files,
    cut by LAION part instead of by cluster).

    ``vectors``: ``(n, d)`` unit rows sorted by cluster id, usually an ``np.load(...,
    mmap_mode="r")`` array so only the rows of the clusters at hand are read.
    ``offsets``: ``(k + 1,)`` non-decreasing; the rows of cluster ``c`` are
    ``vectors[offsets[c]:offsets[c + 1]]`` (see :func:`cluster_offsets`).
    """

    vectors: np.ndarray
    offsets: np.ndarray


def cluster_offsets(sorted_labels: np.ndarray, k: int) -> np.ndarray:
    """``(k + 1,)`` row offsets of clusters ``0..k-1`` in ``sorted_labels`` (ascending ids)."""
    lab = np.asarray(sorted_labels)
    if lab.ndim != 1 or (lab.size and not np.issubdtype(lab.dtype, np.integer)):
        raise ValueError(f"sorted_labels: expected 1-D integer cluster ids, got {lab.shape} {lab.dtype}")
    if lab.size and (np.any(np.diff(lab) < 0) or lab[0] < 0 or lab[-1] >= k):
        raise ValueError(f"sorted_labels: expected ids in [0, {k}) in ascending order")
    return np.searchsorted(lab, np.arange(k + 1), side="left").astype(np.int64)


def dedup_shards(
    shards: Sequence[ClusterShard],
    eps: float = DEFAULT_EPS,
    rule: Rule = "seed",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    group_rows: int = DEFAULT_GROUP_ROWS,
    progress: Callable[[int, int], None] | None = None,
    log_every_s: float = 30.0,
    from_shard: int = 0,
    keys: Sequence[np.ndarray] | None = None,
    keys_across_shards: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`dedup_keep` and :func:`max_earlier_similarity` over cluster-sorted shards,
    reading consecutive clusters from every shard at a time, so memory is bounded by
    ``group_rows`` rows (or the biggest cluster) plus one tile, not by the table.

    The stable order inside a cluster is shard order, then row order inside a shard: the
    result equals ``dedup_keep(concat(shards), labels)`` on the concatenation (tested).
    Under the seed rule a row's flag depends only on the rows before it, so the flags of
    the last shards can be computed alone (``from_shard``): appending a LAION part costs
    that part's rows against the earlier rows of their clusters, and earlier shards' flags
    do not change. SemDeDup's grouping is not incremental (a later row can join two earlier
    groups), so it needs ``from_shard=0``.

    Args:
        shards: the parts of the table (all with the same ``d`` and the same ``k``).
        eps, rule, block_rows: as in :func:`dedup_keep`.
        group_rows: rows (over all shards) of consecutive clusters gathered at once.
        progress: called with ``(clusters_done, k)`` after every group.
        log_every_s: seconds between progress lines (rows of the table done, rate, ETA; the
            groups' own loops log too when one group runs that long).
        from_shard: return the flags of ``shards[from_shard:]`` only, the earlier shards
            being read only where a cluster has rows in those (seed rule only).
        keys: per shard, ``(n_shard,)`` sort keys in the shard's row order
            (:func:`keep_order_keys`); ``None``: the stable order.
        keys_across_shards: with ``keys``, False: a cluster's rows are in shard order and by
            key inside each shard (earlier shards still come first, so ``from_shard``
            works and earlier shards' flags never change); True: by key over all shards
            (SemDeDup's order on the concatenation; ties in shard order), ``from_shard``
            must be 0, since a row of a later shard can come first.

    Returns:
        per shard from ``from_shard`` on, ``(keep, max_sim)``: ``(n_shard,)`` bool and
        float32, in the shard's row (cluster-sorted) order.
    """
    eps = _check_eps("eps", eps)
    if rule not in ("seed", "semdedup"):
        raise ValueError(f"rule: expected 'seed' or 'semdedup', got {rule!r}")
    group_rows = validate.int_at_least("group_rows", group_rows, 1)
    if not shards:
        raise ValueError("shards: expected at least one shard")
    from_shard = validate.int_at_least("from_shard", from_shard, 0)
    if from_shard >= len(shards) or (from_shard and rule != "seed"):
        raise ValueError(f"from_shard: expected 0..{len(shards) - 1} (and 0 for rule 'semdedup'), got {from_shard}")
    ks = {len(s.offsets) - 1 for s in shards}
    dims = {s.vectors.shape[1] for s in shards if s.vectors.ndim == 2}
    if len(ks) != 1 or len(dims) > 1:
        raise ValueError(f"shards: expected one cluster count and one dimension, got k {sorted(ks)}, d {sorted(dims)}")
    for i, s in enumerate(shards):
        if s.vectors.ndim != 2 or s.offsets[-1] != s.vectors.shape[0] or s.offsets[0] != 0:
            raise ValueError(f"shards[{i}]: offsets end at {s.offsets[-1]} but vectors have shape {s.vectors.shape}")
    if keys is not None:
        keys = [_check_keys(kk, len(s.vectors)) for kk, s in zip(keys, shards, strict=True)]
        if keys_across_shards and from_shard:
            raise ValueError("from_shard: expected 0 with keys_across_shards (a later shard's row can come first)")
    k = ks.pop()
    tail = shards[from_shard:]
    sizes = np.sum([np.diff(s.offsets) for s in shards], axis=0)
    # only clusters with rows in the shards asked for are read
    sizes[np.sum([np.diff(s.offsets) for s in tail], axis=0) == 0] = 0
    out = [(np.ones(len(s.vectors), bool), np.full(len(s.vectors), -np.inf, np.float32)) for s in tail]
    thr = _threshold(eps)
    lines = Progress(
        f"semantic dedup ({k:,} clusters, {f'the last {len(tail)} of ' if from_shard else ''}{len(shards)} shards)",
        int(sizes.sum()),
        log_every_s,
        log,
        quiet_below_s=log_every_s,
    )
    c0 = 0
    while c0 < k:
        # the longest run of clusters c0..c1-1 within group_rows (at least one cluster)
        c1 = c0 + max(1, int(np.searchsorted(np.cumsum(sizes[c0:]), group_rows, side="right")))
        wanted = np.flatnonzero(sizes[c0:c1]) + c0
        blocks = [_cluster_rows(s, wanted) for s in shards]
        labels = np.concatenate([np.repeat(wanted, np.diff(s.offsets)[wanted]) for s in shards])
        if labels.size:
            X = np.concatenate(blocks)
            rows_from = sum(len(b) for b in blocks[:from_shard])
            perm = None if keys is None else _group_order(shards, keys, wanted, labels, blocks, keys_across_shards)
            if perm is not None:  # the group's rows in the keep order, then back to shard order
                X, labels = X[perm], labels[perm]
            max_sim = max_earlier_similarity(X, labels, block_rows, log_every_s, rows_from)
            keep = max_sim <= thr if rule == "seed" else dedup_keep(X, labels, eps, block_rows, rule, log_every_s)
            if perm is not None:
                max_sim, keep = _unpermute(max_sim, perm), _unpermute(keep, perm)
            at = rows_from
            for s, (keep_out, sim_out), block in zip(tail, out, blocks[from_shard:]):
                rows = _cluster_positions(s, wanted)
                keep_out[rows] = keep[at : at + len(block)]
                sim_out[rows] = max_sim[at : at + len(block)]
                at += len(block)
        lines.update(int(labels.size))
        if progress is not None:
            progress(c1, k)
        c0 = c1
    lines.close()
    return out


def _group_order(shards, keys, wanted, labels, blocks, across: bool) -> np.ndarray:
    """Permutation of a group's rows (shard-major, cluster-sorted) into the keep order: by
    cluster then key (``across``), or by shard, cluster, then key, so every cluster's rows
    of earlier shards stay first and ``rows_from`` still marks a suffix of each cluster."""
    K = np.concatenate([kk[_cluster_positions(s, wanted)] for s, kk in zip(shards, keys)])
    if across:
        return np.lexsort((K, labels))
    shard = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
    return np.lexsort((K, labels, shard))


def _unpermute(values: np.ndarray, perm: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[perm] = values
    return out


def _cluster_positions(shard: ClusterShard, clusters: np.ndarray) -> np.ndarray:
    """Row positions of ``clusters`` (ascending ids) in a cluster-sorted shard, in order."""
    starts, ends = shard.offsets[clusters], shard.offsets[clusters + 1]
    if not len(clusters):
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])


def _cluster_rows(shard: ClusterShard, clusters: np.ndarray) -> np.ndarray:
    """The vectors of ``clusters`` in a shard, read as one slice per run of adjacent clusters."""
    if not len(clusters):
        return np.zeros((0, shard.vectors.shape[1]), np.float32)
    breaks = np.flatnonzero(np.diff(clusters) != 1) + 1
    runs = [(r[0], r[-1] + 1) for r in np.split(clusters, breaks)]
    return np.concatenate([np.asarray(shard.vectors[shard.offsets[a] : shard.offsets[b]]) for a, b in runs])


# --- helpers -------------------------------------------------------------------------------


def _check_eps(name: str, eps) -> float:
    return validate.real(name, eps, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def _threshold(eps: float) -> np.float32:
    """1 - eps in float32, so every comparison (tiles, maxima, curve) uses the same number."""
    return np.float32(1.0 - eps)


def _check_max_sim(max_sim) -> np.ndarray:
    m = np.asarray(max_sim)
    if m.ndim != 1 or not np.issubdtype(m.dtype, np.floating):
        raise ValueError(f"max_sim: expected a 1-D float array (n,), got shape {m.shape}, dtype {m.dtype}")
    if np.isnan(m).any():
        raise ValueError("max_sim: contains NaN")
    return m


def _check_inputs(emb, labels) -> tuple[np.ndarray, np.ndarray]:
    emb = validate.matrix("emb", emb, finite=False)
    n = emb.shape[0]
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},) to match emb {emb.shape}, got {lab.shape}")
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels: expected integer cluster ids, got dtype {lab.dtype}")
    # One read of emb for NaN/inf and unit norm (cosine needs it), block by block.
    for start in range(0, n, validate.FINITE_BLOCK_ROWS):
        B = np.asarray(emb[start : start + validate.FINITE_BLOCK_ROWS], dtype=np.float32)
        validate.all_finite("emb", B)
        norms = np.sqrt(np.einsum("ij,ij->i", B, B))
        bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOL)
        if bad.size:
            raise ValueError(f"emb: expected L2-normalised rows, row {start + bad[0]} has norm {norms[bad[0]]:.4g}")
    return emb, lab


def _cluster_progress(what: str, labels: np.ndarray, log_every_s: float) -> Progress:
    """Progress over the rows of the clusters :func:`_clusters` yields (two rows or more)."""
    counts = np.unique(labels, return_counts=True)[1]
    return Progress(what, int(counts[counts > 1].sum()), log_every_s, log, quiet_below_s=log_every_s)


def _check_keys(keys, n: int) -> np.ndarray | None:
    if keys is None:
        return None
    k = np.asarray(keys)
    if k.shape != (n,) or not np.issubdtype(k.dtype, np.number) or np.isnan(k).any():
        raise ValueError(f"keys: expected ({n},) numbers without NaN (one per row), got {k.shape} {k.dtype}")
    return k


def _clusters(labels: np.ndarray, keys: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Row indices of each cluster with at least two rows, ascending (the stable order), or
    by ascending ``keys`` with ties in row order."""
    order = np.argsort(labels, kind="stable") if keys is None else np.lexsort((keys, labels))
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    for idx in np.split(order, cuts):
        if idx.size > 1:
            yield idx


def _gather(emb: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(emb[rows], dtype=np.float32)


def _upper_mask(block_rows: int) -> np.ndarray:
    s = min(DIAG_ROWS, block_rows)
    return np.triu(np.ones((s, s), dtype=bool))


def _earlier_tiles(
    emb: np.ndarray, idx: np.ndarray, a: int, R: np.ndarray, block_rows: int, tri: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Similarity tiles between block ``R`` (cluster positions ``a, a+1, ...``) and earlier rows.

    Yields ``(r0, c0, S)``: ``S[i, j]`` is the cosine similarity of cluster positions
    ``a + r0 + i`` and ``c0 + j``, ``-inf`` where ``c0 + j >= a + r0 + i`` (not earlier).
    Together the tiles cover every earlier pair of the block exactly once.
    """
    for c0 in range(0, a, block_rows):  # full blocks before this one
        yield 0, c0, R @ _gather(emb, idx[c0 : min(c0 + block_rows, a)]).T
    s = tri.shape[0]
    for r0 in range(0, R.shape[0], s):  # the block's own lower triangle, strip by strip
        r1 = min(r0 + s, R.shape[0])
        S = R[r0:r1] @ R[:r1].T
        k = r1 - r0
        S[:, r0:r1][tri[:k, :k]] = -np.inf
        yield r0, a, S


def _semdedup_keep(
    emb: np.ndarray,
    labels: np.ndarray,
    thr: np.float32,
    block_rows: int,
    log_every_s: float = 30.0,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    keep = np.ones(emb.shape[0], dtype=bool)
    tri = _upper_mask(block_rows)
    progress = _cluster_progress("SemDeDup groups", labels, log_every_s)
    for idx in _clusters(labels, keys):
        # Union-find over cluster positions; every pointer goes to a smaller position, so a
        # root is the earliest row of its group and a prefix of `parent` is closed.
        parent = np.arange(idx.size)
        for a in range(0, idx.size, block_rows):
            R = _gather(emb, idx[a : a + block_rows])
            upto = a + R.shape[0]
            for r0, c0, S in _earlier_tiles(emb, idx, a, R, block_rows, tri):
                hit = S > thr
                step = max(1, -(-hit.shape[0] // EDGE_STRIPS))
                for h0 in range(0, hit.shape[0], step):
                    u, v = np.nonzero(hit[h0 : h0 + step])
                    if u.size:
                        _union(parent[:upto], a + r0 + h0 + u, c0 + v)
        _flatten(parent)
        keep[idx] = parent == np.arange(idx.size)
        progress.update(idx.size)
    progress.close()
    return keep


def _flatten(parent: np.ndarray) -> None:
    """Point every node straight at its root (pointer jumping, in place)."""
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return
        parent[...] = nxt


def _union(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
    """Merge the groups of each pair ``(u[k], v[k])``; the smaller root stays root."""
    while True:
        _flatten(parent)
        ru, rv = parent[u], parent[v]
        cross = ru != rv
        if not cross.any():
            return
        u, v, ru, rv = u[cross], v[cross], ru[cross], rv[cross]
        # Hook each larger root onto the smallest root it meets; the number of roots drops
        # every round, so this ends.
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
