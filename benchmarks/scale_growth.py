"""How the cross-part assets grow with LAION: time and peak memory at two corpus sizes.

Headline: the largest growth exponent ``log(t2 / t1) / log(n2 / n1)`` over the assets timed,
from ``--sizes`` (default 100k and 400k rows) in parts of ``--part-rows`` rows, at fixed
config (dedup: k from ``rows_per_cluster``, so it grows with the corpus as the seed's did).
Target <= 1.15 (web-scale issue: "cross-part assets grow with exponent <= 1.15 ... and their
peak memory stays within 1.5 GiB of the process baseline"); the JSON line also says whether
every asset's peak memory increment stayed under 1.5 GiB, and the last ÷ first part write.

LAION-shaped data is generated for each size: metadata parquet files (URL, TEXT, NSFW) in a
source folder, and image + caption vectors (``--dim``, default 64; a mixture of 200 Gaussian
clusters with a share of near-duplicates) written part by part into ``laion_embeddings``
through ``LanceTables.replace_part`` (what the embedding and import assets call); two reference
sets of 2,000 vectors (``bench_ref``, and ``bench_ref_narrow`` from 20 of the clusters) and a
photo-labels file of 20,000 LAION uids.
Each asset is then materialised in a fresh process (``dagster.materialize`` on the same
instance, the definitions' own assets and resources, ``--child``), so its peak RSS minus the
RSS after imports is its own. Per-part assets (``laion_metadata``, ``laion_natural``,
``dedup_assignments``, ``laion_dedup``) run one partition after another in their process and
are timed together (linear in the corpus by construction: their figure to watch is memory).

Prints a table, then exactly one JSON line; always exits 0. ``python benchmarks/scale_growth.py``
(a few minutes on 2 cores); ``--sizes 400000 1600000`` for the issue's sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import host_load, peak_rss_mib, rss_mib, run_benchmark, say  # noqa: E402

TARGET = 1.15
MEMORY_LIMIT_MIB = 1.5 * 1024
REFERENCE, REFERENCE_NARROW = "bench_ref", "bench_ref_narrow"

# asset -> (partitioned by laion_part?, run config); in dependency order
ASSETS = {
    "laion_metadata": (True, None),
    "photo_classifier": (False, {"C": 1.0}),
    "laion_natural": (True, {"threshold": 0.5}),
    "laion_natural_clusters": (False, {"k": 50, "n_iter": 10}),
    "coverage": (False, {"baseline_size": 500, "baseline_seeds": 2, "max_samples": 20_000}),
    "dedup_centroids": (False, {"k": None, "rows_per_cluster": 8_260, "n_iter": 10}),
    "dedup_assignments": (True, None),
    "laion_dedup": (True, {"eps": 0.124}),
    "dedup_summary": (False, None),
    "eval_to_laion_similarity": (False, {"k": 100}),
    "caption_index": (False, {}),
}


def generate(root: Path, rows: int, part_rows: int, dim: int, seed: int = 0) -> dict:
    """The source folder, LanceDB tables and labels of a corpus of ``rows`` rows; returns the
    paths and the part keys, and the seconds of the first and the last part's write."""
    import numpy as np
    import polars as pl

    from laionlab.io.lance import LanceTables, embeddings_batch, embeddings_schema, reference_batch, reference_schema

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, dim)).astype(np.float32)
    source, lance_uri = root / "source", str(root / "lab" / "lance")
    source.mkdir(parents=True)
    tables = LanceTables(lance_uri)
    parts = [f"part-{i:05d}" for i in range(math.ceil(rows / part_rows))]
    writes = []
    for i, part in enumerate(parts):
        n = min(part_rows, rows - i * part_rows)
        pl.DataFrame(
            {
                "URL": [f"http://example.com/{part}/{j}.jpg" for j in range(n)],
                "TEXT": [f"a photo number {j} of {part}" for j in range(n)],
                "NSFW": ["UNLIKELY"] * n,
            }
        ).write_parquet(source / f"{part}.parquet")
        label = rng.integers(0, len(centres), n)
        img = centres[label] + rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
        dup = rng.random(n) < 0.05  # near-duplicates of the row before
        img[1:][dup[1:]] = img[:-1][dup[1:]] + rng.normal(scale=0.01, size=(int(dup[1:].sum()), dim))
        txt = img + rng.normal(scale=0.5, size=(n, dim)).astype(np.float32)
        norm_i, norm_t = np.linalg.norm(img, axis=1), np.linalg.norm(txt, axis=1)
        uids = [f"{part}:{j:09d}" for j in range(n)]
        start = time.perf_counter()
        unit_img = (img / norm_i[:, None]).astype(np.float32)
        unit_txt = (txt / norm_t[:, None]).astype(np.float32)
        tables.replace_part(
            "laion_embeddings",
            part,
            [embeddings_batch(uids, part, "bench", unit_img, unit_txt, norm_i, norm_t)],
            embeddings_schema(dim),
        )
        writes.append(time.perf_counter() - start)
    for name, spread in ((REFERENCE, len(centres)), (REFERENCE_NARROW, 20)):  # coverage compares two sets
        ref = centres[rng.integers(0, spread, 2_000)] + rng.normal(scale=0.6, size=(2_000, dim)).astype(np.float32)
        norm = np.linalg.norm(ref, axis=1)
        ref_uids = [f"{name}:{j:09d}" for j in range(2_000)]
        unit_ref = (ref / norm[:, None]).astype(np.float32)
        tables.replace_part(
            "reference_embeddings",
            name,
            [reference_batch(ref_uids, name, "bench", [None] * 2_000, [""] * 2_000, unit_ref, norm)],
            reference_schema(dim),
            part_column="dataset",
        )
    labelled = rng.choice(rows, size=min(20_000, rows), replace=False)
    labels = pl.DataFrame(
        {
            "uid": [f"{parts[k // part_rows]}:{k % part_rows:09d}" for k in labelled],
            "is_photo": rng.random(len(labelled)) < 0.7,
        }
    )
    labels.write_parquet(root / "labels.parquet")
    (root / "datasets.yaml").write_text("datasets: {}\n")
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        "source": str(source),
        "data_root": str(root / "lab"),
        "catalog": str(root / "datasets.yaml"),
        "labels": str(root / "labels.parquet"),
        "home": str(home),
        "parts": parts,
        "first_write_s": writes[0],
        "last_write_s": writes[-1],
    }


def child(spec_path: str, asset: str) -> None:
    """Materialise ``asset`` (every part, one after another, when per part) and print
    ``{"seconds", "peak_increment_mib"}``."""
    from dagster import DagsterInstance, materialize

    from asset_defs import all_assets
    from definitions import build_resources

    spec = json.loads(Path(spec_path).read_text())
    instance = DagsterInstance.get()
    resources = build_resources(data_root=spec["data_root"], source_uri=spec["source"], catalog=spec["catalog"])
    by_key = {k.to_user_string(): a for a in all_assets for k in a.keys}
    partitioned, config = ASSETS[asset]
    if asset == "photo_classifier":
        config = {**config, "labels_path": spec["labels"]}
    run_config = {"ops": {asset: {"config": config}}} if config is not None else {}
    keys = spec["parts"] if partitioned else [REFERENCE if asset == "eval_to_laion_similarity" else None]
    base = rss_mib()
    start = time.perf_counter()
    for key in keys:
        result = materialize(
            [by_key[asset]],
            resources=resources,
            instance=instance,
            partition_key=key,
            run_config=run_config,
            raise_on_error=False,
        )
        if not result.success:
            errors = [str(e.event_specific_data.error)[-500:] for e in result.get_step_failure_events()]
            print(json.dumps({"error": f"{asset}[{key}]: {errors}"}))
            return
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    print(json.dumps({"seconds": seconds, "peak_increment_mib": peak - base}))


def _measure(spec_path: str, home: str, asset: str) -> dict:
    env = {**os.environ, "DAGSTER_HOME": home, "LAIONLAB_LANCE_URI": "", "MALLOC_ARENA_MAX": "2"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", spec_path, asset], capture_output=True, text=True, cwd=ROOT, env=env
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"{asset}: exit {out.returncode}: {out.stderr[-600:]}"}
    return json.loads(lines[-1])


def body(args: argparse.Namespace, result: dict) -> dict:
    from dagster import DagsterInstance

    load = os.getloadavg()[0]
    sizes = sorted(args.sizes)
    figures: dict[str, dict[int, dict]] = {a: {} for a in args.assets}
    writes = {}
    with tempfile.TemporaryDirectory(prefix="scale-growth-") as tmp:
        for n in sizes:
            root = Path(tmp) / f"n{n}"
            say(f"generating {n:,} rows in parts of {args.part_rows:,} (d = {args.dim}) ...")
            spec = generate(root, n, args.part_rows, args.dim)
            writes[n] = (spec["first_write_s"], spec["last_write_s"])
            instance = DagsterInstance.from_config(spec["home"])
            instance.add_dynamic_partitions("laion_part", spec["parts"])
            instance.add_dynamic_partitions("dataset", [REFERENCE, REFERENCE_NARROW])
            spec_path = root / "spec.json"
            spec_path.write_text(json.dumps(spec))
            for asset in args.assets:
                figures[asset][n] = _measure(str(spec_path), spec["home"], asset)
                f = figures[asset][n]
                say(
                    f"  {asset}: "
                    + (f["error"] if "error" in f else f"{f['seconds']:.2f} s, peak +{f['peak_increment_mib']:.0f} MiB")
                )
    n1, n2 = sizes[0], sizes[-1]
    table, exponents, over_memory, errors = [], {}, [], []
    for asset, by_n in figures.items():
        if any("error" in f for f in by_n.values()):
            errors += [f["error"] for f in by_n.values() if "error" in f]
            continue
        t1, t2 = by_n[n1]["seconds"], by_n[n2]["seconds"]
        exponents[asset] = round(math.log(t2 / t1) / math.log(n2 / n1), 3)
        peak = max(f["peak_increment_mib"] for f in by_n.values())
        if peak > MEMORY_LIMIT_MIB:
            over_memory.append(asset)
        peak1, peak2 = by_n[n1]["peak_increment_mib"], by_n[n2]["peak_increment_mib"]
        table.append(f"| {asset} | {t1:.2f} s | {t2:.2f} s | {exponents[asset]} | {peak1:.0f} | {peak2:.0f} |")
    say(
        f"| asset | {n1:,} rows | {n2:,} rows | exponent | peak +MiB at {n1:,} | at {n2:,} |\n|---|---|---|---|---|---|"
    )
    say("\n".join(table))
    value = max(exponents.values()) if exponents else None
    write_ratio = writes[n2][1] / writes[n2][0]
    return {
        "value": value,
        "meets_target": bool(exponents) and not errors and value <= TARGET and not over_memory,
        "exponents": exponents,
        "memory_over_1_5_gib": over_memory,
        "seconds": {
            a: {str(n): round(f["seconds"], 3) for n, f in by_n.items() if "seconds" in f}
            for a, by_n in figures.items()
        },
        "peak_increment_mib": {
            a: {str(n): round(f["peak_increment_mib"]) for n, f in by_n.items() if "peak_increment_mib" in f}
            for a, by_n in figures.items()
        },
        "last_part_write_over_first": round(write_ratio, 3),
        "errors": errors,
        "sizes": sizes,
        "part_rows": args.part_rows,
        "dim": args.dim,
        **host_load(load),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 400_000], help="two corpus sizes in rows")
    parser.add_argument("--part-rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--assets", nargs="+", default=list(ASSETS), choices=list(ASSETS))
    run_benchmark("scale_growth", "exponent", TARGET, parser, body, argv=argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
