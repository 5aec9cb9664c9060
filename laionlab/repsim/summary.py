"""Summaries of model × model similarity matrices for seed 002 (Ciernik et al., "Objective
drives the consistency of representational similarity across datasets", ICML 2025; public code
lciernik/similarity_consistency): their consistency across datasets, overall and within each
training-objective group, and their link to behaviour (linear-probe accuracy gaps).

* :func:`consistency_table`: for every pair of datasets and every metric computed on both, the
  Pearson and Spearman correlation of the two matrices' upper triangles
  (:func:`~laionlab.repsim.similarity.consistency`), for all models and for the models of each
  objective (image-text, supervised, self-supervised) with at least three members (three
  model pairs: the fewest a correlation over pairs is defined for here).
* :func:`similarity_behaviour_link`: across model pairs on one dataset, the correlation of
  their similarity with the absolute gap between their probe accuracies (the paper's
  "can similarity predict the performance gap" analysis): negative when similar models
  perform alike.

Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.repsim.similarity import _dot_corr, _square, _unit_scores, _upper, consistency

__all__ = ["ALL_MODELS", "MIN_GROUP_MODELS", "ConsistencyTable", "consistency_table", "similarity_behaviour_link"]

ALL_MODELS = "all"  # the ``group`` of rows over every model
# A group's own rows need at least this many models: three model pairs to correlate.
MIN_GROUP_MODELS = 3

_SCHEMA = {
    "metric": pl.String, "dataset_a": pl.String, "dataset_b": pl.String, "group": pl.String,
    "pearson": pl.Float64, "spearman": pl.Float64, "n_pairs": pl.Int64,
}  # fmt: skip


class ConsistencyTable(NamedTuple):
    table: pl.DataFrame  # metric, dataset_a, dataset_b, group, pearson, spearman, n_pairs
    metrics: list[str]  # the metrics every dataset has, in the first dataset's order
    skipped: dict[str, list[str]]  # metric left out -> the datasets that do have it
    groups: dict[str, list[str]]  # objective -> its models (every objective, small ones too)


def consistency_table(
    similarities: Mapping[str, tuple[Sequence[str], Mapping[str, np.ndarray]]],
    objectives: Mapping[str, str] | None = None,
    min_group_models: int = MIN_GROUP_MODELS,
) -> ConsistencyTable:
    """Consistency of model similarities across every pair of datasets, per metric and group.

    Args:
        similarities: dataset → ``(model names, {metric: (m, m) similarity matrix})``, at
            least two datasets, the same models in the same order in each (the
            ``representation_similarity`` outputs). A metric computed on only some datasets
            is left out (listed in ``skipped``), not an error.
        objectives: model name → its objective group; ``None``: only the ``"all"`` rows.
            Every model must have one.
        min_group_models: the fewest models a group needs for its own rows (>= 3).

    Returns:
        :class:`ConsistencyTable`: one row per (metric, dataset pair ``a < b`` in the
        mapping's order, group), ``group`` = ``"all"`` first, then the objectives (sorted)
        with at least ``min_group_models`` models, computed on the sub-matrices of those
        models; ``n_pairs`` = model pairs correlated.

    Raises:
        ValueError: naming the argument: fewer than two datasets, different model lists,
            a matrix whose shape does not match its models, no metric common to all
            datasets, a model without an objective, ``min_group_models < 3``, or a matrix
            whose off-diagonal entries are constant (metric, datasets and group named).
    """
    min_group_models = validate.int_at_least("min_group_models", min_group_models, MIN_GROUP_MODELS)
    if not isinstance(similarities, Mapping) or len(similarities) < 2:
        got = list(similarities) if isinstance(similarities, Mapping) else type(similarities).__name__
        raise ValueError(f"similarities: expected at least two datasets, got {got}")
    datasets = list(similarities)
    names = [str(n) for n in similarities[datasets[0]][0]]
    for d in datasets:
        other, matrices = similarities[d]
        if [str(n) for n in other] != names:
            raise ValueError(
                f"similarities: dataset {d!r} covers models {list(other)} but {datasets[0]!r} covers {names}; "
                "compute every dataset's matrices over the same models"
            )
        for metric, M in matrices.items():
            if np.shape(M) != (len(names), len(names)):
                raise ValueError(
                    f"similarities[{d!r}][{metric!r}]: expected shape ({len(names)}, {len(names)}) "
                    f"for models {names}, got {np.shape(M)}"
                )
    have = {d: list(similarities[d][1]) for d in datasets}
    metrics = [m for m in have[datasets[0]] if all(m in have[d] for d in datasets)]
    seen = dict.fromkeys(m for d in datasets for m in have[d])
    skipped = {m: [d for d in datasets if m in have[d]] for m in seen if m not in metrics}
    if not metrics:
        raise ValueError(
            f"similarities: no metric is computed on every dataset ({have}); recompute them with a common metric"
        )

    groups = _groups(names, objectives)
    selections = [(ALL_MODELS, list(range(len(names))))]
    selections += [
        (g, [names.index(n) for n in members]) for g, members in groups.items() if len(members) >= min_group_models
    ]
    rows = []
    for metric in metrics:
        for i, a in enumerate(datasets):
            for b in datasets[i + 1 :]:
                for group, idx in selections:
                    sub = np.ix_(idx, idx)
                    try:
                        c = consistency(similarities[a][1][metric][sub], similarities[b][1][metric][sub])
                    except ValueError as err:
                        raise ValueError(f"similarities: {metric} of {a!r} vs {b!r}, models {group!r}: {err}") from None
                    rows.append({"metric": metric, "dataset_a": a, "dataset_b": b, "group": group, **c})
    return ConsistencyTable(pl.DataFrame(rows, schema=_SCHEMA), metrics, skipped, groups)


def consistency_matrix(
    table: pl.DataFrame, datasets: Sequence[str], metric: str, group: str = ALL_MODELS, corr: str = "spearman"
) -> np.ndarray:
    """Dataset × dataset consistency of one metric (and model group) from
    :func:`consistency_table`'s table: ``(n, n)`` float64 in the order of ``datasets``,
    symmetric, ones on the diagonal; ``corr`` is the column (``"spearman"`` or ``"pearson"``).
    A pair the table lacks stays 0."""
    if corr not in ("pearson", "spearman"):
        raise ValueError(f"corr: expected 'pearson' or 'spearman', got {corr!r}")
    if not isinstance(table, pl.DataFrame) or set(_SCHEMA) - set(table.columns):
        raise ValueError(f"table: expected consistency_table's table with columns {', '.join(_SCHEMA)}")
    index = {d: i for i, d in enumerate(datasets)}
    rows = table.filter((pl.col("metric") == metric) & (pl.col("group") == group))
    unknown = sorted({d for d in rows["dataset_a"].to_list() + rows["dataset_b"].to_list() if d not in index})
    if unknown:
        raise ValueError(f"datasets: the table's {metric}/{group} rows name datasets {unknown} not in {list(datasets)}")
    M = np.eye(len(datasets))
    for a, b, value in rows.select("dataset_a", "dataset_b", corr).iter_rows():
        M[index[a], index[b]] = M[index[b], index[a]] = value
    return M


def _groups(names: list[str], objectives: Mapping[str, str] | None) -> dict[str, list[str]]:
    if objectives is None:
        return {}
    missing = [n for n in names if n not in objectives]
    if missing:
        raise ValueError(f"objectives: no objective for models {missing}")
    return {g: [n for n in names if objectives[n] == g] for g in sorted({objectives[n] for n in names})}


def similarity_behaviour_link(matrix: np.ndarray, accuracies: Sequence[float] | np.ndarray) -> dict:
    """Correlation, across model pairs, of similarity with the gap in probe accuracy.

    For every pair ``i < j`` of the ``m`` models: ``sim = matrix[i, j]`` and
    ``gap = |accuracies[i] - accuracies[j]|``; the Pearson and Spearman (average ranks)
    correlation of the two. Negative when more similar models perform more alike.

    Args:
        matrix: ``(m, m)`` symmetric model × model similarity matrix.
        accuracies: ``(m,)`` accuracies of the same models in the same order.

    Returns:
        ``{"model_pairs": m (m - 1) / 2, "pearson": r, "spearman": rho}``; both NaN when
        there are fewer than 3 pairs or the gaps or the similarities are all equal (the
        correlation is undefined).

    Raises:
        ValueError: naming the argument: ``matrix`` not square, finite and symmetric;
            ``accuracies`` not finite or not ``m`` long.
    """
    M = _square("matrix", matrix)
    acc = np.asarray(accuracies, dtype=np.float64)
    if acc.shape != (M.shape[0],):
        raise ValueError(f"accuracies: expected {M.shape[0]} values (one per model of matrix), got shape {acc.shape}")
    if not np.isfinite(acc).all():
        raise ValueError("accuracies: contains NaN or inf")
    sims = _upper(M)
    gap = _upper(np.abs(acc[:, None] - acc[None, :]))
    out = {"model_pairs": int(sims.size), "pearson": float("nan"), "spearman": float("nan")}
    if sims.size >= 3 and np.ptp(sims) > 0 and np.ptp(gap) > 0:
        for corr in ("pearson", "spearman"):
            out[corr] = _dot_corr(_unit_scores("matrix", sims, corr), _unit_scores("accuracies", gap, corr))
    return out
