"""LAIONet over all parts (seed 001: Shirali & Hardt, TMLR 2025): the seed's rules act row by
row, so each part's rows are selected on their own (:func:`~laionlab.laionet.select_laionet`)
and LAIONet is their union; the rule counts add up, and the size-vs-threshold curve is swept
over every part's eligible rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from laionlab.laionet.select import is_paper_text_model, label_map, threshold_warning
from laionlab.laionet.stats import THRESHOLD_SWEEP, threshold_curve

__all__ = ["LaionetParts", "combine_laionet_parts", "sum_counts"]


@dataclass(frozen=True)
class LaionetParts:
    """:func:`combine_laionet_parts`' result.

    rows: every part's LAIONet rows in one table, sorted by ``wnid``, ``uid``.
    counts: the rule counts summed over the parts (``text_in_image_checked``: the number of
        parts where the text-in-image rule applied).
    labels: wnid → row numbers of ``rows`` (:func:`~laionlab.laionet.label_map`).
    class_sizes: ``wnid``, ``len`` (rows of the class), largest first.
    curve: rows and classes left by each threshold of the sweep (``threshold``, ``rows``,
        ``classes``) over the parts' eligible rows.
    text_models: the text models that scored the eligible rows, sorted.
    paper_text_model: whether every one of them is the paper's (and there is one).
    warning: why the threshold may not suit these text models, or None.
    """

    rows: pl.DataFrame
    counts: dict[str, int]
    labels: dict[str, list[int]]
    class_sizes: pl.DataFrame
    curve: pl.DataFrame
    text_models: list[str]
    paper_text_model: bool
    warning: str | None


def sum_counts(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Part → rule counts summed over the parts, keys in order of first appearance."""
    total: dict[str, int] = {}
    for part, part_counts in counts.items():
        for key, value in part_counts.items():
            total[key] = total.get(key, 0) + int(value)
    return total


def combine_laionet_parts(
    rows: Mapping[str, pl.DataFrame],
    eligible: Mapping[str, pl.DataFrame],
    counts: Mapping[str, Mapping[str, int]],
    threshold: float,
    sweep: Sequence[float] = THRESHOLD_SWEEP,
) -> LaionetParts:
    """LAIONet from its parts.

    Args:
        rows: part → the part's LAIONet rows (``wnid``, ``uid`` and LAIONet's other columns).
        eligible: part → the rows that passed every rule but the threshold: ``wnid``,
            ``similarity`` and, when known, ``text_model``.
        counts: part → the part's rule counts (``candidates``, ``dropped_multi_synset``, ...).
        threshold: the similarity threshold the rows were selected with.
        sweep: thresholds of the size-vs-threshold curve.

    Raises:
        ValueError: no part given, parts that differ between the three mappings, or no caption
            of any part naming exactly one synset (LAIONet would be empty).
    """
    parts = list(counts)
    if not parts:
        raise ValueError("counts: expected the rule counts of at least one part, got none")
    if set(rows) != set(parts) or set(eligible) != set(parts):
        raise ValueError(
            f"rows, eligible and counts must cover the same parts, got {sorted(rows)}, {sorted(eligible)}, {parts}"
        )
    total = sum_counts(counts)
    if total.get("candidates", 0) == total.get("dropped_multi_synset", 0):
        raise ValueError(f"no caption of parts {parts} matched exactly one synset: LAIONet would be empty")
    selected = pl.concat([rows[p] for p in parts], how="diagonal_relaxed").sort("wnid", "uid")
    scored = pl.concat([eligible[p] for p in parts], how="diagonal_relaxed")
    text_models = sorted(set(scored["text_model"].drop_nulls().to_list())) if "text_model" in scored.columns else []
    return LaionetParts(
        rows=selected,
        counts=total,
        labels=label_map(selected),
        class_sizes=selected.group_by("wnid").len().sort("len", descending=True),
        curve=threshold_curve(scored["similarity"].to_numpy(), scored["wnid"].to_numpy(), sweep),
        text_models=text_models,
        paper_text_model=bool(text_models) and all(is_paper_text_model(m) for m in text_models),
        warning=threshold_warning(threshold, text_models),
    )
