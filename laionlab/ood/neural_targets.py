"""Neural targets of one dataset with fMRI responses (seed 000's NSD analysis, Roth & Hebart,
CCN 2025): the steps of :mod:`laionlab.ood.neural` chained from a responses file's arrays and
the dataset's image features to the result tables.

1. :func:`dataset_responses`: NSD's int16 betas scaled back (÷300), the noise ceiling from
   ``ncsnr`` when given, :func:`~laionlab.ood.neural.prepare_responses`.
2. :func:`neural_targets`: per-subject clusters, the OOD encoder/decoder rows and the
   sampling-strategy rows of one dataset.
3. :func:`neural_tables`: every dataset's rows as tables, with the mean encoder r / decoder
   accuracy by number of training clusters and the mean normalised r by strategy and size;
   :func:`strategy_curves` reads one dataset's curves off the latter.

Numpy in, polars tables out; nothing here imports Dagster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from laionlab.ood.neural import (
    MIN_CLUSTER_SIZE,
    N_TRAIN,
    SAMPLING_REPEATS,
    SAMPLING_SIZES,
    START_K,
    STRATIFY_CLUSTERS,
    neural_ood,
    neural_sampling,
    noise_ceiling_from_ncsnr,
    prepare_responses,
    subject_clusters,
)

__all__ = [
    "NSD_BETAS_SCALE",
    "NeuralTables",
    "NeuralTargets",
    "dataset_responses",
    "neural_tables",
    "neural_targets",
    "strategy_curves",
]

# NSD stores betas as int16 percent signal change × 300.
NSD_BETAS_SCALE = 300.0
# Stimulus-set sizes are capped at this share of the images: the sampling pool (80/20 split).
POOL_FRACTION = 0.8
OOD_COLUMNS = ("held_out", "k_train", "encoder_r", "decoder_accuracy")
SAMPLING_COLUMNS = ("strategy", "size", "repeat", "r", "normalised_r")


def dataset_responses(
    raw: Mapping[str, np.ndarray], n_images: int, betas_scale: float = NSD_BETAS_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """One response vector per shown image from a responses file's arrays.

    Args:
        raw: ``betas`` ``(trials, voxels)`` (int16 are divided by ``betas_scale``, floats kept),
            ``session`` and ``stimulus_ids`` ``(trials,)`` (index of the shown image), and
            optionally ``ncsnr`` ``(voxels,)`` (voxels with a zero noise ceiling dropped).
        n_images: images of the dataset: every stimulus id must be below it.
        betas_scale: the int16 scale (NSD: 300).

    Returns:
        ``(responses, image_ids)``: ``(n, voxels')`` and the ``(n,)`` sorted image ids.

    Raises:
        ValueError: a missing array, a stimulus id of no image, or bad arrays (from
            :func:`~laionlab.ood.neural.prepare_responses`).
    """
    missing = [k for k in ("betas", "session", "stimulus_ids") if k not in raw]
    if missing:
        raise ValueError(f"responses lack arrays {missing} (have {sorted(raw)})")
    betas = raw["betas"].astype(np.float32) / (betas_scale if raw["betas"].dtype == np.int16 else 1.0)
    nc = noise_ceiling_from_ncsnr(raw["ncsnr"]) if "ncsnr" in raw else None
    responses, image_ids = prepare_responses(betas, raw["session"], raw["stimulus_ids"], noise_ceiling=nc)
    if len(image_ids) and image_ids.max() >= n_images:
        raise ValueError(f"stimulus id {image_ids.max()} but the dataset has {n_images} images")
    return responses, image_ids


@dataclass(frozen=True)
class NeuralTargets:
    """:func:`neural_targets`' result for one dataset.

    ood: one dict per (held-out cluster, training combination): ``dataset``, ``k``,
        ``held_out``, ``k_train``, ``encoder_r``, ``decoder_accuracy``.
    sampling: one dict per (strategy, size, repeat): ``dataset``, ``strategy``, ``size``,
        ``repeat``, ``r``, ``normalised_r``.
    """

    dataset: str
    k: int
    n_images: int
    n_voxels: int
    ood: list[dict]
    sampling: list[dict]


def neural_targets(
    dataset: str,
    raw: Mapping[str, np.ndarray],
    features: np.ndarray,
    strategies: Sequence[str],
    *,
    betas_scale: float = NSD_BETAS_SCALE,
    start_k: int = START_K,
    min_cluster_size: int = MIN_CLUSTER_SIZE,
    n_train: int = N_TRAIN,
    max_combinations: int | None = None,
    sizes: Sequence[int] = SAMPLING_SIZES,
    repeats: int = SAMPLING_REPEATS,
    n_clusters: int = STRATIFY_CLUSTERS,
    log: logging.Logger | None = None,
) -> NeuralTargets:
    """Encoding/decoding on held-out clusters and sampling strategies vs encoding r, for one
    dataset (the seed's NSD analysis).

    Args:
        dataset: the dataset's name (stored in every row).
        raw: the responses file's arrays (:func:`dataset_responses`).
        features: ``(n_images, d)`` image features of the dataset, row i = stimulus id i.
        strategies: sampling strategies (:data:`laionlab.sampling.STRATEGIES`).
        betas_scale: int16 betas are divided by this (NSD: 300).
        start_k, min_cluster_size: :func:`~laionlab.ood.neural.subject_clusters` (seed: 15, 500).
        n_train, max_combinations: :func:`~laionlab.ood.neural.neural_ood` (seed: 500, all).
        sizes: stimulus-set sizes; those above 80 % of the images (the pool) are left out.
        repeats, n_clusters: :func:`~laionlab.ood.neural.neural_sampling` (seed: 10, 80).
        log: gets one line once the clusters are known (images, voxels, k).

    Raises:
        ValueError: a stimulus id of no image, or bad arrays or settings (the message names them).
    """
    features = np.asarray(features)
    responses, image_ids = dataset_responses(raw, len(features), betas_scale)
    X = features[image_ids]
    labels, k = subject_clusters(X, start_k=start_k, min_cluster_size=min_cluster_size)
    if log is not None:
        log.info(f"{dataset}: {len(X)} images, {responses.shape[1]} voxels, k={k}")
    ood = [
        {"dataset": dataset, "k": k, **{c: r[c] for c in OOD_COLUMNS}}
        for r in neural_ood(X, responses, labels, n_train=n_train, max_combinations=max_combinations)
    ]
    sizes = [n for n in sizes if n <= int(POOL_FRACTION * len(X))]
    sampling = [
        {"dataset": dataset, **{c: r[c] for c in SAMPLING_COLUMNS}}
        for r in neural_sampling(X, responses, strategies, sizes=sizes, repeats=repeats, n_clusters=n_clusters)
    ]
    return NeuralTargets(dataset, k, len(X), int(responses.shape[1]), ood, sampling)


@dataclass(frozen=True)
class NeuralTables:
    """:func:`neural_tables`' result.

    ood, sampling: every dataset's rows (:class:`NeuralTargets`) as one table each.
    by_k: mean ``encoder_r`` and ``decoder_accuracy`` by ``dataset``, ``k_train``.
    by_strategy: mean ``normalised_r`` by ``dataset``, ``strategy``, ``size``.
    """

    ood: pl.DataFrame
    sampling: pl.DataFrame
    by_k: pl.DataFrame
    by_strategy: pl.DataFrame


def neural_tables(results: Sequence[NeuralTargets]) -> NeuralTables:
    """The rows of every dataset's :func:`neural_targets` as tables and their summaries.

    Raises:
        ValueError: no result given.
    """
    if not results:
        raise ValueError("results: expected the neural targets of at least one dataset, got none")
    ood = pl.DataFrame([row for result in results for row in result.ood])
    sampling = pl.DataFrame([row for result in results for row in result.sampling])
    by_k = (
        ood.group_by("dataset", "k_train")
        .agg(pl.col("encoder_r").mean(), pl.col("decoder_accuracy").mean())
        .sort("dataset", "k_train")
    )
    by_strategy = (
        sampling.group_by("dataset", "strategy", "size")
        .agg(pl.col("normalised_r").mean())
        .sort("dataset", "strategy", "size")
    )
    return NeuralTables(ood, sampling, by_k, by_strategy)


def strategy_curves(by_strategy: pl.DataFrame, dataset: str) -> tuple[list[int], dict[str, list[float]]]:
    """One dataset's mean normalised r against stimulus-set size, per strategy.

    Args:
        by_strategy: :attr:`NeuralTables.by_strategy`.
        dataset: which dataset's curves.

    Returns:
        ``(sizes, curves)``: the sorted sizes and strategy → mean normalised r at each of its
        sizes (strategies in order of appearance).
    """
    rows = by_strategy.filter(pl.col("dataset") == dataset)
    sizes = sorted(rows["size"].unique().to_list())
    curves = {
        s: rows.filter(pl.col("strategy") == s).sort("size")["normalised_r"].to_list()
        for s in rows["strategy"].unique(maintain_order=True)
    }
    return sizes, curves
