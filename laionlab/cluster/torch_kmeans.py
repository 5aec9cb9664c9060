"""Lloyd k-means and exact nearest-centroid search in torch, for GPU hosts without faiss-gpu.

The only faiss-gpu wheel needs CUDA 12's cuBLAS; a CUDA 13 host has torch but no faiss-gpu,
and seed 004's 50,000 centroids (and seed 000's 5,443) would then train on the CPU. This
module runs the same algorithm as ``faiss.Kmeans`` on any torch device:

* assignment: nearest centroid in squared L2 (``||x||² - 2x·c + ||c||²``), or the largest
  inner product when ``spherical``, computed in blocks of rows on the device;
* update: each centroid the mean of its rows, L2-normalised when ``spherical``;
* empty clusters: faiss's ``split_clusters`` — an empty centroid copies one drawn with
  probability ``(size - 1) / (n - k)``, the two are pushed apart by ``1 ± 1/1024`` on
  alternate coordinates, and the rows are shared half and half;
* stop: after ``n_iter`` iterations, or earlier when the objective no longer changes
  (faiss's ``ClusteringIterationStats`` stop rule).

Initial centroids come from the caller (``laionlab.cluster.kmeans`` draws them as for faiss).
torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["torch_lloyd", "torch_nearest"]

# faiss Clustering.cpp: EPS used to separate a split centroid from its source.
SPLIT_EPS = 1.0 / 1024.0
# Rows per block of an assignment on the device: 65,536 x 50,000 float32 scores is 12.5 GiB,
# so blocks shrink with k to keep the score matrix near 1 GiB.
SCORE_BYTES = 2**30


def _block_rows(k: int, block_rows: int) -> int:
    return max(1, min(block_rows, SCORE_BYTES // (4 * max(1, k))))


def _assign_block(x, C, c_sq, spherical: bool):
    """(labels, objective terms) of a block: squared distances, or inner products."""
    import torch

    scores = x @ C.T
    if spherical:
        best, labels = scores.max(dim=1)
        return labels, best
    d2 = (x * x).sum(dim=1, keepdim=True) - 2.0 * scores + c_sq[None, :]
    best, labels = d2.min(dim=1)
    return labels, torch.clamp(best, min=0.0)


def torch_lloyd(
    X: np.ndarray,
    init: np.ndarray,
    n_iter: int,
    *,
    spherical: bool = False,
    device: str = "cuda",
    seed: int = 0,
    block_rows: int = 65_536,
) -> tuple[np.ndarray, int]:
    """Lloyd iterations from ``init`` on ``X`` (the training sample), on ``device``.

    Args:
        X: ``(n, d)`` float32 training rows, finite, ``n >= k``.
        init: ``(k, d)`` initial centroids.
        n_iter: at most this many iterations (faiss's ``niter``).
        spherical: assign by inner product and normalise the centroids (cosine k-means).
        device: a torch device string (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
        seed: seeds which cluster an empty one splits.
        block_rows: rows assigned at once (shrunk for large ``k``).

    Returns:
        ``(centroids, iterations)``: ``(k, d)`` float32 on the host, iterations run.
    """
    import torch

    X = np.ascontiguousarray(X, dtype=np.float32)
    C0 = np.ascontiguousarray(init, dtype=np.float32)
    n, d = X.shape
    k = C0.shape[0]
    if C0.shape[1] != d:
        raise ValueError(f"init: dimension mismatch, X has d={d}, init has d={C0.shape[1]}")
    if k > n:
        raise ValueError(f"init: {k} centroids need at least {k} training rows, got {n}")
    dev = torch.device(device)
    xs = torch.from_numpy(X).to(dev)
    C = torch.from_numpy(C0).to(dev)
    rng = np.random.default_rng((seed, 2))
    step = _block_rows(k, block_rows)
    labels = torch.empty(n, dtype=torch.int64, device=dev)
    previous = None
    done = 0
    for _ in range(n_iter):
        c_sq = (C * C).sum(dim=1)
        objective = 0.0
        for start in range(0, n, step):
            lab, best = _assign_block(xs[start : start + step], C, c_sq, spherical)
            labels[start : start + step] = lab
            objective += float(best.sum(dtype=torch.float64))
        done += 1
        sums = torch.zeros((k, d), dtype=torch.float64, device=dev)
        for start in range(0, n, step):  # float64 sums, one block converted at a time
            sums.index_add_(0, labels[start : start + step], xs[start : start + step].to(torch.float64))
        sizes = torch.bincount(labels, minlength=k).to(torch.float64)
        C = (sums / sizes.clamp(min=1.0)[:, None]).to(torch.float32)
        C = _split_empty(C, sizes.cpu().numpy(), rng)
        if spherical:
            C = C / C.norm(dim=1, keepdim=True).clamp(min=1e-12)
        if previous is not None and objective == previous:
            break
        previous = objective
    return C.cpu().numpy(), done


def _split_empty(C, sizes: np.ndarray, rng: np.random.Generator):
    """faiss ``split_clusters``: every empty centroid copies a populated one drawn with
    probability ``(size - 1) / (n - k)`` and the two move apart by ``1 ± SPLIT_EPS``."""
    import torch

    empty = np.flatnonzero(sizes == 0)
    if len(empty) == 0:
        return C
    sizes = sizes.copy()
    C = C.clone()
    sign = torch.ones(C.shape[1], device=C.device)
    sign[1::2] = -1.0
    for ci in empty:
        weights = np.maximum(sizes - 1, 0)
        if weights.sum() <= 0:
            break
        cj = int(rng.choice(len(sizes), p=weights / weights.sum()))
        C[ci] = C[cj] * (1.0 + SPLIT_EPS * sign)
        C[cj] = C[cj] * (1.0 - SPLIT_EPS * sign)
        sizes[ci] = sizes[cj] // 2  # the next empty centroid draws with the halves
        sizes[cj] -= sizes[ci]
    return C


def torch_nearest(
    X: np.ndarray,
    centroids: np.ndarray,
    metric: str,
    *,
    device: str = "cuda",
    block_rows: int = 65_536,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact nearest centroid of every row of ``X`` (read and sent to ``device`` a block at a
    time): ``(labels, scores, inertia)`` as ``laionlab.cluster.kmeans.assign`` gives them
    (squared L2 distance, or inner product for ``metric="ip"``) and the sum of squared L2
    distances to the assigned centroids."""
    import torch

    dev = torch.device(device)
    C = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).to(dev)
    c_sq = (C * C).sum(dim=1)
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float32)
    inertia = 0.0
    step = _block_rows(C.shape[0], block_rows)
    for start in range(0, n, step):
        x = torch.from_numpy(np.ascontiguousarray(X[start : start + step], dtype=np.float32)).to(dev)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"X contains NaN or inf (in rows {start}..{start + len(x) - 1})")
        lab, best = _assign_block(x, C, c_sq, metric == "ip")
        d2 = best if metric != "ip" else torch.clamp((x * x).sum(dim=1) + c_sq[lab] - 2.0 * best, min=0.0)
        labels[start : start + len(x)] = lab.cpu().numpy()
        scores[start : start + len(x)] = best.cpu().numpy()
        inertia += float(d2.sum(dtype=torch.float64))
    return labels, scores, inertia
