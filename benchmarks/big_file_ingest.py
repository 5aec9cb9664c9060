"""A LAION file as shipped: cut by the parts sensor, ingested partition by partition.

Headline: the peak RSS (GiB) of the process that ingests one partition — ``laion_metadata`` +
``laion_embeddings_import`` of ``--rows-per-partition`` rows (default 1M) with ``--dim``-d
(default 512) image and caption vectors — target <= 2.5 GiB (web-scale issue: "a 1M-row part
at 512-d ingests with peak RSS <= 2.5 GiB").

A metadata file of ``--file-rows`` rows (default 3M) and its clip-retrieval release (float16
``img_emb`` / ``text_emb`` .npy, as LAION ships them) are generated; ``laion_parts_sensor`` is
evaluated on the folder and must register ``ceil(file_rows / rows_per_partition)``
partitions; each partition is then materialised in a fresh process (``dagster.materialize``
on one instance) and its time and peak RSS recorded; at the end the table must hold every
row of the file exactly once. ``--file-rows 5000000 --dim 64`` is the issue's split check.

Prints progress, then exactly one JSON line; always exits 0. ``python benchmarks/big_file_ingest.py``
(3M × 512-d: ~6 GB of temporary files, several minutes on 2 cores).
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

from benchmarks._common import host_load, peak_rss_mib, run_benchmark, say  # noqa: E402

TARGET = 2.5
FILE = "part-00017"


def generate(root: Path, rows: int, dim: int) -> None:
    """part-00017.parquet (URL, TEXT, NSFW) and release/{img_emb,text_emb,metadata}/..._0017."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "source").mkdir(parents=True)
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / "release" / sub).mkdir(parents=True)
    writer = None
    for a in range(0, rows, 500_000):
        b = min(a + 500_000, rows)
        table = pa.table(
            {
                "URL": [f"http://example.com/{i}.jpg" for i in range(a, b)],
                "TEXT": [f"caption {i}" for i in range(a, b)],
                "NSFW": ["UNLIKELY"] * (b - a),
            }
        )
        writer = writer or pq.ParquetWriter(root / "source" / f"{FILE}.parquet", table.schema)
        writer.write_table(table, row_group_size=100_000)
    writer.close()
    # the release's metadata file only has to have the same number of rows (its footer is read)
    pq.write_table(
        pa.table({"row": pa.array(np.arange(rows, dtype=np.int32))}),
        root / "release" / "metadata" / "metadata_0017.parquet",
    )
    rng = np.random.default_rng(0)
    for name in ("img_emb", "text_emb"):
        out = np.lib.format.open_memmap(
            root / "release" / name / f"{name}_0017.npy", mode="w+", dtype=np.float16, shape=(rows, dim)
        )
        for a in range(0, rows, 250_000):
            out[a : a + 250_000] = rng.normal(size=(min(250_000, rows - a), dim)).astype(np.float16)
        out.flush()
        del out


def child(root: str, key: str) -> None:
    """Materialise laion_metadata + laion_embeddings_import of partition ``key``."""
    from dagster import DagsterInstance, materialize

    from asset_defs.ingest import laion_embeddings_import, laion_metadata
    from definitions import build_resources

    resources = build_resources(data_root=f"{root}/lab", source_uri=f"{root}/source", catalog=f"{root}/datasets.yaml")
    start = time.perf_counter()
    config = {"ops": {"laion_embeddings_import": {"config": {"root": f"{root}/release", "model_id": "bench"}}}}
    result = materialize(
        [laion_metadata, laion_embeddings_import],
        resources=resources,
        instance=DagsterInstance.get(),
        partition_key=key,
        run_config=config,
        raise_on_error=False,
    )
    if not result.success:
        print(
            json.dumps({"error": [str(e.event_specific_data.error)[-600:] for e in result.get_step_failure_events()]})
        )
        return
    rows = result.asset_materializations_for_node("laion_metadata")[0].metadata["rows"].value
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_gib": peak_rss_mib() / 1024, "rows": rows}))


def body(args: argparse.Namespace, result: dict) -> dict:
    from dagster import DagsterInstance, build_sensor_context

    from resources import LaionSource
    from sensors.laion_parts import laion_parts_sensor

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="big-file-") as tmp:
        root = Path(tmp)
        say(f"generating a {args.file_rows:,}-row file and its {args.dim}-d release ...")
        generate(root, args.file_rows, args.dim)
        (root / "datasets.yaml").write_text("datasets: {}\n")
        home = root / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        instance = DagsterInstance.from_config(str(home))
        source = LaionSource(uri=str(root / "source"), rows_per_partition=args.rows_per_partition)
        sensed = laion_parts_sensor(build_sensor_context(instance=instance, resources={"source": source}))
        keys = list(sensed.dynamic_partitions_requests[0].partition_keys)
        want = math.ceil(args.file_rows / args.rows_per_partition)
        say(f"the sensor registered {len(keys)} partitions ({keys[0]} .. {keys[-1]}); expected {want}")
        instance.add_dynamic_partitions("laion_part", keys)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "LAIONLAB_ROWS_PER_PARTITION": str(args.rows_per_partition),
            "LAIONLAB_LANCE_URI": "",
        }
        runs = []
        for key in keys:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(root), key], capture_output=True, text=True, cwd=ROOT, env=env
            )
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            run = json.loads(lines[-1]) if lines else {"error": out.stderr[-600:]}
            if "error" in run:
                raise RuntimeError(f"{key}: {run['error']}")
            runs.append(run)
            say(f"{key}: {run['rows']:,} rows in {run['seconds']:.1f} s, peak RSS {run['peak_rss_gib']:.2f} GiB")
        from laionlab.io.lance import LanceTables

        table = LanceTables(str(root / "lab" / "lance")).open("laion_embeddings")
        stored = table.count_rows()
        uids = table.search().limit(None).select(["uid"]).to_arrow()["uid"]
        distinct = len(set(uids.to_pylist()))
    peak = max(r["peak_rss_gib"] for r in runs)
    ok = len(keys) == want and stored == distinct == args.file_rows
    return {
        "value": round(peak, 3),
        "meets_target": peak <= TARGET and ok,
        "partitions": len(keys),
        "expected_partitions": want,
        "rows_stored": stored,
        "distinct_uids": distinct,
        "file_rows": args.file_rows,
        "rows_per_partition": args.rows_per_partition,
        "dim": args.dim,
        "seconds_per_partition": [round(r["seconds"], 1) for r in runs],
        "peak_rss_gib_per_partition": [round(r["peak_rss_gib"], 2) for r in runs],
        **host_load(load),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-rows", type=int, default=3_000_000)
    parser.add_argument("--rows-per-partition", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    run_benchmark("big_file_ingest", "GiB", TARGET, parser, body, argv=argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
