"""The tables of seed 004's eval-to-LAION search and of the pruned LAION pools (Mayilvahanan et
al., "Does CLIP's Generalization Performance Mainly Stem from High Train-Test Similarity?", ICLR
2024; brendel-group/clip-ood ``src/sims_and_paths/compute_sims.py``, ``compute_max_sims.py``
and ``get_paths_chunk.py``).

The search (:func:`laionlab.neighbours.search_parts`) gives each LAION part's max similarities
(:func:`max_sim_table`) and each eval sample's top-``k`` LAION rows (:func:`candidate_uids`,
:func:`candidate_table`). Pruning reads that candidate table back as ``(q, k)`` arrays
(:func:`candidate_matrix`), removes the candidates above their sample's threshold
(:func:`pruned_uids`, the rule of :func:`laionlab.dedup.prune_mask`) and streams the
deduplicated parts one at a time, minus those rows and optionally subsampled
(:func:`pool_picks`, :func:`write_pool`). Tables are polars frames, files are local paths or
fsspec URIs; nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import polars as pl

from laionlab.dedup.prune import prune_mask, subsample_parts
from laionlab.io import files

if TYPE_CHECKING:
    from laionlab.neighbours import PartsSearch

__all__ = [
    "CandidateMatrix",
    "PoolSizes",
    "candidate_matrix",
    "candidate_table",
    "candidate_uids",
    "concat_parquets",
    "max_sim_table",
    "plot_sample",
    "pool_parts",
    "pool_picks",
    "pruned_examples",
    "pruned_uids",
    "rows_in_parquets",
    "write_pool",
]

# rows of one part's max similarities kept for a histogram (every n-th row)
PLOT_ROWS = 100_000


def max_sim_table(uids: Sequence[str], part: str, max_sims: np.ndarray) -> pl.DataFrame:
    """One LAION part's max similarities to the eval set (the seed's ``compute_max_sims.py``
    output for a chunk) as a table: ``uid``, ``part`` (strings, also when empty) and
    ``max_sim``, one row per LAION row in the order given.

    Args:
        uids: ``(n,)`` the part's row ids.
        part: the part's name, repeated in every row.
        max_sims: ``(n,)`` float32, each row's highest similarity to any eval sample.
    """
    if len(uids) != len(max_sims):
        raise ValueError(f"max_sims: expected one value per uid ({len(uids)}), got {len(max_sims)}")
    return pl.DataFrame(
        {"uid": list(uids), "part": [part] * len(max_sims), "max_sim": max_sims},
        schema_overrides={"uid": pl.String, "part": pl.String},
    )


def plot_sample(values: np.ndarray, at_most: int = PLOT_ROWS) -> np.ndarray:
    """Every ``n``-th value, ``n = max(1, len(values) // at_most)``: at most about
    ``2 * at_most`` values, spread evenly over the array, for a histogram."""
    if at_most < 1:
        raise ValueError(f"at_most: expected a positive number of values, got {at_most}")
    return values[:: max(1, len(values) // at_most)]


def candidate_uids(found: PartsSearch, parts: Sequence[str], read_uids: Callable[[str], pl.Series]) -> np.ndarray:
    """The uid of every top-``k`` entry of a search over ``parts``, read back part by part (only
    the parts holding some candidate are read, and no part's uids are held while the next
    one is read).

    Args:
        found: :func:`laionlab.neighbours.search_parts`'s result over ``parts``.
        parts: the parts' names, in the order searched.
        read_uids: ``read_uids(part)`` -> the part's uids in the row order of the search.

    Returns:
        ``(q, k)`` object array of uids (``found.top.ids`` mapped to names).

    Raises ValueError when ``read_uids`` gives another number of rows than the search saw (the
    part changed in between).
    """
    if len(parts) != len(found.offsets) - 1:
        raise ValueError(f"parts: the search covered {len(found.offsets) - 1} parts, got {len(parts)} names")
    names = np.empty(found.top.ids.shape, dtype=object)
    for j, part in enumerate(parts):
        query, rank, row = found.in_part(j)
        if len(row):
            uids = read_uids(part)
            searched = int(found.offsets[j + 1] - found.offsets[j])
            if len(uids) != searched:
                raise ValueError(
                    f"part {part!r}: {len(uids)} uids read back, but the search saw {searched} rows of it "
                    "(the part changed in between)"
                )
            names[query, rank] = uids.gather(row).to_numpy()
    return names


def candidate_table(scores: np.ndarray, uids: np.ndarray) -> pl.DataFrame:
    """Each eval sample's top-``k`` candidates as a long table (the seed's combined
    ``compute_sims.py`` output): ``eval_index``, ``rank`` (0 = most similar), ``uid``, ``sim``;
    ``q * k`` rows in (eval_index, rank) order.

    Args:
        scores: ``(q, k)`` similarities, each row in descending order (``TopK.scores``).
        uids: ``(q, k)`` the candidates' uids (:func:`candidate_uids`).
    """
    scores, uids = np.asarray(scores), np.asarray(uids)
    if scores.ndim != 2 or uids.shape != scores.shape:
        raise ValueError(f"uids: expected the 2-D shape of scores {scores.shape}, got {uids.shape}")
    q, k = scores.shape
    columns = {"eval_index": np.repeat(np.arange(q), k), "rank": np.tile(np.arange(k), q)}
    return pl.DataFrame({**columns, "uid": uids.ravel(), "sim": scores.ravel()}, schema_overrides={"uid": pl.String})


@dataclass(frozen=True)
class CandidateMatrix:
    """A candidate table as :func:`laionlab.dedup.prune_mask`'s arrays.

    Attributes:
        uids: the distinct candidate uids, sorted; ``ids`` index into it.
        ids: ``(q, k)`` int64 row numbers in ``uids``; ``-1`` past a sample's last candidate.
        scores: ``(q, k)`` float32 similarities; ``-inf`` in empty slots.
    """

    uids: pl.Series
    ids: np.ndarray
    scores: np.ndarray

    @property
    def k(self) -> int:
        return self.ids.shape[1]


def candidate_matrix(candidates: pl.DataFrame, n_eval: int) -> CandidateMatrix:
    """:func:`candidate_table`'s table (``eval_index``, ``rank``, ``uid``, ``sim``) as ``(q, k)``
    arrays over its distinct uids, ``q = n_eval`` (the eval set's size, from its thresholds);
    ``k`` is the table's largest rank + 1.

    Raises ValueError when the table is empty or names an eval sample ``>= n_eval`` (the
    table and the thresholds describe different eval sets).
    """
    if candidates.is_empty() or candidates["eval_index"].max() >= n_eval:
        got = "no row" if candidates.is_empty() else f"eval_index up to {candidates['eval_index'].max()}"
        raise ValueError(
            f"candidates: expected eval_index values in [0, {n_eval}) (one per threshold), got {got}: "
            "the candidates and the thresholds disagree on the eval set size"
        )
    uids = candidates["uid"].unique().sort()
    c = candidates.join(pl.DataFrame({"uid": uids, "row": np.arange(len(uids))}), on="uid", how="left")
    ids = np.full((n_eval, int(c["rank"].max()) + 1), -1, dtype=np.int64)
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    at = (c["eval_index"].to_numpy(), c["rank"].to_numpy())
    ids[at], scores[at] = c["row"].to_numpy(), c["sim"].to_numpy()
    return CandidateMatrix(uids, ids, scores)


def pruned_uids(matrix: CandidateMatrix, thresholds: np.ndarray, laion_rows: int) -> tuple[pl.Series, np.ndarray]:
    """The candidates pruning removes (seed 004's ``get_paths_chunk.py``: a candidate goes when
    its similarity is strictly above its eval sample's threshold) and the saturated eval
    samples (all ``k`` candidates above the threshold while LAION holds more rows).

    The pool :func:`laionlab.dedup.prune_mask` sees is the candidates plus one row standing
    for the LAION rows that are none, so a sample whose ``k`` candidates all pass its
    threshold counts as saturated exactly when LAION has rows beyond the candidates.

    Args:
        matrix: :func:`candidate_matrix` of the eval set's candidates.
        thresholds: ``(q,)`` per-eval-sample thresholds (:func:`laionlab.dedup.nearest_similarity`).
        laion_rows: rows of LAION the candidates were drawn from.

    Returns:
        the removed uids (sorted), and ``(q,)`` bool, True for a saturated eval sample.
    """
    n = len(matrix.uids)
    keep, saturated = prune_mask(matrix.ids, matrix.scores, thresholds, n + int(laion_rows > n), return_saturated=True)
    return matrix.uids.filter(pl.Series(~keep[:n])), saturated


def pruned_examples(
    candidates: pl.DataFrame, thresholds: np.ndarray, samples: int = 6, per_sample: int = 4, seed: int = 0
) -> pl.DataFrame:
    """A seeded few eval samples with the candidates pruning removes for them, for a gallery.

    ``candidates``: :func:`candidate_table`'s (``eval_index``, ``rank``, ``uid``, ``sim``);
    ``thresholds``: ``(q,)`` per-sample thresholds. A candidate is pruned when its similarity
    is strictly above its sample's threshold (seed 004's ``get_paths_chunk.py``, as
    :func:`pruned_uids`). Of the samples with any pruned candidate, at most ``samples`` are
    chosen (seeded, uniform, in index order); for each: its ``per_sample`` most similar pruned
    candidates and its most similar kept one (the boundary), if any.

    Returns eval_index, threshold, rank, uid, sim, pruned; an empty frame when nothing is
    pruned.
    """
    if samples < 1 or per_sample < 1:
        raise ValueError(f"samples and per_sample must be >= 1, got {samples} and {per_sample}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if not candidates.is_empty() and candidates["eval_index"].max() >= len(thresholds):
        raise ValueError(
            f"candidates: eval_index up to {candidates['eval_index'].max()} but {len(thresholds)} thresholds: "
            "the candidates and the thresholds describe different eval sets"
        )
    frame = candidates.join(
        pl.DataFrame({"eval_index": np.arange(len(thresholds)), "threshold": thresholds}),
        on="eval_index",
        how="left",
    ).with_columns(pruned=pl.col("sim").cast(pl.Float64) > pl.col("threshold"))
    with_pruned = frame.filter(pl.col("pruned"))["eval_index"].unique().sort()
    if with_pruned.is_empty():
        return frame.clear().select("eval_index", "threshold", "rank", "uid", "sim", "pruned")
    if len(with_pruned) > samples:
        chosen = np.sort(np.random.default_rng(seed).choice(len(with_pruned), samples, replace=False))
        with_pruned = with_pruned.gather(chosen)
    shown = frame.filter(pl.col("eval_index").is_in(with_pruned.implode())).sort("eval_index", "rank")
    top = shown.filter(pl.col("pruned")).group_by("eval_index", maintain_order=True).head(per_sample)
    boundary = shown.filter(~pl.col("pruned")).group_by("eval_index", maintain_order=True).head(1)
    return (
        pl.concat([top, boundary])
        .sort("eval_index", "rank")
        .select("eval_index", "threshold", "rank", "uid", "sim", "pruned")
    )


def rows_in_parquets(uris: Sequence[str]) -> int:
    """Rows of Parquet files, from their footers (no column is read)."""
    import pyarrow.parquet as pq

    total = 0
    for uri in uris:
        with files.open_read(uri) as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def concat_parquets(uris: Sequence[str], columns: list[str] | None = None) -> pl.DataFrame:
    """Parquet files (e.g. a versioned output's parts) as one frame, in the order given."""
    if not uris:
        raise ValueError("uris: expected at least one Parquet file, got none")
    return pl.concat([files.read_parquet(uri, columns) for uri in uris])


def pool_parts(dedup_uris: Sequence[str], pruned: pl.Series) -> Iterator[tuple[str, int, pl.DataFrame]]:
    """Per deduplicated part file (``uid``, ``keep`` columns, e.g. laion_dedup's): its file
    name, how many rows deduplication kept, and those of them pruning did not remove (a
    ``uid`` frame in uid order); one part in memory at a time."""
    for uri in dedup_uris:
        frame = files.read_parquet(uri, ["uid", "keep"]).filter(pl.col("keep"))
        pool = frame.filter(~pl.col("uid").is_in(pruned.implode())).select("uid").sort("uid")
        yield uri.rstrip("/").rsplit("/", 1)[-1], frame.height, pool


def pool_picks(
    dedup_uris: Sequence[str], pruned: pl.Series, target_size: int | None, seed: int, eval_name: str = "the eval set"
) -> list[np.ndarray] | None:
    """The rows of each part's pruned pool (:func:`pool_parts`) that a uniform, seeded
    subsample of ``target_size`` rows keeps (:func:`laionlab.dedup.subsample_parts`; the seed's
    ``subsample_dataset.py``); ``None`` when ``target_size`` is ``None`` (keep every row).
    Reads every part once to learn its size.

    Raises ValueError, naming ``eval_name``, when ``target_size`` exceeds the pruned pool.
    """
    if target_size is None:
        return None
    part_sizes = [pool.height for _, _, pool in pool_parts(dedup_uris, pruned)]
    if target_size > sum(part_sizes):
        raise ValueError(
            f"target_size={target_size} is larger than the pruned pool for {eval_name} ({sum(part_sizes)} rows)"
        )
    return subsample_parts(part_sizes, target_size, seed)


@dataclass(frozen=True)
class PoolSizes:
    """Rows at each stage of a pruned pool (over all parts)."""

    deduplicated: int
    pruned: int
    final: int

    @property
    def pruned_away(self) -> int:
        return self.deduplicated - self.pruned

    def table(self, laion_rows: int) -> pl.DataFrame:
        """``stage`` (laion, deduplicated, pruned, final) and ``rows``."""
        rows = [laion_rows, self.deduplicated, self.pruned, self.final]
        return pl.DataFrame({"stage": ["laion", "deduplicated", "pruned", "final"], "rows": rows})


def write_pool(
    dedup_uris: Sequence[str],
    pruned: pl.Series,
    write: Callable[[pl.DataFrame, str], object],
    picks: list[np.ndarray] | None = None,
) -> PoolSizes:
    """The pruned pool, part by part: each deduplicated part's kept rows minus ``pruned``
    (:func:`pool_parts`), reduced to ``picks`` when given (:func:`pool_picks`), handed to
    ``write(frame, file_name)`` under the part file's name.

    Returns the rows kept by deduplication, left after pruning, and written.
    """
    if picks is not None and len(picks) != len(dedup_uris):
        raise ValueError(f"picks: expected one array per part file ({len(dedup_uris)}), got {len(picks)}")
    deduplicated = left = final = 0
    for j, (file_name, kept, pool) in enumerate(pool_parts(dedup_uris, pruned)):
        deduplicated += kept
        left += pool.height
        pool = pool if picks is None else pool.select(pl.col("uid").gather(picks[j]))
        write(pool, file_name)
        final += pool.height
    return PoolSizes(deduplicated, left, final)
