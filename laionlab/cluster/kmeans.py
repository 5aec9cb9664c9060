"""The one k-means wrapper of laionlab (faiss; faiss-cpu by default, faiss-gpu on GPU hosts).

Serves two seeds:

* Seed 000 (How to sample the world, ``experiments/coverage/cluster_laion.py``): the
  LAION-natural clusters, ``MiniBatchKMeans(n_clusters=5443, batch_size=16385,
  random_state=42)`` fit on the **raw** (unscaled) CLIP image features of 10M LAION-natural
  images. Here: ``kmeans(X, k=5443, seed=42)``. This is full-batch Lloyd on a seeded subsample
  of ``max_points_per_centroid * k`` points (1.39M for k=5,443 at the default 256), not
  mini-batch k-means, so the centres match the seed's in distribution, not bit for bit.
  The other k-means of that repository (k=1000 on StandardScaled features, k=100, k=80, ...)
  go through the same function.
* Seed 004 (CLIP train-test similarity, ``src/deduplication/assign_clusters.py``): 50,000
  clusters over LAION CLIP embeddings for deduplication, the initial centres drawn from the
  data and any centre whose cosine similarity to an earlier one exceeds 0.9 redrawn. Here:
  ``kmeans(X, k=50_000, redraw_duplicate_cosine=0.9)``; the draw itself is
  :func:`draw_distinct_centres`.

Inputs are ``(n, d)`` arrays of any float dtype, memory-mapped ``.npy`` files included: rows
are read block by block, and only the training sample is ever copied to float32.

faiss trains in one call with no progress of its own, so :func:`kmeans` logs its phases
(finiteness scan, subsample, training, assignment) with sizes and timings, and the blocked
assignment and the distinct-centre draw log progress lines (``laionlab.progress``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

from laionlab import validate
from laionlab.progress import Progress, format_duration, phase

__all__ = ["KMeansResult", "assign", "draw_distinct_centres", "kmeans", "proportional_quota", "sample_across_parts"]

log = logging.getLogger(__name__)

InitKind = Literal["random", "kmeans++"]
GpuChoice = Literal["auto"] | bool

# Rows per block for the finiteness scan and the final assignment: 65,536 x 768 float32
# rows is 192 MiB, small next to the data but large enough for BLAS.
DEFAULT_BLOCK_ROWS = 65_536
# Candidates compared with each other at once when drawing distinct centres: a
# (block, block) float32 Gram matrix of 64 MiB.
DRAW_BLOCK = 4_096
# Distinct-centre draws allowed per requested centre before giving up (see
# draw_distinct_centres).
DEFAULT_DRAWS_PER_CENTRE = 20
# k-means phases are logged at INFO when training does at least this many multiply-adds
# (n_train * k * d * n_iter: about a second of BLAS on one CPU core), else at DEBUG, so the
# many small k-means of a sweep (laionlab.ood) do not flood the run's log.
PHASE_INFO_WORK = 1e11


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of :func:`kmeans`.

    Attributes:
        centroids: ``(k, d)`` float32 cluster centres (unit norm when ``spherical``).
        inertia: sum over **all** rows of ``X`` (not only the training sample) of the squared
            L2 distance to the assigned centroid, as in ``sklearn.cluster.KMeans.inertia_``.
        sizes: ``(k,)`` int64 number of rows of ``X`` assigned to each centroid.
        labels: ``(n,)`` int64 centroid index of each row of ``X``.
        n_iter: Lloyd iterations faiss ran: at most the ``n_iter`` asked for, fewer when the
            objective stopped changing (faiss stops there, as sklearn does at ``tol=0``).
        n_train: rows faiss trained on (``min(n, max_points_per_centroid * k)``).
        seed: the seed used (initialisation and subsampling).
        backend: ``"faiss-cpu"``, ``"faiss-gpu"`` or ``"torch-<device>"``.
    """

    centroids: np.ndarray
    inertia: float
    sizes: np.ndarray
    labels: np.ndarray
    n_iter: int
    n_train: int
    seed: int
    backend: str


def kmeans(
    X: np.ndarray,
    k: int,
    n_iter: int = 25,
    seed: int = 0,
    spherical: bool = False,
    init: InitKind | np.ndarray = "random",
    max_points_per_centroid: int | None = 256,
    redraw_duplicate_cosine: float | None = None,
    gpu: GpuChoice = "auto",
    verbose: bool = False,
    log_every_s: float = 30.0,
    torch_device: str | None = None,
) -> KMeansResult:
    """Lloyd k-means with faiss, then an exact assignment of every row of ``X``.

    Args:
        X: ``(n, d)`` features, any float dtype, finite. Seed 000 clusters raw CLIP image
            features (not normalised, not scaled); seed 004 clusters CLIP embeddings.
        k: number of clusters, ``1 <= k <= n``. Seed 000: 5,443 (LAION-natural); seed 004:
            50,000 (deduplication).
        n_iter: maximum Lloyd iterations (faiss default 25). Seed 000 used sklearn's
            MiniBatchKMeans defaults (``max_iter=100`` passes with early stopping).
        seed: seeds the initialisation and the subsample. Seed 000: ``random_state=42``.
        spherical: normalise the centroids after each update and assign by inner product
            (cosine k-means when ``X`` is L2-normalised).
        init: ``"random"`` (k distinct rows of the training sample, faiss's default),
            ``"kmeans++"`` (D²-weighted seeding on the training sample; faiss's own when the
            installed faiss has it, else ``sklearn.cluster.kmeans_plusplus``), or a
            ``(k, d)`` array of initial centroids (e.g. to compare with sklearn from the same
            start).
        max_points_per_centroid: faiss trains on at most ``max_points_per_centroid * k``
            rows, a seeded uniform subsample (faiss default 256: for seed 000's k=5,443 that
            is 1.39M of the 10M rows). ``None`` trains on all rows. The returned ``labels``,
            ``sizes`` and ``inertia`` always cover all of ``X``.
        redraw_duplicate_cosine: seed 004's initialisation (0.9 there): the initial centres
            are rows of ``X`` drawn at random, and a centre whose cosine similarity to an
            earlier centre exceeds this threshold is redrawn (see
            :func:`draw_distinct_centres`). Only with ``init="random"``.
        gpu: ``"auto"`` uses every GPU faiss sees (faiss-gpu builds), else torch on CUDA
            when torch sees a GPU (``laionlab.cluster.torch_kmeans``: a CUDA 13 host has no
            faiss-gpu), else faiss on the CPU; ``True`` requires a GPU; ``False`` forces
            faiss on the CPU.
        verbose: let faiss print its per-iteration log.
        log_every_s: seconds between progress lines of the assignment and the distinct-centre
            draw (``laionlab`` logger); the phases are logged as they start and end.
        torch_device: run the iterations and the assignment with torch on this device
            (``"cuda:1"``, or ``"cpu"`` to compare with faiss); overrides ``gpu``.

    Returns:
        :class:`KMeansResult`.

    Raises:
        ValueError: naming the argument, for a non-2D or non-finite ``X``, ``k < 1``,
            ``k`` larger than the sample, a bad ``init`` shape, an impossible redraw, ...
    """
    X = validate.matrix("X", X, finite=False, wording="must")  # scanned after the cheap checks
    n, d = X.shape
    k = validate.int_at_least("k", k, 1, wording="must")
    if k > n:
        raise ValueError(f"k={k} is larger than the sample: X has {n} rows")
    n_iter = validate.int_at_least("n_iter", n_iter, 1, wording="must")
    if max_points_per_centroid is not None:
        max_points_per_centroid = validate.int_at_least(
            "max_points_per_centroid", max_points_per_centroid, 1, wording="must"
        )
    backend, torch_device = _backend(gpu, torch_device)
    use_gpu = backend == "faiss-gpu"
    n_train = n if max_points_per_centroid is None else min(n, max_points_per_centroid * k)
    level = logging.INFO if float(n_train) * k * d * n_iter >= PHASE_INFO_WORK else logging.DEBUG
    start = time.perf_counter()
    log.log(
        level,
        f"k-means: k={k:,} on X ({n:,}, {d}), training on {n_train:,} rows, at most {n_iter} iterations, {backend}",
    )
    with phase(f"k-means: checking {n:,} rows for NaN/inf", log, level):
        validate.all_finite("X", X, wording="must")

    init_centroids: np.ndarray | None = None
    if isinstance(init, np.ndarray) or not isinstance(init, str):
        init_centroids = validate.matrix("init", init, finite=False, wording="must")
        if init_centroids.shape != (k, d):
            raise ValueError(f"init must have shape (k, d) = ({k}, {d}), got {init_centroids.shape}")
        validate.all_finite("init", init_centroids, wording="must")
        init_centroids = np.ascontiguousarray(init_centroids, dtype=np.float32)
    elif init not in ("random", "kmeans++"):
        raise ValueError(f"init must be 'random', 'kmeans++' or a (k, d) array, got {init!r}")

    if redraw_duplicate_cosine is not None:
        if init_centroids is not None or init != "random":
            raise ValueError(
                "redraw_duplicate_cosine defines the initialisation (random rows of X); "
                f"it cannot be combined with init={init if isinstance(init, str) else 'array'!r}"
            )
        rows = draw_distinct_centres(X, k, redraw_duplicate_cosine, seed=seed, log_every_s=log_every_s)
        init_centroids = np.ascontiguousarray(X[rows], dtype=np.float32)

    # Subsample here rather than in faiss: same rule (uniform, seeded, max_points_per_centroid
    # * k rows), but only the sample is copied to float32, so a memory-mapped float16 X of
    # 10M rows never lands in memory whole.
    if n_train < n:
        with phase(f"k-means: copying a sample of {n_train:,} of {n:,} rows", log, level):
            rows = np.sort(np.random.default_rng((seed, 1)).choice(n, n_train, replace=False))
            X_train = np.ascontiguousarray(X[rows], dtype=np.float32)
    else:
        X_train = np.ascontiguousarray(X, dtype=np.float32)

    params: dict = dict(
        niter=n_iter,
        seed=seed,
        spherical=spherical,
        verbose=verbose,
        # Already subsampled above; stop faiss from sampling again.
        max_points_per_centroid=max(1, -(-n_train // k)),
    )
    if backend == "torch":
        return _torch_kmeans(X, X_train, k, n_iter, seed, spherical, init, init_centroids, torch_device, level, start)
    if init_centroids is None and init == "kmeans++":
        if hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):
            params["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        else:  # faiss < 1.15 has no k-means++ of its own
            from sklearn.cluster import kmeans_plusplus

            init_centroids = np.ascontiguousarray(kmeans_plusplus(X_train, k, random_state=seed)[0], dtype=np.float32)
    if use_gpu:
        params["gpu"] = True
    km = faiss.Kmeans(d, k, **params)
    with phase(f"k-means: faiss training k={k:,} on ({n_train:,}, {d})", log, level):
        km.train(X_train, init_centroids=init_centroids)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    n_done = len(km.iteration_stats or [])
    del X_train, km

    labels, _, inertia = _nearest(
        X,
        centroids,
        "ip" if spherical else "l2",
        DEFAULT_BLOCK_ROWS,
        use_gpu,
        want_inertia=True,
        check_finite=False,
        log_every_s=log_every_s,
        what="k-means assignment",
    )
    return _result(centroids, labels, inertia, n_done, n_train, seed, backend, level, start)


def _result(centroids, labels, inertia, n_done, n_train, seed, backend, level, start) -> KMeansResult:
    """The :class:`KMeansResult` of a finished run, its last phase logged."""
    sizes = np.bincount(labels, minlength=len(centroids)).astype(np.int64)
    log.log(
        level,
        f"k-means: done in {format_duration(time.perf_counter() - start)}: {n_done} iterations, "
        f"inertia {inertia:.6g}, {int((sizes == 0).sum())} empty clusters",
    )
    return KMeansResult(
        centroids=np.ascontiguousarray(centroids, dtype=np.float32),
        inertia=float(inertia),
        sizes=sizes,
        labels=labels,
        n_iter=n_done,
        n_train=n_train,
        seed=seed,
        backend=backend,
    )


def assign(
    X: np.ndarray,
    centroids: np.ndarray,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    metric: Literal["l2", "ip"] = "l2",
    gpu: GpuChoice = False,
    log_every_s: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest centroid of each row of ``X``, ``block_rows`` rows at a time.

    Args:
        X: ``(n, d)`` features, any float dtype, finite (may be memory-mapped).
        centroids: ``(k, d)`` centres, e.g. ``KMeansResult.centroids``.
        block_rows: rows of ``X`` converted to float32 and searched at once.
        metric: ``"l2"`` (faiss ``IndexFlatL2``: nearest in Euclidean distance) or ``"ip"``
            (``IndexFlatIP``: largest inner product, i.e. cosine for unit-norm inputs).
        gpu: as in :func:`kmeans`; off by default since the search is one pass over ``X``.
        log_every_s: seconds between progress lines (rows assigned, rate, ETA).

    Returns:
        ``labels``: ``(n,)`` int64 centroid index; ``distances``: ``(n,)`` float32, the
        **squared** L2 distance for ``"l2"``, the inner product for ``"ip"``.
    """
    X = validate.matrix("X", X, finite=False, wording="must")  # scanned block by block in _nearest
    centroids = validate.matrix("centroids", centroids, finite=False, wording="must")
    validate.same_dim("centroids", centroids, "X", X)
    validate.all_finite("centroids", centroids, wording="must")
    block_rows = validate.int_at_least("block_rows", block_rows, 1, wording="must")
    if metric not in ("l2", "ip"):
        raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
    labels, scores, _ = _nearest(
        X,
        centroids,
        metric,
        block_rows,
        _resolve_gpu(gpu),
        want_inertia=False,
        log_every_s=log_every_s,
        what="nearest-centroid assignment",
    )
    return labels, scores


def proportional_quota(sizes, n: int) -> np.ndarray:
    """``n`` split over groups of ``sizes`` rows in proportion to their sizes, by largest
    remainders (ties to the earlier group): int64 quotas summing to ``n``, each at most its
    group's size. ``n`` must be below ``sizes.sum()`` (callers take everything otherwise)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n < total:
        raise ValueError(f"n: expected 0 <= n < {total} (the rows of all groups), got {n}")
    exact = sizes * n / total
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[: n - int(quota.sum())]] += 1
    return quota


def sample_across_parts(part_rows, sample_size: int, seed: int = 0) -> list[np.ndarray]:
    """Which rows of each part go into a k-means training sample of ``sample_size`` rows,
    drawn part by part so a table too big for memory never has to be read whole.

    The sample is uniform in the sense that each part contributes in proportion to its size:
    ``sample_size * part_rows[i] / sum(part_rows)`` rows, rounded by largest remainders (ties
    to the earlier part) so the quotas add up to exactly ``min(sample_size, total)``. Part
    ``i``'s rows are then drawn without replacement by ``np.random.default_rng([seed, i])``,
    so a part's draw depends only on the seed, its index, its size and its quota.

    Args:
        part_rows: ``(p,)`` non-negative row counts of the parts, in a fixed order.
        sample_size: rows wanted in all, ``>= 1``; all rows when the parts hold fewer.
        seed: seeds every part's draw.

    Returns:
        per part, ascending int64 row numbers in ``[0, part_rows[i])`` (all of them when the
        quota is the whole part, none for a part with quota 0).
    """
    sizes = np.asarray(part_rows)
    if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 0).any():
        raise ValueError(f"part_rows: expected a non-empty 1-D array of row counts >= 0, got {part_rows!r}")
    sample_size = validate.int_at_least("sample_size", sample_size, 1)
    seed = validate.int_at_least("seed", seed, 0)
    sizes = sizes.astype(np.int64)
    total = int(sizes.sum())
    if sample_size >= total:
        return [np.arange(n, dtype=np.int64) for n in sizes]
    quota = proportional_quota(sizes, sample_size)
    return [
        np.arange(n, dtype=np.int64)
        if q == n
        else np.sort(np.random.default_rng([seed, i]).choice(n, size=q, replace=False)).astype(np.int64)
        for i, (n, q) in enumerate(zip(sizes.tolist(), quota.tolist()))
    ]


def draw_distinct_centres(
    X: np.ndarray,
    k: int,
    max_cosine: float,
    seed: int = 0,
    max_draws: int | None = None,
    log_every_s: float = 30.0,
) -> np.ndarray:
    """Indices of ``k`` rows of ``X`` with no pair's cosine similarity above ``max_cosine``.

    Seed 004's initialisation of its 50,000-cluster k-means (``max_cosine=0.9``): centres are
    drawn uniformly without replacement; a draw whose cosine similarity to an earlier
    accepted centre exceeds ``max_cosine`` is rejected and another row drawn in its place.
    Draws are processed in blocks (compared with the accepted centres through a faiss
    inner-product index, and with each other in draw order), which gives the same accepted
    set as checking them one by one. Rows of zero norm have no cosine and are never chosen.

    Args:
        X: ``(n, d)`` features, finite.
        k: centres wanted, ``1 <= k <= n``.
        max_cosine: threshold in ``(0, 1]``; 0.9 in seed 004.
        seed: seeds the draw order.
        max_draws: rows examined before giving up; default ``min(n, 20 * k)``.
        log_every_s: seconds between progress lines (centres accepted, rate, ETA).

    Returns:
        ``(k,)`` int64 row indices, in acceptance order.

    Raises:
        ValueError: if ``k`` distinct centres are not found within ``max_draws`` draws
            (the data has fewer than ``k`` sufficiently different rows, or the bound is low).
    """
    X = validate.matrix("X", X, finite=False, wording="must")
    n, d = X.shape
    k = validate.int_at_least("k", k, 1, wording="must")
    if k > n:
        raise ValueError(f"k={k} is larger than the sample: X has {n} rows")
    max_cosine = validate.real("redraw_duplicate_cosine", max_cosine, lo=0.0, hi=1.0, lo_open=True)
    if max_draws is None:
        max_draws = min(n, DEFAULT_DRAWS_PER_CENTRE * k)
    max_draws = min(n, validate.int_at_least("max_draws", max_draws, 1, wording="must"))

    order = np.random.default_rng((seed, 0)).choice(n, max_draws, replace=False)
    index = faiss.IndexFlatIP(d)
    chosen: list[np.ndarray] = []
    n_chosen = 0
    pos = 0
    progress = Progress(
        "k-means init: distinct centres", k, log_every_s, log, unit="centres", quiet_below_s=log_every_s
    )
    while n_chosen < k and pos < max_draws:
        need = k - n_chosen
        take = min(max(need, 256), DRAW_BLOCK, max_draws - pos)
        cand = order[pos : pos + take]
        pos += take
        # Gather in sorted order (memory-mapped friendly), then restore draw order.
        srt = np.argsort(cand, kind="stable")
        V = np.empty((take, d), dtype=np.float32)
        V[srt] = np.asarray(X[cand[srt]], dtype=np.float32)
        norms = np.linalg.norm(V, axis=1)
        keep = norms > 0
        V /= np.where(keep, norms, 1.0)[:, None]
        if index.ntotal:
            sims, _ = index.search(V, 1)
            keep &= sims[:, 0] <= max_cosine
        G = V @ V.T
        for j in range(take):
            if keep[j]:
                keep[j + 1 :] &= G[j, j + 1 :] <= max_cosine
        accepted = np.flatnonzero(keep)[:need]
        if accepted.size:
            index.add(V[accepted])
            chosen.append(cand[accepted])
            n_chosen += accepted.size
            progress.update(accepted.size)
    progress.close()
    if n_chosen < k:
        raise ValueError(
            f"redraw_duplicate_cosine={max_cosine}: found only {n_chosen} of k={k} initial "
            f"centres with pairwise cosine <= {max_cosine} in {pos} draws from {n} rows; "
            "lower k, raise the threshold, deduplicate X first, or allow more draws"
        )
    return np.concatenate(chosen).astype(np.int64)


# --- helpers -------------------------------------------------------------------------------


def _nearest(
    X: np.ndarray,
    centroids: np.ndarray,
    metric: str,
    block_rows: int,
    use_gpu: bool,
    want_inertia: bool,
    check_finite: bool = True,
    log_every_s: float = 30.0,
    what: str = "nearest-centroid assignment",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Blocked exact search; checks each block of X for NaN/inf on the way unless told not,
    and logs ``what``'s progress every ``log_every_s`` seconds."""
    C = np.ascontiguousarray(centroids, dtype=np.float32)
    d = C.shape[1]
    index: faiss.Index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(C)
    c_sq = np.einsum("ij,ij->i", C, C, dtype=np.float64) if metric == "ip" else None
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float32)
    inertia = 0.0
    progress = Progress(what, n, log_every_s, log, quiet_below_s=log_every_s)
    for start in range(0, n, block_rows):
        B = np.ascontiguousarray(X[start : start + block_rows], dtype=np.float32)
        if check_finite and not np.isfinite(B).all():
            raise ValueError(f"X contains NaN or inf (in rows {start}..{start + len(B) - 1})")
        D, I = index.search(B, 1)
        labels[start : start + len(B)] = I[:, 0]
        scores[start : start + len(B)] = D[:, 0]
        if want_inertia:
            if metric == "l2":
                inertia += float(np.maximum(D[:, 0], 0).sum(dtype=np.float64))
            else:  # ||x - c||^2 = ||x||^2 + ||c||^2 - 2 <x, c>
                x_sq = np.einsum("ij,ij->i", B, B, dtype=np.float64)
                sq = x_sq + c_sq[I[:, 0]] - 2.0 * D[:, 0].astype(np.float64)
                inertia += float(np.maximum(sq, 0).sum())
        progress.update(len(B))
    progress.close()
    return labels, scores, inertia


def _torch_kmeans(X, X_train, k, n_iter, seed, spherical, init, init_centroids, device, level, start) -> KMeansResult:
    """:func:`kmeans` from the training sample on, with laionlab.cluster.torch_kmeans."""
    from laionlab.cluster.torch_kmeans import torch_lloyd, torch_nearest

    n_train = X_train.shape[0]
    if init_centroids is None and init == "kmeans++":
        from sklearn.cluster import kmeans_plusplus

        init_centroids = kmeans_plusplus(X_train, k, random_state=seed)[0]
    elif init_centroids is None:  # faiss's "random": k distinct rows of the training sample
        init_centroids = X_train[np.sort(np.random.default_rng(seed).choice(n_train, k, replace=False))]
    with phase(f"k-means: torch training k={k:,} on ({n_train:,}, {X_train.shape[1]}) on {device}", log, level):
        centroids, n_done = torch_lloyd(X_train, init_centroids, n_iter, spherical=spherical, device=device, seed=seed)
    del X_train
    with phase(f"k-means: assigning {X.shape[0]:,} rows on {device}", log, level):
        labels, _, inertia = torch_nearest(X, centroids, "ip" if spherical else "l2", device=device)
    return _result(centroids, labels, inertia, n_done, n_train, seed, f"torch-{device}", level, start)


def _backend(gpu, torch_device: str | None) -> tuple[str, str | None]:
    """("faiss-gpu" | "faiss-cpu" | "torch", torch device) for :func:`kmeans`'s ``gpu``."""
    if torch_device is not None:
        if not isinstance(torch_device, str) or not torch_device:
            raise ValueError(f"torch_device must be a torch device string such as 'cuda', got {torch_device!r}")
        return "torch", torch_device
    if gpu is False:
        return "faiss-cpu", None
    if _resolve_gpu("auto" if gpu is True else gpu):  # refuses anything but "auto" / True / False
        return "faiss-gpu", None
    if "torch" not in sys.modules and not _nvidia_driver():
        return ("faiss-cpu", None) if gpu == "auto" else _no_gpu()  # no NVIDIA driver: skip importing torch
    import torch

    if torch.cuda.is_available():
        return "torch", "cuda"
    return ("faiss-cpu", None) if gpu == "auto" else _no_gpu()


def _nvidia_driver() -> bool:
    return os.path.exists("/dev/nvidiactl")


def _no_gpu():
    raise ValueError("gpu=True but neither faiss nor torch sees a GPU (use gpu='auto' or False)")


def _resolve_gpu(gpu) -> bool:
    has_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    if gpu == "auto":
        return has_gpu
    if gpu is True:
        if not has_gpu:
            raise ValueError("gpu=True but faiss sees no GPU (install faiss-gpu, or use gpu='auto')")
        return True
    if gpu is False:
        return False
    raise ValueError(f"gpu must be 'auto', True or False, got {gpu!r}")
