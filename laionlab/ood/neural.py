"""The NSD fMRI pipeline of seed 000 (Roth & Hebart, "How to sample the world for
understanding the visual system", CCN 2025; code ``andropar/how-to-sample``).

Seed files: ``src/how_to_sample/nsd.py`` (betas, noise ceiling),
``experiments/ood_accuracy/test_nsd_OOD_accuracy.py`` (per-subject clusters, OOD encoder and
decoder) and ``experiments/sampling/sampling_nsd.py`` (sampling strategies scored by an
encoding model). NIfTI loading, ROI masks (``streams`` label 5, ventral stream) and the
``nsd_expdesign.mat`` trial mapping stay with the caller; everything here starts from numpy:

1. :func:`prepare_responses`: betas z-scored per voxel along the trials of each session,
   repeated presentations of a stimulus averaged, voxels with noise ceiling > 0 kept
   (:func:`noise_ceiling_from_ncsnr`).
2. :func:`subject_clusters`: StandardScaler + k-means, k lowered from 15 until every cluster
   holds >= 500 images.
3. :func:`neural_ood`: each cluster held out in turn; encoders (features -> responses, mean
   voxel Pearson r) and decoders (responses -> features, K-way nearest-centroid accuracy)
   trained on 500 images from every combination of the other clusters.
4. :func:`neural_sampling`: a fixed 80/20 split; each sampling strategy of
   :mod:`laionlab.sampling` picks the training images from the 80 % pool, scored by the
   test-set r of an encoder, normalised by the subject's best r.
5. :func:`synthetic_subject`: a small NSD-like subject for demos and tests.

Choices where the seed is silent or its code is not at hand:

* A voxel that is constant within a session is z-scored to 0 there (the seed's
  ``scipy.stats.zscore`` gives NaN, which its ``nanmean`` then skips or propagates).
  Betas must be finite, so the seed's ``nanmean`` over repeats is a plain mean here.
* Images are returned in sorted stimulus-id order (the seed: order of first presentation).
* The decoder's centroids are the per-cluster means of the standardised features (the seed:
  the ``MiniBatchKMeans`` centres those labels came from; both are k-means fixed points).
* Proportional training draws use largest remainders (the seed: rounding, then fixing the
  total on the largest quotas); when a combination holds fewer than ``n_train`` images all
  are used, as in the seed.
* Randomness comes from ``numpy.random.default_rng`` streams derived from ``seed`` and the
  held-out cluster / combination, not from the seed's global state or ``hash(subject_id)``.
* Pearson r of a voxel whose predicted or observed responses are constant is NaN and left
  out of the mean (the seed dropped voxels with std < 1e-6).

Numpy in, dicts out; nothing here imports Dagster.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import numbers
import warnings
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from laionlab import cluster, sampling, validate
from laionlab.progress import Progress

__all__ = [
    "neural_ood",
    "neural_sampling",
    "noise_ceiling_from_ncsnr",
    "prepare_responses",
    "subject_clusters",
    "synthetic_subject",
    "voxel_pearson",
]

log = logging.getLogger(__name__)

# Seed defaults.
NCSNR_TRIALS = 3  # nsd.py: NC = 100 * ncsnr^2 / (ncsnr^2 + 1/3), three trials per image
START_K = 15  # test_nsd_OOD_accuracy.py --start-k
MIN_CLUSTER_SIZE = 500  # --min-cluster-size
MIN_K = 2  # the seed's loop range(start_k, 1, -1) stops at k = 2
CLUSTER_SEED = 42  # MiniBatchKMeans(random_state=42)
CLUSTER_N_ITER = 300  # MiniBatchKMeans(max_iter=300)
CLUSTER_N_INIT = 1  # MiniBatchKMeans(n_init="auto"): one k-means++ start
N_TRAIN = 500  # --n-train-samples
OOD_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 9))  # RidgeCV(alphas=np.logspace(-3, 5, 9))
SAMPLING_SIZES = (100, 500, 1000, 1500, 2000, 3000, 4000, 5000)  # sampling_nsd n_selects
SAMPLING_REPEATS = 10  # --n_repeats
REPEATED_STRATEGIES = ("random", "stratified")  # the seed's stochastic strategies
TEST_FRACTION = 0.2  # n_test = n // 5
SAMPLING_SEED = 42  # --random_seed
SAMPLING_ALPHAS = (0.1, 1.0, 10.0)  # RidgeCV(alpha_per_target=True), sklearn's default alphas
STRATIFY_CLUSTERS = 80  # MiniBatchKMeans(n_clusters=80) labels for stratified sampling

# Elements (rows x columns) of a float64 temporary in blocked loops: 32 MiB.
BLOCK_ELEMENTS = 1 << 22


# --- responses -------------------------------------------------------------------------------


def noise_ceiling_from_ncsnr(ncsnr, *, n_trials: int = NCSNR_TRIALS) -> np.ndarray:
    """Noise ceiling in percent from NSD's noise-ceiling SNR.

    ``NC = 100 * ncsnr**2 / (ncsnr**2 + 1 / n_trials)`` (seed: ``load_nsd_ncs``, with
    ``n_trials = 3``, the presentations averaged per NSD image). NC > 0 exactly where
    ``ncsnr != 0``.

    Args:
        ncsnr: array of any shape (e.g. ``(n_voxels,)``), finite.
        n_trials: presentations averaged per image (seed: 3).

    Returns:
        float64 array of the same shape, values in [0, 100).
    """
    a = np.asarray(ncsnr)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"ncsnr: expected a real numeric array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError("ncsnr: contains NaN or inf")
    n_trials = validate.int_at_least("n_trials", n_trials, 1)
    s2 = np.square(a, dtype=np.float64)
    return 100.0 * s2 / (s2 + 1.0 / n_trials)


def prepare_responses(betas, session, stimulus_ids, noise_ceiling=None) -> tuple[np.ndarray, np.ndarray]:
    """One response vector per image from single-trial betas (seed: ``load_nsd_betas``).

    Each voxel is z-scored along the trials of each session (the seed:
    ``scipy.stats.zscore(axis=-1)`` per ``betas_session*.nii.gz`` file, population std), the
    z-scored presentations of each stimulus are averaged (the seed: ``nanmean``), and, when
    ``noise_ceiling`` is given, only voxels with noise ceiling > 0 are kept (the seed's voxel
    selection for every metric). Memory: the output plus one session's betas at a time;
    ``betas`` may be memory-mapped.

    Args:
        betas: ``(n_trials, n_voxels)`` single-trial betas, finite (the seed divides NSD's
            int16 betas by 300 first; z-scoring makes that scale irrelevant).
        session: ``(n_trials,)`` session of each trial (any labels).
        stimulus_ids: ``(n_trials,)`` stimulus shown on each trial (any labels; NSD:
            ``subjectim[subj - 1, masterordering - 1] - 1``).
        noise_ceiling: optional ``(n_voxels,)`` noise ceiling (e.g. from
            :func:`noise_ceiling_from_ncsnr`); voxels with values > 0 are kept.

    Returns:
        ``responses``: ``(n_images, n_kept_voxels)`` float32; ``image_ids``: ``(n_images,)``
        the distinct stimulus ids in sorted order, row i of ``responses`` belonging to
        ``image_ids[i]``.
    """
    betas = validate.matrix("betas", betas, finite=False)
    n_trials, n_voxels = betas.shape
    session = _vector("session", session, n_trials, "betas")
    stimulus_ids = _vector("stimulus_ids", stimulus_ids, n_trials, "betas")
    keep: np.ndarray | None = None
    if noise_ceiling is not None:
        nc = _vector("noise_ceiling", noise_ceiling, n_voxels, "the columns of betas")
        if not np.issubdtype(nc.dtype, np.number) or not np.isfinite(nc).all():
            raise ValueError("noise_ceiling: expected finite real numbers")
        keep = np.flatnonzero(nc > 0)
        if keep.size == 0:
            raise ValueError("noise_ceiling: no voxel has a noise ceiling > 0")
    validate.all_finite("betas", betas)

    image_ids, image_of_trial = np.unique(stimulus_ids, return_inverse=True)
    image_of_trial = image_of_trial.reshape(-1)
    n_out = n_voxels if keep is None else keep.size
    sums = np.zeros((len(image_ids), n_out), dtype=np.float32)
    for rows in _groups(session):
        block = np.asarray(betas[rows], dtype=np.float64)
        if keep is not None:
            block = block[:, keep]
        block -= block.mean(axis=0)
        sd = block.std(axis=0)
        block /= np.where(sd > 0, sd, 1.0)  # constant within the session: z = 0
        images = image_of_trial[rows]
        order = np.argsort(images, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(images[order]) != 0])
        sums[images[order[starts]]] += np.add.reduceat(block[order], starts, axis=0).astype(np.float32)
    sums /= np.bincount(image_of_trial, minlength=len(image_ids)).astype(np.float32)[:, None]
    return sums, image_ids


def voxel_pearson(predicted, observed) -> np.ndarray:
    """Pearson r of each column of ``predicted`` with the same column of ``observed``.

    Column-wise centred dot products over norms, a block of columns at a time (the seed's
    ``correlation_across_voxels`` loops over ``np.corrcoef``). A column that is constant in
    either array has no correlation: NaN.

    Args:
        predicted, observed: ``(n, v)`` arrays, ``n >= 2``, finite.

    Returns:
        ``(v,)`` float64.
    """
    predicted = validate.matrix("predicted", predicted, min_rows=2)
    observed = validate.matrix("observed", observed, min_rows=2)
    if predicted.shape != observed.shape:
        raise ValueError(f"observed: expected the shape of predicted {predicted.shape}, got {observed.shape}")
    return _pearson_columns(predicted, observed)


# --- clusters --------------------------------------------------------------------------------


def subject_clusters(
    features,
    *,
    start_k: int = START_K,
    min_cluster_size: int = MIN_CLUSTER_SIZE,
    min_k: int = MIN_K,
    seed: int = CLUSTER_SEED,
    n_iter: int = CLUSTER_N_ITER,
    n_init: int = CLUSTER_N_INIT,
) -> tuple[np.ndarray, int]:
    """Clusters of one subject's images, as many as allow ``min_cluster_size`` images each.

    Seed: ``cluster_subject_features``: ``StandardScaler`` on the subject's CLIP features,
    then ``MiniBatchKMeans(k, max_iter=300, random_state=42)`` for k = ``start_k`` (15),
    ``start_k - 1``, ... down to 2, keeping the first k whose smallest cluster has >=
    ``min_cluster_size`` (500) images. Here k-means is :func:`laionlab.cluster.kmeans`
    (full-batch Lloyd) started from sklearn's greedy k-means++ (``kmeans_plusplus``, the
    seed's initialisation), the best (lowest inertia) of ``n_init`` seeded runs per k, and
    values of k with ``k * min_cluster_size`` above the number of images are skipped as
    impossible.

    Args:
        features: ``(n_images, d)`` image features, finite.
        start_k: largest k tried (seed: 15).
        min_cluster_size: images required in every cluster (seed: 500).
        min_k: smallest k tried (seed: 2; the OOD analysis needs two clusters).
        seed: k-means seed (seed: 42).
        n_iter: maximum Lloyd iterations (seed: ``max_iter=300``).
        n_init: k-means runs per k, seeds ``seed, seed + 1, ...`` (seed: 1, sklearn's
            ``n_init="auto"`` with k-means++). A start that merges two clusters and splits a
            third makes the size test lower k needlessly; more starts guard against it.

    Returns:
        ``labels``: ``(n_images,)`` int64 in ``0..k-1``; ``k``.

    Raises:
        ValueError: naming ``min_cluster_size`` when no k in ``[min_k, start_k]`` works (the
            images are too few for ``min_k`` clusters, or every clustering has a small one).
    """
    features = validate.matrix("features", features)
    n = features.shape[0]
    start_k = validate.int_at_least("start_k", start_k, 1)
    min_cluster_size = validate.int_at_least("min_cluster_size", min_cluster_size, 1)
    min_k = validate.int_at_least("min_k", min_k, 1)
    if min_k > start_k:
        raise ValueError(f"min_k: expected at most start_k={start_k}, got {min_k}")
    seed = validate.int_at_least("seed", seed, 0)
    n_iter = validate.int_at_least("n_iter", n_iter, 1)
    n_init = validate.int_at_least("n_init", n_init, 1)
    if n < min_k * min_cluster_size:
        raise ValueError(
            f"min_cluster_size: {n} images cannot form {min_k} cluster(s) of >= {min_cluster_size} "
            "images each; lower min_cluster_size (or min_k)"
        )
    mean, scale = _standardiser(features)
    z = ((np.asarray(features, dtype=np.float64) - mean) / scale).astype(np.float32)
    tried = []
    for k in range(min(start_k, n // min_cluster_size), min_k - 1, -1):
        res = min((_kmeans_pp(z, k, n_iter, seed + i) for i in range(n_init)), key=lambda r: r.inertia)
        smallest = int(res.sizes.min())
        if smallest >= min_cluster_size:
            return res.labels.astype(np.int64), k
        tried.append(f"k={k}: smallest {smallest}")
    raise ValueError(
        f"min_cluster_size: no k in [{min_k}, {start_k}] gives every cluster >= {min_cluster_size} "
        f"images ({'; '.join(tried)}); lower min_cluster_size"
    )


# --- OOD generalisation ----------------------------------------------------------------------


def neural_ood(
    features,
    responses,
    labels,
    *,
    n_train: int = N_TRAIN,
    alphas: Sequence[float] = OOD_ALPHAS,
    max_combinations: int | None = None,
    seed: int = 0,
    log_every_s: float = 30.0,
) -> list[dict]:
    """Out-of-distribution encoding and decoding across a subject's clusters.

    Seed: ``run_ood_cluster_analysis``. For each held-out cluster h, each ``k_train`` in
    ``1..K-1`` and each combination of ``k_train`` of the other clusters:

    * ``n_train`` (seed: 500) images are drawn from the combination, stratified in
      proportion to the clusters' sizes (all of them when the combination is smaller);
    * encoder ``RidgeCV(alphas, alpha_per_target=True)`` (seed: ``np.logspace(-3, 5, 9)``)
      features -> responses, scored by the mean voxel Pearson r over all images of h;
    * decoder ``RidgeCV(alphas)`` responses -> features; the predicted features of h's
      images are standardised with the subject's StandardScaler and assigned to the nearest
      (Euclidean) of the K cluster centroids; ``decoder_accuracy`` is the fraction assigned
      to h (chance 1/K).

    The seed aggregates by averaging over combinations, then over held-out clusters, per k.

    Args:
        features: ``(n_images, d)`` image features (the seed: CLIP ViT-B/32), finite.
        responses: ``(n_images, n_voxels)`` from :func:`prepare_responses`, same rows.
        labels: ``(n_images,)`` cluster of each image, at least 2 clusters (e.g.
            :func:`subject_clusters`).
        n_train: training images per fit (seed: 500).
        alphas: ridge penalties tried by both RidgeCVs (seed: ``np.logspace(-3, 5, 9)``).
        max_combinations: at most this many combinations per (held-out cluster, k_train),
            drawn uniformly without replacement (seeded); ``None`` runs every combination,
            as the seed does (``2**(K-1) - 1`` per held-out cluster).
        seed: seeds the combination draws and the training draws.
        log_every_s: seconds between progress lines (fits done, rate, ETA).

    Returns:
        One dict per fit: ``held_out`` (label), ``k_train``, ``combination`` (tuple of
        labels), ``n_train`` (images used), ``n_test``, ``encoder_r``, ``decoder_accuracy``.
    """
    from sklearn.linear_model import RidgeCV

    features = validate.matrix("features", features)
    n = features.shape[0]
    responses = _responses(responses, n)
    classes, compact = _labels(labels, n)
    K = len(classes)
    n_train = validate.int_at_least("n_train", n_train, 2)
    alphas = _alphas(alphas)
    if max_combinations is not None:
        max_combinations = validate.int_at_least("max_combinations", max_combinations, 1)
    seed = validate.int_at_least("seed", seed, 0)

    mean, scale = _standardiser(features)
    members = _groups(compact)
    centroids = np.stack([(features[m].mean(axis=0, dtype=np.float64) - mean) / scale for m in members])
    rows = []
    fits = K * sum(min(math.comb(K - 1, k), max_combinations or math.comb(K - 1, k)) for k in range(1, K))
    progress = Progress(f"neural OOD ({K} clusters)", fits, log_every_s, log, unit="fits", quiet_below_s=log_every_s)
    for h in range(K):
        test = members[h]
        x_test = np.asarray(features[test], dtype=np.float64)
        y_test = np.asarray(responses[test], dtype=np.float64)
        others = [c for c in range(K) if c != h]
        for k_train in range(1, K):
            pick = np.random.default_rng((seed, 0, h, k_train))
            for combo in _combinations(others, k_train, max_combinations, pick):
                train = _proportional_draw(
                    [members[c] for c in combo], n_train, np.random.default_rng((seed, 1, h, *combo))
                )
                x_train = np.asarray(features[train], dtype=np.float64)
                y_train = np.asarray(responses[train], dtype=np.float64)
                encoder = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x_train, y_train)
                decoder = RidgeCV(alphas=alphas).fit(y_train, x_train)
                decoded = (decoder.predict(y_test) - mean) / scale
                rows.append(
                    {
                        "held_out": _item(classes[h]),
                        "k_train": k_train,
                        "combination": tuple(_item(classes[c]) for c in combo),
                        "n_train": len(train),
                        "n_test": len(test),
                        "encoder_r": _mean_r(encoder, x_test, y_test),
                        "decoder_accuracy": float(np.mean(_nearest(decoded, centroids) == h)),
                    }
                )
                progress.update()
    progress.close()
    return rows


# --- sampling strategies ---------------------------------------------------------------------


def neural_sampling(
    features,
    responses,
    strategies: Iterable[str],
    *,
    sizes: Sequence[int] = SAMPLING_SIZES,
    repeats: int = SAMPLING_REPEATS,
    test_fraction: float = TEST_FRACTION,
    seed: int = SAMPLING_SEED,
    alphas: Sequence[float] = SAMPLING_ALPHAS,
    n_clusters: int = STRATIFY_CLUSTERS,
    strategy_kwargs: Mapping[str, Mapping] | None = None,
    log_every_s: float = 30.0,
) -> list[dict]:
    """Encoding accuracy of training sets chosen by each sampling strategy.

    Seed: ``run_sampling_strategy_analysis`` (``sampling_nsd.py``). A random
    ``test_fraction`` (seed: 20 %, seed 42) of the images is held out once; each strategy
    (:data:`laionlab.sampling.STRATEGIES`) picks ``size`` images from the features of the
    remaining pool; ``RidgeCV(alphas, alpha_per_target=True)`` (seed: sklearn's default
    0.1, 1, 10) maps features -> responses and is scored by the mean voxel Pearson r on the
    test images. ``random`` and ``stratified`` run ``repeats`` (seed: 10) times with seeds
    ``seed + repeat``; the other strategies once with ``seed``. Strategies that take cluster
    ``labels`` (stratified, greedy ED, margin, oracle) get a k-means of the pool features
    with ``n_clusters`` (seed: ``MiniBatchKMeans(80)``); those that take targets ``Y``
    (margin, oracle) get the pool's responses. Sizes larger than the pool are skipped with a
    warning.

    Args:
        features: ``(n_images, d)`` image features, finite.
        responses: ``(n_images, n_voxels)`` from :func:`prepare_responses`, same rows.
        strategies: names from :data:`laionlab.sampling.STRATEGIES` (or one name).
        sizes: training-set sizes (seed: 100, 500, 1000, 1500, 2000, 3000, 4000, 5000).
        repeats: runs of the stochastic strategies (seed: 10).
        test_fraction: share of images held out for testing (seed: 0.2).
        seed: seeds the split, the clustering and the strategies (seed: 42).
        alphas: RidgeCV penalties (seed: 0.1, 1, 10).
        n_clusters: clusters of the pool for label-based strategies (seed: 80).
        strategy_kwargs: extra keyword arguments per strategy name, e.g.
            ``{"kcenter": {"seed_compat": True}}``; they override ``labels``/``Y``.
        log_every_s: seconds between progress lines (fits done, rate, ETA).

    Returns:
        One dict per fit: ``strategy``, ``size``, ``repeat``, ``seed``, ``r`` and
        ``normalised_r`` = ``r`` / the largest ``r`` of all rows (the subject's maximum over
        strategies and sizes; NaN when that maximum is not positive).
    """
    from sklearn.linear_model import RidgeCV

    features = validate.matrix("features", features)
    n = features.shape[0]
    responses = _responses(responses, n)
    names = _strategies(strategies)
    sizes = validate.int_list("sizes", sizes, 2)
    repeats = validate.int_at_least("repeats", repeats, 1)
    test_fraction = validate.real("test_fraction", test_fraction, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    seed = validate.int_at_least("seed", seed, 0)
    alphas = _alphas(alphas)
    n_clusters = validate.int_at_least("n_clusters", n_clusters, 1)
    extra = _strategy_kwargs(strategy_kwargs, names)

    n_test = int(math.floor(n * test_fraction))
    if n_test < 2 or n - n_test < 2:
        raise ValueError(
            f"test_fraction: {test_fraction} of {n} images leaves {n_test} test and {n - n_test} "
            "pool images; both need at least 2"
        )
    test = np.sort(np.random.default_rng(seed).choice(n, n_test, replace=False))
    pool = np.setdiff1d(np.arange(n), test)
    x_pool = np.asarray(features[pool])
    y_pool = np.asarray(responses[pool])
    x_test = np.asarray(features[test], dtype=np.float64)
    y_test = np.asarray(responses[test], dtype=np.float64)
    too_big = [s for s in sizes if s > len(pool)]
    if too_big:
        warnings.warn(f"sizes: {too_big} exceed the training pool of {len(pool)} images; skipped", stacklevel=2)
    sizes = [s for s in sizes if s <= len(pool)]

    pool_labels = None
    rows = []
    fits = sum(len(sizes) * (repeats if name in REPEATED_STRATEGIES else 1) for name in names)
    progress = Progress("neural sampling strategies", fits, log_every_s, log, unit="fits", quiet_below_s=log_every_s)
    for name in names:
        params = inspect.signature(sampling.STRATEGIES[name]).parameters
        kw = dict(extra.get(name, {}))
        if "labels" in params and "labels" not in kw:
            if pool_labels is None:
                pool_labels = cluster.kmeans(x_pool, min(n_clusters, len(pool)), seed=seed).labels
            kw["labels"] = pool_labels
        if "Y" in params and "Y" not in kw:
            kw["Y"] = y_pool
        for size in sizes:
            for rep in range(repeats if name in REPEATED_STRATEGIES else 1):
                run_seed = seed + rep
                idx = sampling.sample(name, x_pool, size, seed=run_seed, **kw)
                model = RidgeCV(alphas=alphas, alpha_per_target=True).fit(
                    np.asarray(x_pool[idx], dtype=np.float64), np.asarray(y_pool[idx], dtype=np.float64)
                )
                rows.append(
                    {
                        "strategy": name,
                        "size": size,
                        "repeat": rep,
                        "seed": run_seed,
                        "r": _mean_r(model, x_test, y_test),
                    }
                )
                progress.update()
    progress.close()
    best = max((row["r"] for row in rows if np.isfinite(row["r"])), default=float("nan"))
    for row in rows:
        row["normalised_r"] = row["r"] / best if best > 0 else float("nan")
    return rows


# --- synthetic data --------------------------------------------------------------------------


def synthetic_subject(
    *,
    n_images: int = 1000,
    n_voxels: int = 50,
    dim: int = 16,
    n_clusters: int = 4,
    n_sessions: int = 4,
    repeats: int = 3,
    noise_sd: float = 1.5,
    cluster_sd: float = 3.0,
    null_fraction: float = 0.1,
    seed: int = 0,
) -> dict:
    """A small NSD-like subject: clustered image features and single-trial betas.

    Features are a Gaussian mixture (``n_clusters`` centres drawn with sd ``cluster_sd``,
    unit within-cluster sd); responses are ``features @ W + noise`` with
    ``W ~ N(0, 1 / dim)`` and per-trial noise sd ``noise_sd``; the last ``null_fraction``
    of the voxels carry no signal (ncsnr 0, dropped by the noise-ceiling filter). Each
    image is shown ``repeats`` times (NSD: 3) in shuffled order over ``n_sessions``
    sessions; each session scales and shifts every voxel differently, which per-session
    z-scoring removes.

    Returns:
        dict with ``features`` ``(n_images, dim)`` float32 (row i = stimulus i),
        ``betas`` ``(n_images * repeats, n_voxels)`` float32, ``session`` and
        ``stimulus_ids`` ``(n_trials,)`` int64, ``ncsnr`` ``(n_voxels,)`` float32 (signal sd
        over noise sd) and ``clusters`` ``(n_images,)`` int64, the mixture component.
    """
    n_clusters = validate.int_at_least("n_clusters", n_clusters, 1)
    n_images = validate.int_at_least("n_images", n_images, n_clusters)
    n_voxels = validate.int_at_least("n_voxels", n_voxels, 1)
    dim = validate.int_at_least("dim", dim, 1)
    repeats = validate.int_at_least("repeats", repeats, 1)
    n_sessions = validate.int_at_least("n_sessions", n_sessions, 1)
    if n_sessions > n_images * repeats:
        raise ValueError(f"n_sessions: expected at most the {n_images * repeats} trials, got {n_sessions}")
    noise_sd = validate.real("noise_sd", noise_sd, lo=0.0)
    cluster_sd = validate.real("cluster_sd", cluster_sd, lo=0.0)
    null_fraction = validate.real("null_fraction", null_fraction, lo=0.0, hi=1.0, hi_open=True)
    seed = validate.int_at_least("seed", seed, 0)

    rng = np.random.default_rng(seed)
    centres = cluster_sd * rng.standard_normal((n_clusters, dim))
    clusters = rng.permutation(np.arange(n_images) % n_clusters).astype(np.int64)
    features = centres[clusters] + rng.standard_normal((n_images, dim))
    weights = rng.standard_normal((dim, n_voxels)) / math.sqrt(dim)
    weights[:, n_voxels - int(round(null_fraction * n_voxels)) :] = 0.0
    signal = features @ weights

    stimulus_ids = rng.permutation(np.repeat(np.arange(n_images, dtype=np.int64), repeats))
    n_trials = len(stimulus_ids)
    session = (np.arange(n_trials) * n_sessions // n_trials).astype(np.int64)
    gain = rng.uniform(0.5, 2.0, (n_sessions, n_voxels))
    offset = rng.normal(0.0, 2.0, (n_sessions, n_voxels))
    trial_noise = noise_sd * rng.standard_normal((n_trials, n_voxels))
    betas = gain[session] * (signal[stimulus_ids] + trial_noise) + offset[session]
    sd_signal = signal.std(axis=0)
    ncsnr = sd_signal / noise_sd if noise_sd > 0 else np.where(sd_signal > 0, np.inf, 0.0)
    return {
        "features": features.astype(np.float32),
        "betas": betas.astype(np.float32),
        "session": session,
        "stimulus_ids": stimulus_ids,
        "ncsnr": ncsnr.astype(np.float32),
        "clusters": clusters,
    }


# --- helpers ---------------------------------------------------------------------------------


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column Pearson r of two (n, v) arrays, a block of columns at a time."""
    n, v = a.shape
    out = np.empty(v)
    step = max(1, BLOCK_ELEMENTS // n)
    for s in range(0, v, step):
        x = np.array(a[:, s : s + step], dtype=np.float64)
        y = np.array(b[:, s : s + step], dtype=np.float64)
        # Exact test for constant columns: centring in floating point leaves rounding noise.
        constant = (x.max(axis=0) == x.min(axis=0)) | (y.max(axis=0) == y.min(axis=0))
        x -= x.mean(axis=0)
        y -= y.mean(axis=0)
        num = np.einsum("ij,ij->j", x, y)
        den = np.sqrt(np.einsum("ij,ij->j", x, x) * np.einsum("ij,ij->j", y, y))
        out[s : s + step] = np.where(constant, np.nan, num / np.where(constant, 1.0, den))
    return out


def _mean_r(model, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Mean voxel r of a fitted linear model on the test set, predicting a block of voxels
    at a time (never the whole (n_test, n_voxels) prediction)."""
    coef = np.atleast_2d(model.coef_)
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), (coef.shape[0],))
    v = coef.shape[0]
    step = max(1, BLOCK_ELEMENTS // max(1, len(x_test)))
    r = np.empty(v)
    for s in range(0, v, step):
        pred = x_test @ coef[s : s + step].T + intercept[s : s + step]
        r[s : s + step] = _pearson_columns(pred, y_test[:, s : s + step])
    finite = r[np.isfinite(r)]
    return float(finite.mean()) if finite.size else float("nan")


def _kmeans_pp(z: np.ndarray, k: int, n_iter: int, seed: int) -> cluster.KMeansResult:
    """laionlab's k-means from sklearn's greedy k-means++ centres. faiss's own k-means++
    (``init="kmeans++"``) merged well-separated blobs in about half of the seeds tried on
    :func:`synthetic_subject` data; sklearn's (2 + log k local trials per centre) did not."""
    from sklearn.cluster import kmeans_plusplus

    init = kmeans_plusplus(z, k, random_state=seed)[0]
    return cluster.kmeans(z, k, n_iter=n_iter, seed=seed, init=init, max_points_per_centroid=None)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each row of x."""
    d2 = np.einsum("ij,ij->i", centroids, centroids)[None, :] - 2.0 * (x @ centroids.T)
    return np.argmin(d2, axis=1)


def _standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler's mean and scale (population std, 1 where it is 0)."""
    f = np.asarray(features, dtype=np.float64)
    sd = f.std(axis=0)
    return f.mean(axis=0), np.where(sd > 0, sd, 1.0)


def _proportional_draw(parts: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows from the union of parts, each part contributing in proportion to its size
    (largest remainders), without replacement; all rows when the union is smaller."""
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    if n >= sizes.sum():
        return np.sort(np.concatenate(parts))
    quota = cluster.proportional_quota(sizes, n)
    picked = [rng.choice(p, q, replace=False) for p, q in zip(parts, quota) if q]
    return np.sort(np.concatenate(picked))


def _combinations(items: list[int], r: int, cap: int | None, rng: np.random.Generator) -> Iterator[tuple]:
    """Every r-combination of items in lexicographic order, or ``cap`` of them drawn
    uniformly without replacement (still in lexicographic order)."""
    total = math.comb(len(items), r)
    if cap is None or total <= cap:
        yield from itertools.combinations(items, r)
        return
    if total < 2**62:
        for rank in np.sort(rng.choice(total, cap, replace=False)):
            yield _unrank(items, r, int(rank))
        return
    drawn: set[tuple] = set()  # too many to rank in int64; collisions are vanishingly rare
    while len(drawn) < cap:
        drawn.add(tuple(sorted(rng.choice(items, r, replace=False).tolist())))
    yield from sorted(drawn)


def _unrank(items: list[int], r: int, rank: int) -> tuple:
    """The rank-th r-combination of items in lexicographic (itertools) order."""
    out, start, n = [], 0, len(items)
    for left in range(r, 0, -1):
        for i in range(start, n):
            count = math.comb(n - i - 1, left - 1)
            if rank < count:
                out.append(items[i])
                start = i + 1
                break
            rank -= count
    return tuple(out)


def _groups(labels: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct label, labels in sorted order, rows ascending."""
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def _vector(name: str, x, n: int, ref: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if len(a) != n:
        raise ValueError(f"{name}: expected {n} entries, one per row of {ref}, got {len(a)}")
    if a.dtype == object:
        raise ValueError(f"{name}: expected a numeric or string array, got dtype object")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def _responses(responses, n: int) -> np.ndarray:
    responses = validate.matrix("responses", responses, finite=False)
    if responses.shape[0] != n:
        raise ValueError(f"responses: expected {n} rows, one per row of features, got {responses.shape[0]}")
    validate.all_finite("responses", responses)
    return responses


def _labels(labels, n: int) -> tuple[np.ndarray, np.ndarray]:
    a = _vector("labels", labels, n, "features")
    classes, compact = np.unique(a, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"labels: expected at least 2 clusters, got {len(classes)}")
    return classes, compact.reshape(-1)


def _alphas(alphas) -> tuple[float, ...]:
    return tuple(validate.real_list("alphas", alphas, lo=0.0, lo_open=True))


def _strategies(strategies) -> list[str]:
    names = [strategies] if isinstance(strategies, str) else list(strategies)
    if not names:
        raise ValueError("strategies: expected at least one strategy name")
    for i, name in enumerate(names):
        if name not in sampling.STRATEGIES:
            raise ValueError(
                f"strategies[{i}]: unknown sampling strategy {name!r}; known: {', '.join(sampling.STRATEGIES)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"strategies: expected distinct names, got {names}")
    return names


def _strategy_kwargs(kwargs, names: list[str]) -> dict[str, dict]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"strategy_kwargs: expected a mapping of strategy name to keyword arguments, got {kwargs!r}")
    for key, value in kwargs.items():
        if key not in names:
            raise ValueError(f"strategy_kwargs: {key!r} is not among strategies {names}")
        if not isinstance(value, Mapping):
            raise ValueError(f"strategy_kwargs[{key!r}]: expected a mapping, got {value!r}")
    return {k: dict(v) for k, v in kwargs.items()}


def _item(v):
    """A label as a plain Python value (int for integer labels)."""
    return int(v) if isinstance(v, numbers.Integral) else v.item() if isinstance(v, np.generic) else v
