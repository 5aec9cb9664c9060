"""OOD generalisation on real CLIP features: "How much of LAION can be predicted?" (seed 000).

Roth & Hebart, "How to sample the world for understanding the visual system" (CCN 2025);
public code ``andropar/how-to-sample``: ``experiments/ood_accuracy/OOD_accuracy_GMM_LAION.ipynb``
(section "How much of LAION can be predicted?") and the same scoring in
``experiments/sampling/test_sampling_laion.py`` (``find_cluster_groups_and_outliers``,
``get_cluster_accuracy``, ``eval_group_ood_performance``).

The seed's recipe, with its defaults:

1. ``StandardScaler`` fit on (a 100 000-row sample of) the raw CLIP features, k-means with
   k = 1000 on the standardised features (the seed: ``MiniBatchKMeans``; here the project's
   one k-means wrapper, :func:`laionlab.cluster.kmeans`, fit on a seeded subsample, every row
   then assigned exactly).
2. A pool of 500 images per cluster, drawn **with** replacement (``np.random.choice``'s
   default in the seed), 500 000 rows at k = 1000.
3. Simulated fMRI ``x = f A + N(0, noise_sd²)``: ``f`` the raw CLIP features, teacher
   ``A_ij ~ N(0, 1 / D)``, ``noise_sd = 1`` (``np.sqrt(1)`` in the notebook).
4. OOD splits: Ward linkage (``scipy.cluster.hierarchy``, Euclidean ``pdist``) of the 1000
   centroids cut into 6 groups (``fcluster(..., criterion="maxclust")``); groups with fewer
   than 3 clusters are dropped (``min_group_size=3``). Seed group sizes: 22, 105, 75, 549,
   34, 215.
5. For each held-out group: a test set of 1000 images stratified over the group's clusters
   (``1000 // len(group)`` per cluster, without replacement); training sets of 6000 images
   balanced over the clusters of every combination of 1..5 of the other groups; ``RidgeCV()``
   (alphas 0.1, 1, 10) from fMRI to raw CLIP features.
6. Scoring: predictions go through the StandardScaler and are compared by cosine with **all**
   k standardised centroids (1000-way); a test image is correct when its own cluster's
   centroid has a strictly larger cosine than every other centroid. Accuracy is computed per
   test cluster and averaged over the held-out group's clusters.
7. Reporting: accuracy divided by the maximum accuracy among the conditions compared for the
   same held-out group ("% of the within-group maximum"; :func:`normalise_within_group`). In
   the seed's dataset comparison the maximum is taken within a held-out group **and** a
   dataset size (NSD-sized: NSD, LAION random, LAION stratified).

Choices where the seed is silent or its code is not at hand:

* "Balanced over clusters": ``n_train`` is split as evenly as the clusters' pool rows allow
  (water-filling), the remainder given to randomly chosen clusters, rows drawn without
  replacement from the pool; ``n_train`` is reported as used.
* Groups of more than ``n_test`` clusters get one test image per cluster (the seed's
  ``1000 // len(group)`` would be 0).
* Randomness: ``numpy.random.default_rng`` streams derived from ``seed``, not the seed's
  global state.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist

from laionlab import validate
from laionlab.progress import Progress
from laionlab.vectors import l2_normalise

__all__ = [
    "LaionOODSetup",
    "identification_accuracy",
    "laion_identification",
    "laion_ood_setup",
    "normalise_within_group",
    "train_set_identification",
    "ward_groups",
]

log = logging.getLogger(__name__)

# Seed defaults (OOD_accuracy_GMM_LAION.ipynb / test_sampling_laion.py).
N_CLUSTERS = 1000
PER_CLUSTER = 500
N_GROUPS = 6
MIN_GROUP_SIZE = 3
N_TRAIN = 6000
N_TEST = 1000
NOISE_SD = 1.0
RIDGE_ALPHAS = (0.1, 1.0, 10.0)  # sklearn RidgeCV() default
SCALER_SAMPLE = 100_000
KMEANS_POINTS_PER_CENTROID = 256  # faiss default, as laionlab.cluster.kmeans
BLOCK_ROWS = 65_536


@dataclass(frozen=True)
class LaionOODSetup:
    """Everything fixed before any training set is chosen.

    Attributes:
        mean, scale: ``(d,)`` StandardScaler of the raw features (scale 1 where std is 0).
        centroids: ``(k, d)`` float32 k-means centroids in the standardised space.
        labels: ``(n,)`` int64 cluster of each row of the features the setup was built on.
        groups: Ward groups, each an int64 array of cluster ids (small groups dropped).
        teacher: ``(d, d)`` float64 matrix A of the simulated fMRI ``x = f A + noise``.
        noise_sd: standard deviation of the fMRI noise.
        seed: the seed the setup was built with.
    """

    mean: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray
    labels: np.ndarray
    groups: tuple[np.ndarray, ...]
    teacher: np.ndarray
    noise_sd: float
    seed: int

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / scale`` as float64 (the seed's ``scaler.transform``)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Nearest centroid (Euclidean, standardised space) of each row of raw features."""
        x = validate.matrix("x", x)
        validate.same_dim("x", x, "the setup", self.centroids.shape[1])
        return _assign(x, self.mean, self.scale, self.centroids)


def ward_groups(centroids, n_groups: int = N_GROUPS, min_group_size: int = MIN_GROUP_SIZE) -> list[np.ndarray]:
    """Groups of similar clusters: Ward linkage of the centroids cut into ``n_groups``.

    Seed: ``find_cluster_groups_and_outliers`` (Euclidean ``pdist``, ``method="ward"``,
    ``fcluster(criterion="maxclust")``, groups under ``min_group_size = 3`` dropped).

    Returns:
        List of int64 arrays of cluster indices, in ``fcluster`` label order.
    """
    centroids = validate.matrix("centroids", centroids, min_rows=2)
    n_groups = validate.int_at_least("n_groups", n_groups, 2)
    if n_groups > len(centroids):
        raise ValueError(f"n_groups: {n_groups} groups need at least as many centroids, got {len(centroids)}")
    min_group_size = validate.int_at_least("min_group_size", min_group_size, 1)
    link = hierarchy.linkage(pdist(np.asarray(centroids, dtype=np.float64)), method="ward")
    labels = hierarchy.fcluster(link, n_groups, criterion="maxclust")
    groups = [np.flatnonzero(labels == g).astype(np.int64) for g in range(1, n_groups + 1)]
    return [g for g in groups if len(g) >= min_group_size]


def laion_ood_setup(
    features,
    n_clusters: int = N_CLUSTERS,
    n_groups: int = N_GROUPS,
    noise_sd: float = NOISE_SD,
    seed: int = 0,
    *,
    min_group_size: int = MIN_GROUP_SIZE,
    scaler_sample: int = SCALER_SAMPLE,
    kmeans_points_per_centroid: int | None = KMEANS_POINTS_PER_CENTROID,
    kmeans_iter: int = 25,
) -> LaionOODSetup:
    """Standardise, cluster, group the clusters and draw the fMRI teacher (steps 1, 4).

    Args:
        features: ``(n, d)`` raw CLIP image features (the seed: ViT-B/32, d = 512), may be
            memory-mapped; only samples and blocks are copied.
        n_clusters: k of k-means (seed: 1000).
        n_groups: Ward groups (seed: 6).
        noise_sd: fMRI noise standard deviation (seed: 1).
        seed: seeds the scaler sample, k-means and the teacher.
        min_group_size: smaller Ward groups are dropped (seed: 3).
        scaler_sample: rows the StandardScaler is fit on (seed: 100 000).
        kmeans_points_per_centroid: k-means trains on at most this many rows per centroid
            (``None``: all rows).
        kmeans_iter: Lloyd iterations.

    Raises:
        ValueError: naming the argument; also when fewer than 2 groups survive.
    """
    from laionlab.cluster import kmeans

    features = validate.matrix("features", features, min_rows=2)
    n, d = features.shape
    n_clusters = validate.int_at_least("n_clusters", n_clusters, 2)
    if n_clusters > n:
        raise ValueError(f"n_clusters: {n_clusters} exceeds the {n} rows of features")
    noise_sd = validate.real("noise_sd", noise_sd, lo=0.0)
    seed = validate.int_at_least("seed", seed, 0)
    scaler_sample = validate.int_at_least("scaler_sample", scaler_sample, 2)
    if kmeans_points_per_centroid is not None:
        kmeans_points_per_centroid = validate.int_at_least("kmeans_points_per_centroid", kmeans_points_per_centroid, 1)

    rows = _sample_rows(n, scaler_sample, np.random.default_rng((seed, 0)))
    sample = np.asarray(features[rows], dtype=np.float64)
    mean = sample.mean(axis=0)
    scale = sample.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # sklearn's StandardScaler does the same

    limit = n if kmeans_points_per_centroid is None else kmeans_points_per_centroid * n_clusters
    rows = _sample_rows(n, limit, np.random.default_rng((seed, 1)))
    z = ((np.asarray(features[rows], dtype=np.float64) - mean) / scale).astype(np.float32)
    km = kmeans(z, n_clusters, n_iter=kmeans_iter, seed=seed, max_points_per_centroid=None)
    del z
    labels = _assign(features, mean, scale, km.centroids)
    groups = ward_groups(km.centroids, n_groups, min_group_size)
    if len(groups) < 2:
        raise ValueError(
            f"min_group_size: only {len(groups)} Ward group(s) of >= {min_group_size} clusters "
            f"out of n_groups={n_groups}; lower min_group_size or raise n_clusters"
        )
    teacher = np.random.default_rng((seed, 2)).standard_normal((d, d)) / np.sqrt(d)
    return LaionOODSetup(
        mean=mean,
        scale=scale,
        centroids=km.centroids,
        labels=labels,
        groups=tuple(groups),
        teacher=teacher,
        noise_sd=noise_sd,
        seed=seed,
    )


def identification_accuracy(setup: LaionOODSetup, predictions, true_labels, clusters=None) -> float:
    """Nearest-centroid identification of predicted raw features (step 6).

    Args:
        setup: the :class:`LaionOODSetup` (scaler and centroids).
        predictions: ``(m, d)`` predicted raw CLIP features.
        true_labels: ``(m,)`` cluster of each test image.
        clusters: clusters to average over (default: those in ``true_labels``).

    Returns:
        Mean over clusters of the share of their test images whose own centroid has a
        strictly larger cosine (standardised space) than every other centroid; NaN if no
        listed cluster has a test image.
    """
    predictions = validate.matrix("predictions", predictions)
    validate.same_dim("predictions", predictions, "the setup", setup.centroids.shape[1])
    true_labels = _index_array("true_labels", true_labels, len(setup.centroids))
    if len(true_labels) != len(predictions):
        raise ValueError(f"true_labels: expected {len(predictions)} labels, got {len(true_labels)}")
    p = l2_normalise(setup.standardise(predictions), copy=False, name="standardised predictions")
    c = l2_normalise(np.asarray(setup.centroids, dtype=np.float64), name="centroids")
    cos = p @ c.T
    idx = np.arange(len(p))
    own = cos[idx, true_labels].copy()
    cos[idx, true_labels] = -np.inf
    correct = own > cos.max(axis=1)
    k = len(setup.centroids)
    clusters = np.unique(true_labels) if clusters is None else _index_array("clusters", clusters, k)
    hits = np.bincount(true_labels, weights=correct, minlength=k)[clusters]
    counts = np.bincount(true_labels, minlength=k)[clusters]
    has = counts > 0
    if not has.any():
        return float("nan")
    return float(np.mean(hits[has] / counts[has]))


def train_set_identification(
    features,
    setup: LaionOODSetup,
    train_idx=None,
    *,
    train_features=None,
    held_out_groups: Iterable[int] | None = None,
    n_test: int = N_TEST,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    seed: int = 0,
) -> list[dict]:
    """OOD identification accuracy of an arbitrary training set, one row per held-out group.

    The seed's dataset comparison: a reference set (NSD, THINGS, ...) is trained on its own
    images outside the held-out group and scored against LAION random or stratified samples
    of the same size. Pass the training set as ``train_idx`` (rows of ``features``, e.g. a
    reference set's nearest LAION samples, or a random sample) or as ``train_features`` (raw
    CLIP features of images outside ``features``, assigned to the setup's clusters). For each
    held-out group the images of its clusters are dropped from training.

    The test set of a group is drawn from ``features`` (``n_test // len(group)`` images per
    cluster, at least one) and its fMRI noise from streams of ``seed`` and the group alone,
    so every training set scored with the same ``features``, ``setup`` and ``seed`` meets the
    same test images and responses. Compare conditions with :func:`normalise_within_group`.

    Args:
        features: ``(n, d)`` the raw features ``setup`` was built on.
        setup: from :func:`laion_ood_setup`.
        train_idx: ``(m,)`` row indices into ``features``.
        train_features: ``(m, d)`` raw features instead of ``train_idx``.
        held_out_groups: indices into ``setup.groups`` (default: all).
        n_test: test images per group (seed: 1000).
        alphas: RidgeCV alphas (seed: sklearn's default 0.1, 1, 10).
        seed: seeds the test draw and the fMRI noise.

    Returns:
        One dict per held-out group: ``held_out_group``, ``group_size`` (clusters),
        ``n_train``, ``n_test``, ``accuracy``, ``ridge_alpha`` (NaN accuracy and alpha when no
        training image is left).
    """
    features = validate.matrix("features", features)
    if len(features) != len(setup.labels):
        raise ValueError(f"features: expected the {len(setup.labels)} rows setup was built on, got {len(features)}")
    validate.same_dim("features", features, "the setup", setup.centroids.shape[1])
    if (train_idx is None) == (train_features is None):
        raise ValueError("train_idx: pass exactly one of train_idx and train_features")
    if train_idx is not None:
        train_idx = _index_array("train_idx", train_idx, len(features))
        if len(train_idx) == 0:
            raise ValueError("train_idx: expected at least one index")
        train_idx = np.sort(train_idx)
        y_train = np.asarray(features[train_idx], dtype=np.float64)
        train_labels = setup.labels[train_idx]
    else:
        train_features = validate.matrix("train_features", train_features)
        validate.same_dim("train_features", train_features, "the setup", setup.centroids.shape[1])
        y_train = np.asarray(train_features, dtype=np.float64)
        train_labels = setup.assign(train_features)
    groups = _group_selection("held_out_groups", held_out_groups, len(setup.groups))
    n_test = validate.int_at_least("n_test", n_test, 1)
    alphas = _alphas(alphas)
    seed = validate.int_at_least("seed", seed, 0)

    x_train = _fmri(setup, y_train, np.random.default_rng((seed, 5)))
    by_cluster = _rows_by_cluster(setup.labels, len(setup.centroids))
    out = []
    for g in groups:
        clusters = setup.groups[g]
        test = _stratified_test(by_cluster, clusters, n_test, np.random.default_rng((seed, 3, g)))
        y_test = np.asarray(features[test], dtype=np.float64)
        x_test = _fmri(setup, y_test, np.random.default_rng((seed, 4, g)))
        keep = ~np.isin(train_labels, clusters)
        out.append(
            _score(setup, x_train[keep], y_train[keep], x_test, setup.labels[test], clusters, alphas)
            | {"held_out_group": g, "group_size": len(clusters)}
        )
    return [_ordered(r) for r in out]


def laion_identification(
    features,
    n_clusters: int = N_CLUSTERS,
    per_cluster: int = PER_CLUSTER,
    n_groups: int = N_GROUPS,
    n_train: int = N_TRAIN,
    noise_sd: float = NOISE_SD,
    seed: int = 0,
    *,
    n_test: int = N_TEST,
    min_group_size: int = MIN_GROUP_SIZE,
    group_counts: Iterable[int] | None = None,
    max_combinations: int | None = None,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    setup: LaionOODSetup | None = None,
    log_every_s: float = 30.0,
) -> list[dict]:
    """The seed's "How much of LAION can be predicted?": OOD identification of each held-out
    Ward group from training sets drawn from combinations of the other groups.

    Args:
        features: ``(n, d)`` raw CLIP image features (LAION-natural in the seed).
        n_clusters: k-means k (seed: 1000).
        per_cluster: pool images per cluster, drawn with replacement (seed: 500).
        n_groups: Ward groups (seed: 6).
        n_train: training images per condition, balanced over the training clusters (seed: 6000).
        noise_sd: fMRI noise standard deviation (seed: 1).
        seed: seeds every draw.
        n_test: test images per held-out group (seed: 1000).
        min_group_size: smaller Ward groups are dropped (seed: 3).
        group_counts: numbers of other groups to train on (default: 1 .. groups - 1, as the
            seed).
        max_combinations: at most this many (seeded, random) combinations of other groups per
            held-out group and count (default: every combination, as the seed: 31 per group
            with 6 groups).
        alphas: RidgeCV alphas (seed: 0.1, 1, 10).
        setup: a :class:`LaionOODSetup` built on ``features`` to reuse (then ``n_clusters``,
            ``n_groups``, ``noise_sd`` and ``min_group_size`` are the setup's).
        log_every_s: seconds between progress lines (fits done, rate, ETA).

    Returns:
        One dict per (held-out group, combination): ``held_out_group``, ``group_size``,
        ``n_other_groups``, ``other_groups`` (tuple of group indices), ``n_train``, ``n_test``,
        ``accuracy``, ``normalised_accuracy`` (divided by the maximum accuracy of the same
        held-out group), ``ridge_alpha``.

    Memory: the pool's simulated fMRI is held as float32, ``k * per_cluster * d * 4`` bytes
    (1 GiB at the seed's 1000 x 500 x 512).
    """
    features = validate.matrix("features", features, min_rows=2)
    per_cluster = validate.int_at_least("per_cluster", per_cluster, 1)
    n_train = validate.int_at_least("n_train", n_train, 2)
    n_test = validate.int_at_least("n_test", n_test, 1)
    seed = validate.int_at_least("seed", seed, 0)
    alphas = _alphas(alphas)
    if max_combinations is not None:
        max_combinations = validate.int_at_least("max_combinations", max_combinations, 1)
    if setup is None:
        setup = laion_ood_setup(features, n_clusters, n_groups, noise_sd, seed, min_group_size=min_group_size)
    elif len(setup.labels) != len(features):
        raise ValueError(f"setup: built on {len(setup.labels)} rows, features has {len(features)}")
    n_g = len(setup.groups)
    if group_counts is None:
        counts = list(range(1, n_g))
    else:
        counts = validate.int_list("group_counts", group_counts, 1)
    for c in counts:
        if c > n_g - 1:
            raise ValueError(f"group_counts: {c} other groups requested, only {n_g - 1} exist")

    # Step 2: the pool, per_cluster rows per cluster with replacement, its fMRI simulated once.
    k = len(setup.centroids)
    rng = np.random.default_rng((seed, 10))
    by_cluster = _rows_by_cluster(setup.labels, k)
    pool_rows = np.concatenate([rng.choice(r, per_cluster) for r in by_cluster if len(r)]).astype(np.int64)
    pool_labels = setup.labels[pool_rows]
    pool_by_cluster = _rows_by_cluster(pool_labels, k)
    pool_x = np.empty((len(pool_rows), features.shape[1]), dtype=np.float32)
    noise_rng = np.random.default_rng((seed, 11))
    for start in range(0, len(pool_rows), BLOCK_ROWS):
        f = np.asarray(features[pool_rows[start : start + BLOCK_ROWS]], dtype=np.float64)
        pool_x[start : start + len(f)] = _fmri(setup, f, noise_rng)

    group_of_cluster = np.full(k, -1, dtype=np.int64)
    for g, clusters in enumerate(setup.groups):
        group_of_cluster[clusters] = g
    rows_out = []
    fits = n_g * sum(min(math.comb(n_g - 1, c), max_combinations or math.comb(n_g - 1, c)) for c in counts)
    progress = Progress(
        f"LAION OOD identification ({n_g} groups)", fits, log_every_s, log, unit="fits", quiet_below_s=log_every_s
    )
    for g, clusters in enumerate(setup.groups):
        test = _stratified_test(pool_by_cluster, clusters, n_test, np.random.default_rng((seed, 12, g)))
        x_test = pool_x[test].astype(np.float64)
        others = [h for h in range(n_g) if h != g]
        for c in counts:
            combos = list(itertools.combinations(others, c))
            if max_combinations is not None and len(combos) > max_combinations:
                pick_rng = np.random.default_rng((seed, 13, g, c))
                pick = pick_rng.choice(len(combos), max_combinations, replace=False)
                combos = [combos[i] for i in np.sort(pick)]
            for combo in combos:
                train_clusters = np.flatnonzero(np.isin(group_of_cluster, combo))
                train = _balanced_draw(
                    [pool_by_cluster[t] for t in train_clusters],
                    n_train,
                    np.random.default_rng((seed, 14, g, *combo)),
                )
                y_train = np.asarray(features[pool_rows[train]], dtype=np.float64)
                res = _score(
                    setup,
                    pool_x[train].astype(np.float64),
                    y_train,
                    x_test,
                    pool_labels[test],
                    clusters,
                    alphas,
                )
                rows_out.append(
                    res
                    | {
                        "held_out_group": g,
                        "group_size": len(clusters),
                        "n_other_groups": c,
                        "other_groups": tuple(int(h) for h in combo),
                    }
                )
                progress.update()
    progress.close()
    return [_ordered(r) for r in normalise_within_group(rows_out)]


def normalise_within_group(
    rows: Iterable[dict],
    key: str | Sequence[str] = "held_out_group",
    value: str = "accuracy",
    out: str = "normalised_accuracy",
) -> list[dict]:
    """Divide ``value`` by its maximum over the rows sharing ``key`` (the seed's "% of the
    within-group maximum"; for its dataset comparison pass ``key=("held_out_group",
    "size_class")``-style keys so the maximum is taken within a dataset size too).

    Returns new dicts with ``out`` added (NaN where the group maximum is 0 or NaN).
    """
    rows = [dict(r) for r in rows]
    keys = (key,) if isinstance(key, str) else tuple(key)
    for i, r in enumerate(rows):
        for k in (*keys, value):
            if k not in r:
                raise ValueError(f"rows: row {i} has no {k!r} field")
    best: dict = {}
    for r in rows:
        gk = tuple(r[k] for k in keys)
        v = float(r[value])
        if not np.isnan(v):
            best[gk] = max(best.get(gk, -np.inf), v)
    for r in rows:
        m = best.get(tuple(r[k] for k in keys), np.nan)
        r[out] = float(r[value]) / m if np.isfinite(m) and m > 0 else float("nan")
    return rows


# --- internals -------------------------------------------------------------------------------


def _score(setup, x_train, y_train, x_test, test_labels, clusters, alphas) -> dict:
    """RidgeCV fMRI -> raw features, then :func:`identification_accuracy` on the test set."""
    from sklearn.linear_model import RidgeCV

    base = {"n_train": int(len(x_train)), "n_test": int(len(x_test))}
    if len(x_train) < 2 or len(x_test) == 0:
        return base | {"accuracy": float("nan"), "ridge_alpha": float("nan")}
    model = RidgeCV(alphas=alphas).fit(x_train, y_train)
    acc = identification_accuracy(setup, model.predict(x_test), test_labels, clusters)
    return base | {"accuracy": acc, "ridge_alpha": float(model.alpha_)}


def _assign(x, mean, scale, centroids) -> np.ndarray:
    """Exact nearest standardised centroid, ``BLOCK_ROWS`` rows of ``x`` at a time."""
    from laionlab.cluster import assign

    labels = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), BLOCK_ROWS):
        block = (np.asarray(x[start : start + BLOCK_ROWS], dtype=np.float64) - mean) / scale
        labels[start : start + len(block)] = assign(block.astype(np.float32), centroids)[0]
    return labels


def _fmri(setup: LaionOODSetup, f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.asarray(f, dtype=np.float64) @ setup.teacher
    if setup.noise_sd > 0:
        x += setup.noise_sd * rng.standard_normal(x.shape)
    return x


def _rows_by_cluster(labels: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(k)]


def _stratified_test(by_cluster, clusters, n_test, rng) -> np.ndarray:
    """``max(1, n_test // len(clusters))`` rows per cluster, without replacement."""
    each = max(1, n_test // len(clusters))
    parts = [
        rng.choice(by_cluster[c], min(each, len(by_cluster[c])), replace=False) for c in clusters if len(by_cluster[c])
    ]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def _balanced_draw(per_cluster_rows: list[np.ndarray], n: int, rng) -> np.ndarray:
    """``n`` rows spread as evenly as the clusters allow (water-filling), without
    replacement; fewer when the clusters hold fewer than ``n`` rows in total."""
    cap = np.array([len(r) for r in per_cluster_rows], dtype=np.int64)
    take = np.zeros_like(cap)
    left = min(n, int(cap.sum()))
    while left > 0:
        open_ = np.flatnonzero(take < cap)
        share = left // len(open_)
        if share == 0:
            take[rng.choice(open_, left, replace=False)] += 1
            break
        add = np.minimum(share, cap[open_] - take[open_])
        take[open_] += add
        left -= int(add.sum())
    parts = [rng.choice(r, t, replace=False) for r, t in zip(per_cluster_rows, take) if t]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def _sample_rows(n: int, limit: int, rng) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, limit, replace=False))


def _index_array(name: str, idx, n: int) -> np.ndarray:
    a = np.asarray(idx)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ValueError(f"{name}: expected a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"{name}: indices must lie in [0, {n}), got range [{a.min()}, {a.max()}]")
    return a


def _group_selection(name: str, groups, n_groups: int) -> list[int]:
    if groups is None:
        return list(range(n_groups))
    sel = validate.int_list(name, groups, 0)
    for g in sel:
        if g >= n_groups:
            raise ValueError(f"{name}: group {g} does not exist (setup has {n_groups} groups)")
    return sel


def _alphas(alphas) -> tuple[float, ...]:
    return tuple(validate.real_list("alphas", alphas, lo=0.0, lo_open=True))


_FIELD_ORDER = (
    "held_out_group",
    "group_size",
    "n_other_groups",
    "other_groups",
    "n_train",
    "n_test",
    "accuracy",
    "normalised_accuracy",
    "ridge_alpha",
)


def _ordered(row: dict) -> dict:
    return {k: row[k] for k in _FIELD_ORDER if k in row} | {k: v for k, v in row.items() if k not in _FIELD_ORDER}
