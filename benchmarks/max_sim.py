"""Max-similarity speed: laionlab.neighbours.max_similarity against bare sgemm on the same blocks.

Headline: ratio = library GFLOP/s / sgemm GFLOP/s, target >= 0.8 (seed 004,
``compute_max_sims.py``: every LAION row's highest similarity to an eval set is a brute-force
matrix product, so the library should run near the BLAS ceiling).

Data: seeded random unit vectors, float32, ``--n`` corpus rows (default 200,000) and ``--q``
query rows (default 10,000) of dimension ``--d`` (default 512). FLOPs = 2·n·q·d for both
sides. The library side is ``max_similarity(corpus, queries)`` with its default blocks
(validation, the row max and the running max included). The sgemm side runs the same
``corpus_block @ query_block.T`` products, block shapes as the library's, into a
preallocated buffer and nothing else: NumPy sgemm on the CPU, torch matmul (synchronised)
when ``--device`` resolves to CUDA. Each side is timed ``--repeats`` times, alternating, and
its best time is kept. Also reported: the peak RSS of the process (``ru_maxrss``) and the
largest error on a brute-force check of some rows.

A second baseline, ``plain_sgemm_gflops``, shows whether the library's block shape is a good
one and not only what the row max costs: the plain full-width product, one
``corpus_chunk @ queries.T`` per ``--plain-rows`` (16,384) corpus rows with no row max (the
same backend, best of ``--repeats``, timed in the same alternation as the other two). Its
output buffer is ``plain_rows x q`` floats (625 MiB at q = 10,000), so the peak RSS is read
before its first run (the library reaches its peak in its first run).

Prints a summary, then exactly one JSON line on stdout as its last line; always exits 0.
Run from the repository root: ``python benchmarks/max_sim.py [--n 20000 --q 1000 ...]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import host_load, peak_rss_gib, run_benchmark, say  # noqa: E402

TARGET = 0.8


def unit_vectors(rng, n: int, d: int):
    import numpy as np

    x = rng.standard_normal((n, d), dtype=np.float32)
    for a in range(0, n, 65_536):  # in chunks, so no full-size temporary counts in the RSS
        x[a : a + 65_536] /= np.linalg.norm(x[a : a + 65_536], axis=1, keepdims=True)
    return x


def sgemm_loop(corpus, queries, block_rows: int, query_block_rows: int, device) -> float:
    """Seconds for the bare products over the library's blocks."""
    import numpy as np

    n, q = corpus.shape[0], queries.shape[0]
    spans = lambda m, s: [(a, min(a + s, m)) for a in range(0, m, s)]  # noqa: E731
    if device is None:
        buf = np.empty(min(n, block_rows) * min(q, query_block_rows), dtype=np.float32)
        t = time.perf_counter()
        for a, b in spans(n, block_rows):
            block = corpus[a:b]
            for c, e in spans(q, query_block_rows):
                np.matmul(block, queries[c:e].T, out=buf[: (b - a) * (e - c)].reshape(b - a, e - c))
        return time.perf_counter() - t

    import torch

    qs = torch.from_numpy(queries).to(device)
    buf = torch.empty(min(n, block_rows), min(q, query_block_rows), device=device)
    torch.cuda.synchronize(device)
    t = time.perf_counter()
    for a, b in spans(n, block_rows):
        block = torch.from_numpy(corpus[a:b]).to(device)
        for c, e in spans(q, query_block_rows):
            torch.matmul(block, qs[c:e].T, out=buf[: b - a, : e - c])
    torch.cuda.synchronize(device)
    return time.perf_counter() - t


def run(args, result: dict) -> dict:
    load_before = os.getloadavg()[0]  # before the imports below load the host

    import numpy as np

    from laionlab.neighbours import max_similarity
    from laionlab.neighbours.search import (
        MAX_SIM_BLOCK_ROWS,
        MAX_SIM_QUERY_BLOCK_ROWS,
        _backend,
    )

    block_rows = args.block_rows or MAX_SIM_BLOCK_ROWS
    query_block_rows = args.query_block_rows or MAX_SIM_QUERY_BLOCK_ROWS
    backend = _backend(args.device)
    where = "numpy sgemm (CPU)" if backend is None else f"torch matmul ({backend})"
    say(
        f"max_sim benchmark: n={args.n} q={args.q} d={args.d} blocks {block_rows}x"
        f"{query_block_rows} on {where}; cpus={os.cpu_count()} "
        f"load {os.getloadavg()[0]:.2f} numpy {np.__version__}"
    )
    rng = np.random.default_rng(args.seed)
    corpus, queries = unit_vectors(rng, args.n, args.d), unit_vectors(rng, args.q, args.d)
    flops = 2.0 * args.n * args.q * args.d

    def library() -> float:
        t = time.perf_counter()
        out = max_similarity(
            corpus, queries, block_rows=block_rows, query_block_rows=query_block_rows, device=args.device
        )
        library.out = out
        return time.perf_counter() - t

    # Warm both paths up on a slice (thread pools, page faults of the buffers).
    max_similarity(
        corpus[:block_rows], queries, block_rows=block_rows, query_block_rows=query_block_rows, device=args.device
    )
    sgemm_loop(corpus[:block_rows], queries, block_rows, query_block_rows, backend)

    lib_times, sgemm_times, plain_times = [], [], []
    for r in range(args.repeats):
        sgemm_times.append(sgemm_loop(corpus, queries, block_rows, query_block_rows, backend))
        lib_times.append(library())
        if r == 0:
            rss = peak_rss_gib()  # before the plain product's big buffer exists
        # the plain full-width product: no query blocks, no row max
        plain_times.append(sgemm_loop(corpus, queries, args.plain_rows, args.q, backend))
        say(
            f"repeat {r + 1}: library {lib_times[-1]:.2f}s, sgemm {sgemm_times[-1]:.2f}s, "
            f"plain sgemm {plain_times[-1]:.2f}s"
        )
    lib_s, sgemm_s, plain_s = min(lib_times), min(sgemm_times), min(plain_times)
    gflops, sgemm_gflops, plain_gflops = flops / lib_s / 1e9, flops / sgemm_s / 1e9, flops / plain_s / 1e9
    ratio = gflops / sgemm_gflops

    check = rng.choice(args.n, size=min(args.n, 512), replace=False)
    exact = (corpus[check].astype(np.float64) @ queries.astype(np.float64).T).max(axis=1)
    max_err = float(np.abs(library.out[check] - exact).max())
    say(
        f"library {gflops:.1f} GFLOP/s, sgemm {sgemm_gflops:.1f} GFLOP/s, ratio {ratio:.3f} "
        f"(target {TARGET}: {'met' if ratio >= TARGET else 'not met'}); peak RSS {rss:.2f} GiB "
        f"(data {(corpus.nbytes + queries.nbytes) / 2**30:.2f} GiB); max |error| {max_err:.2e}"
    )
    say(
        f"plain sgemm ({args.plain_rows} x {args.q} products) {plain_gflops:.1f} GFLOP/s: "
        f"library / plain {gflops / plain_gflops:.3f}, blocked sgemm / plain {sgemm_gflops / plain_gflops:.3f}"
    )
    return {
        "value": round(ratio, 4),
        "meets_target": bool(ratio >= TARGET),
        "gflops": round(gflops, 2),
        "sgemm_gflops": round(sgemm_gflops, 2),
        "peak_rss_gib": round(rss, 3),
        "data_gib": round((corpus.nbytes + queries.nbytes) / 2**30, 3),
        "library_s": round(lib_s, 3),
        "sgemm_s": round(sgemm_s, 3),
        "plain_sgemm_gflops": round(plain_gflops, 2),
        "plain_sgemm_s": round(plain_s, 3),
        "ratio_vs_plain_sgemm": round(gflops / plain_gflops, 4),
        "plain_rows": args.plain_rows,
        "max_abs_err": max_err,
        "n": args.n,
        "q": args.q,
        "d": args.d,
        "block_rows": block_rows,
        "query_block_rows": query_block_rows,
        "baseline": where,
        "repeats": args.repeats,
        **host_load(load_before),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="corpus rows (default 200,000)")
    p.add_argument("--q", type=int, default=10_000, help="query rows (default 10,000)")
    p.add_argument("--d", type=int, default=512, help="dimension (default 512)")
    p.add_argument("--repeats", type=int, default=2, help="timings per side, best kept")
    p.add_argument("--block-rows", type=int, default=None, help="default: the library's")
    p.add_argument("--query-block-rows", type=int, default=None, help="default: the library's")
    p.add_argument(
        "--plain-rows",
        type=int,
        default=16_384,
        help="corpus rows per product of the plain full-width sgemm (default 16,384)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    run_benchmark(
        "max_sim",
        "ratio",
        TARGET,
        p,
        run,
        argv=argv,
        error_details=lambda args: {
            "gflops": None,
            "sgemm_gflops": None,
            "plain_sgemm_gflops": None,
            "peak_rss_gib": round(peak_rss_gib(), 3),
            "n": args.n,
            "q": args.q,
            "d": args.d,
        },
    )


if __name__ == "__main__":
    main()
