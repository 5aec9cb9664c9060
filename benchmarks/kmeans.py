"""k-means speed: laionlab's faiss wrapper against scikit-learn's KMeans, same data, same start.

Headline: speed_ratio = sklearn seconds / faiss seconds, target >= 10 (the reason the project
clusters with faiss: seed 000 clusters 10M CLIP features into 5,443 clusters, seed 004 LAION
into 50,000).

Data: a seeded Gaussian mixture, ``--n`` x ``--d`` float32 (default 200,000 x 512, 2,000
components). Both sides start from the same ``--k`` rows of the data and run ``--iters``
Lloyd iterations (sklearn ``algorithm="lloyd"``, ``n_init=1``, ``tol=0``), in this process,
on every core. The faiss side is ``laionlab.cluster.kmeans`` with no subsampling
(``max_points_per_centroid=None``, so both see every row) and includes what the wrapper adds:
the NaN scan and the final exact assignment of every row; sklearn's ``fit`` also ends with
one. inertia_ratio = faiss inertia / sklearn inertia (1.0 = same solution quality).

``--torch-device cuda`` (with ``--gpu false``) also times the torch backend
(``laionlab.cluster.torch_kmeans``, what a GPU host without faiss-gpu uses) from the same start:
``torch_speedup`` = faiss seconds / torch seconds and ``torch_inertia_ratio`` = torch inertia /
faiss inertia go into the JSON line (the GPU issue's bar: >= 10x faiss-cpu at +-1% inertia).

Prints a summary, then exactly one JSON line on stdout as its last line; always exits 0.
Run from the repository root: ``python benchmarks/kmeans.py [--n 20000 --k 100 ...]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import run_benchmark, say  # noqa: E402

TARGET = 10.0


def make_mixture(n: int, d: int, components: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.0, size=(components, d)).astype(np.float32)
    X = rng.standard_normal(size=(n, d), dtype=np.float32)
    X *= 0.5
    X += centres[rng.integers(0, components, n)]
    return X


def run(args, result: dict) -> dict:
    if args.no_sklearn and not args.torch_device:
        raise ValueError("--no-sklearn needs --torch-device (there is nothing to compare faiss with)")
    import faiss
    import numpy as np
    import sklearn
    from sklearn.cluster import KMeans

    from laionlab.cluster import kmeans

    say(
        f"k-means benchmark: n={args.n} d={args.d} k={args.k} iters={args.iters} "
        f"cpus={os.cpu_count()} faiss {faiss.__version__} (GPUs: {faiss.get_num_gpus()}) "
        f"sklearn {sklearn.__version__}"
    )
    t = time.perf_counter()
    X = make_mixture(args.n, args.d, args.components, args.seed)
    init = X[np.random.default_rng(args.seed + 1).choice(args.n, args.k, replace=False)].copy()
    made_s = time.perf_counter() - t
    say(f"data: {X.shape} float32, {X.nbytes / 2**20:.0f} MiB, made in {made_s:.1f}s")

    t = time.perf_counter()
    ours = kmeans(X, args.k, n_iter=args.iters, init=init, max_points_per_centroid=None, gpu=args.gpu)
    faiss_s = time.perf_counter() - t
    say(f"faiss ({ours.backend}): {faiss_s:.2f}s, {ours.n_iter} iterations, inertia {ours.inertia:.6g}")

    ref = None
    if not args.no_sklearn:
        t = time.perf_counter()
        ref = KMeans(n_clusters=args.k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd").fit(X)
        sklearn_s = time.perf_counter() - t
        say(f"sklearn: {sklearn_s:.2f}s, {ref.n_iter_} iterations, inertia {ref.inertia_:.6g}")

    extra = {}
    if args.torch_device:
        t = time.perf_counter()
        torch_run = kmeans(
            X, args.k, n_iter=args.iters, init=init, max_points_per_centroid=None, torch_device=args.torch_device
        )
        torch_s = time.perf_counter() - t
        extra = {
            "torch_device": args.torch_device,
            "torch_s": round(torch_s, 3),
            "torch_speedup": round(faiss_s / torch_s, 3),
            "torch_inertia_ratio": round(torch_run.inertia / ours.inertia, 6),
        }
        say(f"torch ({torch_run.backend}): {torch_s:.2f}s, inertia {torch_run.inertia:.6g}; {extra}")

    if ref is None:  # --no-sklearn: the headline is torch against faiss-cpu (the GPU issue's bar)
        speedup, inertia = extra["torch_speedup"], extra["torch_inertia_ratio"]
        met = speedup >= TARGET and abs(inertia - 1) <= 0.01
        say(f"torch/faiss speedup {speedup:.2f}x, inertia ratio {inertia:.5f} (target >= {TARGET:g}x at +-1%)")
        return {
            "value": speedup,
            "meets_target": met,
            "n": args.n,
            "d": args.d,
            "k": args.k,
            "iters": args.iters,
            "faiss_s": round(faiss_s, 3),
            "backend": ours.backend,
            "cpus": os.cpu_count(),
            **extra,
        }
    ratio = sklearn_s / faiss_s
    inertia_ratio = ours.inertia / float(ref.inertia_)
    say(
        f"speed ratio sklearn/faiss = {ratio:.2f}x (target {TARGET:g}x: "
        f"{'met' if ratio >= TARGET else 'not met'}); inertia ratio faiss/sklearn = "
        f"{inertia_ratio:.5f}"
    )
    return {
        "value": round(ratio, 3),
        "meets_target": bool(ratio >= TARGET),
        "inertia_ratio": round(inertia_ratio, 6),
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "iters": args.iters,
        "faiss_iters": ours.n_iter,
        "sklearn_iters": int(ref.n_iter_),
        "faiss_s": round(faiss_s, 3),
        "sklearn_s": round(sklearn_s, 3),
        "backend": ours.backend,
        "cpus": os.cpu_count(),
        **extra,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="rows (default 200,000)")
    p.add_argument("--d", type=int, default=512, help="dimension (default 512)")
    p.add_argument("--k", type=int, default=1000, help="clusters (default 1,000)")
    p.add_argument("--iters", type=int, default=10, help="Lloyd iterations, both sides")
    p.add_argument("--components", type=int, default=2000, help="mixture components")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gpu",
        default="auto",
        type=lambda s: {"true": True, "false": False}.get(s.lower(), s),
        help="faiss side: auto (default), true or false",
    )
    p.add_argument("--torch-device", default=None, help="also time the torch backend on this device (e.g. cuda)")
    p.add_argument(
        "--no-sklearn",
        action="store_true",
        help="skip sklearn (with --torch-device: the headline is torch's speedup over faiss, target 10x)",
    )
    run_benchmark(
        "kmeans_faiss_vs_sklearn",
        "x",
        TARGET,
        p,
        run,
        argv=argv,
        error_details=lambda args: {"n": args.n, "d": args.d, "k": args.k},
    )


if __name__ == "__main__":
    main()
