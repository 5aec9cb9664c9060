"""Scaling the demo ingest out: one worker process against two, and a local Ray cluster.

Headline: speed-up = (images/s with 2 worker processes) / (images/s with 1), target >= 1.5.

The work is the ingest of the demo parts (``laionlab.demo.build_demo``, 3 parts of 200 rows by
default): per part, ``download_part`` (img2dataset into webdataset shards of
``--shard-size`` rows) -> ``encode_shards`` (``laionlab-tiny`` on the CPU) ->
``embeddings_batches`` + ``LanceTables.replace_part``. Each configuration runs in fresh worker
processes (so every one pays its own interpreter, torch and model start-up) into a Lance
database of its own, timed in the parent from submitting the work to the last part written:

- ``1_process``: one process ingests the parts one after the other (img2dataset
  ``processes_count=1``, no DataLoader workers);
- ``2_processes``: the same per part, two processes taking parts as they free up (how parallel
  Dagster runs of different parts scale). With 3 parts the ideal speed-up is 1.5 (3 parts vs 2
  rounds), reported as ``ideal_speedup``;
- ``1_process_2_workers``: one process, parts in turn, each with 2 img2dataset processes and
  2 DataLoader workers (the resources' defaults);
- ``ray``: one driver process, parts in turn, downloads through img2dataset's
  ``distributor="ray"`` (``ray_download_part``) and embeddings through a Ray Data pool of 2
  actors (``ray_encode_shards``) on a head started here on 127.0.0.1 with ``--ray-cpus`` CPUs
  (its start-up is reported, not timed).

images/s = rows written to Lance / wall seconds. Every configuration must write the same uids.
Prints progress, then exactly one JSON line on stdout as its last line; always exits 0.
Run from the repository root: ``python benchmarks/scale.py [--help]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# read by Ray at import, here and in every process started below: loopback only, and token
# authentication with a token of this run's own (see laionlab.distributed.ray_embed.LocalHead)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

from benchmarks._common import run_benchmark, say  # noqa: E402

TARGET_SPEEDUP = 1.5
TABLE = "laion_embeddings"


def ingest_parts(job: dict) -> dict:
    """Runs in a worker process: download, embed and write ``job['parts']`` one after the other."""
    from laionlab.embed.encode import encode_shards
    from laionlab.embed.model import ClipSpec, load_clip
    from laionlab.io.download import DownloadSettings, download_part
    from laionlab.io.lance import LanceTables, embeddings_batches, embeddings_schema
    from laionlab.io.metadata import read_part

    start = time.perf_counter()
    spec = ClipSpec("laionlab-tiny", device="cpu")
    settings = DownloadSettings(**job["download"])
    tables = LanceTables(job["lance"])
    address = job.get("ray_address")
    if address:
        from laionlab.distributed.ray_embed import ray_download_part, ray_encode_shards

        dim = load_clip(spec).embed_dim  # for the schema; the actors load their own copy
    else:
        clip = load_clip(spec)
        dim = clip.embed_dim
    schema = embeddings_schema(dim)
    rows, timings = 0, []
    for part in job["parts"]:
        t0 = time.perf_counter()
        meta = read_part(str(Path(job["demo_root"]) / "laion_parts" / f"{part}.parquet"), part)
        folder = str(Path(job["out"]) / part)
        if address:
            result = ray_download_part(meta, folder, settings, address)
            embedded = ray_encode_shards(spec, result.shards, address, job["batch_size"], concurrency=job["actors"])
        else:
            result = download_part(meta, folder, settings)
            embedded = encode_shards(clip, result.shards, job["batch_size"], job["num_workers"])
        t1 = time.perf_counter()
        written = tables.replace_part(TABLE, part, embeddings_batches(embedded, part, spec.model_id), schema)
        rows += written.rows
        timings.append(
            {
                "part": part,
                "download_s": round(result.seconds, 2),
                "download_call_s": round(t1 - t0, 2),
                "embed_write_s": round(time.perf_counter() - t1, 2),
                "rows": written.rows,
            }
        )
    return {"rows": rows, "worker_seconds": time.perf_counter() - start, "parts": timings, "pid": os.getpid()}


def run_config(name: str, jobs: list[dict], processes: int) -> dict:
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, as separate runs would be
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        results = list(pool.map(ingest_parts, jobs))
    seconds = time.perf_counter() - start
    rows = sum(r["rows"] for r in results)
    out = {
        "rows": rows,
        "seconds": round(seconds, 2),
        "images_per_s": round(rows / seconds, 2),
        "processes": processes,
        "worker_processes_used": len({r["pid"] for r in results}),
        "parts": [p for r in results for p in r["parts"]],
    }
    say(
        f"[{name}] {rows} rows in {seconds:.1f}s = {rows / seconds:.1f} images/s "
        f"({processes} process(es)); per part: " + json.dumps(out["parts"])
    )
    return out


def uids_by_part(lance_uri: str, parts: list[str]) -> dict[str, list[str]]:
    from laionlab.io.lance import LanceTables

    tables = LanceTables(lance_uri)
    return {p: sorted(tables.read_part(TABLE, p, ["uid"])["uid"].to_pylist()) for p in parts}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", type=int, default=3, help="demo parts")
    p.add_argument("--rows-per-part", type=int, default=200)
    p.add_argument("--shard-size", type=int, default=50, help="img2dataset number_sample_per_shard")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray head")
    p.add_argument("--actors", type=int, default=2, help="Ray Data actors embedding a part")
    p.add_argument("--skip-ray", action="store_true")
    return p


def benchmark(args, result: dict) -> None:
    from laionlab.demo import DemoConfig, build_demo

    t_all = time.perf_counter()
    load_before = os.getloadavg()[0]
    result.update(host_load_avg_1m_before=round(load_before, 2), cpu_count=os.cpu_count())
    if load_before > 0.5 * (os.cpu_count() or 1):
        say(
            f"!! host load average {load_before:.1f} on {os.cpu_count()} CPUs before starting: "
            "wall-clock figures will be noisy"
        )
    with tempfile.TemporaryDirectory(prefix="scale_bench_") as tmpdir:
        tmp = Path(tmpdir)
        demo = build_demo(tmp / "demo", DemoConfig(n_parts=args.parts, rows_per_part=args.rows_per_part))
        parts = demo.parts
        say(f"demo: {len(parts)} parts x {args.rows_per_part} rows in {tmp / 'demo'}")
        download = dict(
            processes_count=1,
            thread_count=8,
            image_size=64,
            timeout=5,
            number_sample_per_shard=args.shard_size,
            allowed_file_roots=(demo.root,),
        )

        def jobs(name, groups, **over):
            base = {
                "demo_root": demo.root,
                "out": str(tmp / name / "images"),
                "lance": str(tmp / name / "lance"),
                "download": download,
                "batch_size": args.batch_size,
                "num_workers": 0,
                "actors": args.actors,
            }
            return [{**base, **over, "parts": g} for g in groups]

        configs = {}
        configs["1_process"] = run_config("1_process", jobs("1_process", [parts]), 1)
        configs["2_processes"] = run_config("2_processes", jobs("2_processes", [[p] for p in parts]), 2)
        configs["1_process_2_workers"] = run_config(
            "1_process_2_workers",
            jobs("1_process_2_workers", [parts], num_workers=2, download={**download, "processes_count": 2}),
            1,
        )
        if not args.skip_ray and importlib.util.find_spec("ray") is None:
            say("[ray] skipped: ray is not installed (pip install -e '.[ray]')")
            result["ray_skipped"] = "ray is not installed"
        elif not args.skip_ray:
            from laionlab.distributed.ray_embed import LocalHead

            t0 = time.perf_counter()
            with LocalHead(num_cpus=args.ray_cpus) as head:
                head_s = time.perf_counter() - t0
                say(f"[ray] head on {head.address} with {args.ray_cpus} CPUs started in {head_s:.1f}s (not timed)")
                configs["ray"] = run_config("ray", jobs("ray", [parts], ray_address=head.address), 1)
                configs["ray"].update(head_start_s=round(head_s, 2), head_cpus=args.ray_cpus, actors=args.actors)

        reference = uids_by_part(str(tmp / "1_process" / "lance"), parts)
        for name in configs:
            configs[name]["same_uids_as_1_process"] = uids_by_part(str(tmp / name / "lance"), parts) == reference

    base = configs["1_process"]["images_per_s"]
    for name, c in configs.items():
        c["speedup"] = round(c["images_per_s"] / base, 3)
    speedup = configs["2_processes"]["speedup"]
    result.update(
        value=speedup,
        meets_target=speedup >= TARGET_SPEEDUP,
        ideal_speedup=round(len(parts) / math.ceil(len(parts) / 2), 3),
        images_per_s={name: c["images_per_s"] for name, c in configs.items()},
        speedups={name: c["speedup"] for name, c in configs.items()},
        all_same_uids=all(c["same_uids_as_1_process"] for c in configs.values()),
        rows=configs["1_process"]["rows"],
        configs=configs,
        parts=len(parts),
        rows_per_part=args.rows_per_part,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        model="laionlab-tiny/random-seed0 on cpu",
    )
    say("speed-ups over 1_process: " + json.dumps(result["speedups"]))
    result["host_load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)


def main(argv=None) -> None:
    run_benchmark(
        "scale", "speedup (2 processes vs 1, images/s)", TARGET_SPEEDUP, make_parser(), benchmark, argv=argv, value=0.0
    )


if __name__ == "__main__":
    main()
