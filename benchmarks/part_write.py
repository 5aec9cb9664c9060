"""What writing one LAION part into laion_embeddings costs as the table grows.

Headline: the larger of (time of the last part's write ÷ time of the first's) and (peak memory
increment of the last ÷ the first's), over ``--parts`` parts of ``--rows`` rows written in
order into one LanceDB table by ``LanceTables.replace_part`` (what ``laion_embeddings`` and
``laion_embeddings_import`` call). Target <= 1.2 (web-scale issue: "writing part 24 of
24 × 50k rows costs <= 1.2× part 1 in time and in peak memory increment").

Each write runs in a fresh child process (``--child``), so its peak RSS (``ru_maxrss``) minus
the RSS just before the write is that write's own memory increment, not what earlier writes
left behind. The vectors are random unit rows of the embeddings table's schema (two
``--dim``-d vectors per row, as CLIP image + text). "First" and "last" are the medians of the
first three and the last three parts, so one noisy write does not decide. ``--rewrite`` also
rewrites the first part once the table is full: the path a re-materialised part takes (a
merge joined against the whole table), reported, not targeted.

Prints progress, then exactly one JSON line; always exits 0. ``python benchmarks/part_write.py``
(24 × 50k × 512-d: ~5 GB of temporary files, a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import host_load, peak_rss_mib, rss_mib, run_benchmark, say  # noqa: E402

TARGET = 1.2


def child(uri: str, part: int, rows: int, dim: int) -> None:
    """Write part ``part`` and print ``{"seconds", "peak_increment_mib", "rewrite"}``."""
    import numpy as np

    from laionlab.io.lance import LanceTables, embeddings_batch, embeddings_schema

    tables = LanceTables(uri)
    schema = embeddings_schema(dim)
    name = f"part-{part:05d}"
    rng = np.random.default_rng(part)

    def batches():
        for a in range(0, rows, 16_384):
            b = min(a + 16_384, rows)
            X = rng.normal(size=(b - a, dim)).astype(np.float32)
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            ones = np.ones(b - a, np.float32)
            yield embeddings_batch([f"{name}:{i:09d}" for i in range(a, b)], name, "bench", X, X, ones, ones)

    if tables.exists("laion_embeddings"):
        tables.open("laion_embeddings").count_rows()  # open the table before the baseline
    base = rss_mib()
    start = time.perf_counter()
    result = tables.replace_part("laion_embeddings", name, batches(), schema)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    print(json.dumps({"seconds": seconds, "peak_increment_mib": peak - base, "rewrite": result.rewrite}))


def _write(uri: str, part: int, args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", uri, str(part), str(args.rows), str(args.dim)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def body(args: argparse.Namespace, result: dict) -> dict:
    load = os.getloadavg()[0]
    writes = []
    with tempfile.TemporaryDirectory(prefix="part-write-") as tmp:
        uri = str(Path(tmp) / "lance")
        for part in range(args.parts):
            w = _write(uri, part, args)
            writes.append(w)
            say(
                f"part {part + 1}/{args.parts}: {w['seconds']:.2f} s, peak +{w['peak_increment_mib']:.0f} MiB "
                f"({'rewrite' if w['rewrite'] else 'append'})"
            )
        rewrite = _write(uri, 0, args) if args.rewrite else None
        if rewrite:
            say(
                f"rewrite of part 1 into the full table: {rewrite['seconds']:.2f} s, "
                f"peak +{rewrite['peak_increment_mib']:.0f} MiB"
            )
    k = min(3, len(writes))
    first_s = statistics.median(w["seconds"] for w in writes[:k])
    last_s = statistics.median(w["seconds"] for w in writes[-k:])
    first_m = statistics.median(w["peak_increment_mib"] for w in writes[:k])
    last_m = statistics.median(w["peak_increment_mib"] for w in writes[-k:])
    time_ratio, mem_ratio = last_s / first_s, last_m / max(first_m, 1.0)
    value = round(max(time_ratio, mem_ratio), 3)
    return {
        "value": value,
        "meets_target": value <= TARGET,
        "time_ratio": round(time_ratio, 3),
        "memory_ratio": round(mem_ratio, 3),
        "first_s": round(first_s, 3),
        "last_s": round(last_s, 3),
        "first_peak_increment_mib": round(first_m),
        "last_peak_increment_mib": round(last_m),
        "parts": args.parts,
        "rows_per_part": args.rows,
        "dim": args.dim,
        "appends": sum(not w["rewrite"] for w in writes),
        **(
            {
                "rewrite_s": round(rewrite["seconds"], 3),
                "rewrite_peak_increment_mib": round(rewrite["peak_increment_mib"]),
            }
            if rewrite
            else {}
        ),
        **host_load(load),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=24)
    parser.add_argument("--rows", type=int, default=50_000, help="rows per part")
    parser.add_argument("--dim", type=int, default=512, help="dimension of each of the two vectors")
    parser.add_argument("--rewrite", action="store_true", help="also rewrite part 1 into the full table (reported)")
    run_benchmark("part_write", "ratio", TARGET, parser, body, argv=argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
