"""What exporting a subset costs as the subset grows: memory set by a part, not by the subset.

Headline: peak memory increment of exporting ``--parts`` (16) parts ÷ that of exporting the
first ``--small-parts`` (4), every row of each part (the pruned-pool case: seed 004's subset
is nearly all of LAION), all three formats (img2dataset parquet, webdataset shards copied
from the parts' img2dataset shards, DataComp ids) through ``laionlab.export.export_subset``.
Target <= 1.25: the export reads and writes one part at a time, so 4× the parts should not
cost 4× the memory. Time per exported row at each size is reported too.

The parts are LAION-shaped and synthetic, ``--rows`` (25,000) rows each, written once into a
temporary folder: metadata (uid ``"<part>:<row>"``, URL, TEXT), img2dataset's status (uid,
status, sha256) and webdataset shards of 10,000 samples in img2dataset's layout
(``{key}.jpg`` / ``.txt`` / ``.json`` with the ``uid``), every image the same 64×64 seeded-noise
JPEG (encoded once: the export copies bytes, it never decodes them).

Each export runs in a fresh child process (``--child``) that first exports 1,000 rows of
part 1 (imports, thread pools and allocators warmed up), then reads its RSS and runs the
export; its increment is the peak RSS (``VmHWM``: ``ru_maxrss`` would carry the parent's peak
into the child) minus that RSS.

Prints progress, then exactly one JSON line; always exits 0. ``python
benchmarks/export_memory.py`` (16 × 25k rows: ~1.3 GB of temporary files, a few minutes on 2
cores).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import host_load, peak_rss_mib, rss_mib, run_benchmark, say  # noqa: E402

TARGET = 1.25
SHARD_SIZE = 10_000  # img2dataset's number_sample_per_shard default
WORDS = ("a", "photo", "of", "the", "red", "small", "dog", "cat", "on", "beach", "city", "at", "night", "old")


def _part(index: int) -> str:
    return f"part-{index:05d}"


def _jpeg(size: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=75)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_part(root: Path, index: int, rows: int, image: bytes) -> None:
    """Part ``index``: ``metadata.parquet`` (uid, URL, TEXT), ``status.parquet`` (uid, status,
    sha256) and ``shards/{00000..}.tar`` (img2dataset's layout, key ``{shard:05d}{row:04d}``)."""
    import numpy as np
    import polars as pl

    part, rng = _part(index), np.random.default_rng(index)
    folder = root / part
    (folder / "shards").mkdir(parents=True)
    uids = [f"{part}:{row:09d}" for row in range(rows)]
    words = np.array(WORDS)[rng.integers(0, len(WORDS), (rows, 6))]
    captions = [" ".join(w) for w in words.tolist()]
    urls = [f"https://example.invalid/{part}/{row}.jpg" for row in range(rows)]
    sha256 = [hashlib.sha256(u.encode()).hexdigest() for u in uids]  # one per row, as downloads differ
    pl.DataFrame({"uid": uids, "URL": urls, "TEXT": captions}).write_parquet(folder / "metadata.parquet")
    status = pl.DataFrame({"uid": uids, "status": "success", "sha256": sha256})
    status.write_parquet(folder / "status.parquet")
    for shard, start in enumerate(range(0, rows, SHARD_SIZE)):
        with tarfile.open(folder / "shards" / f"{shard:05d}.tar", "w") as tar:
            for row in range(start, min(start + SHARD_SIZE, rows)):
                key = f"{shard:05d}{row - start:04d}"
                meta = {"uid": uids[row], "key": key, "caption": captions[row], "url": urls[row], "status": "success"}
                meta.update(width=64, height=64, original_width=64, original_height=64, sha256=sha256[row])
                _add(tar, f"{key}.jpg", image)
                _add(tar, f"{key}.txt", captions[row].encode())
                _add(tar, f"{key}.json", json.dumps(meta).encode())


def child(root: str, parts: int, out: str) -> None:
    """Export every row of the first ``parts`` parts under ``root`` into ``out``; print
    ``{"seconds", "peak_increment_mib", "base_mib", "rows", "exported", "shards"}``."""
    import shutil

    import polars as pl

    from laionlab.export import export_subset
    from laionlab.io import files

    def uids_of(part: str) -> pl.Series:
        return pl.read_parquet(Path(root, part, "metadata.parquet"), columns=["uid"])["uid"]

    def metadata_of(part: str) -> pl.DataFrame:
        return pl.read_parquet(Path(root, part, "metadata.parquet"))

    def status_of(part: str) -> pl.DataFrame:
        return pl.read_parquet(Path(root, part, "status.parquet"), columns=["uid", "sha256"])

    def shards_of(part: str) -> list[str]:
        return files.list_files(str(Path(root, part, "shards")), "*.tar")

    readers = (metadata_of, status_of, shards_of)
    names = [_part(i) for i in range(parts)]
    warm = str(Path(out, "warm-up"))
    export_subset(names[:1], lambda p: uids_of(p).head(1_000), *readers, warm)
    shutil.rmtree(warm)
    base = rss_mib()
    start = time.perf_counter()
    summary = export_subset(
        names, uids_of, *readers, str(Path(out, "export")), log=lambda line: print(line, flush=True)
    )
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_increment_mib": peak - base,
                "base_mib": base,
                "rows": summary.subset_rows,
                "exported": summary.exported,
                "shards": len(summary.shards),
            }
        )
    )


def _export(root: Path, parts: int, out: Path) -> dict:
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(root), str(parts), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if done.returncode:
        raise RuntimeError(f"the {parts}-part export failed: {done.stderr.strip()[-2000:]}")
    lines = done.stdout.strip().splitlines()
    for line in lines[:-1]:
        if line.startswith(f"part {parts}/") or line.startswith("part 1/"):
            say(f"  {line}")
    return json.loads(lines[-1])


def body(args: argparse.Namespace, result: dict) -> dict:
    load = os.getloadavg()[0]
    if not 1 <= args.small_parts < args.parts:
        raise ValueError(f"--small-parts: expected 1 <= small-parts < parts ({args.parts}), got {args.small_parts}")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="export-memory-") as tmp:
        root = Path(tmp) / "parts"
        image = _jpeg(64, seed=0)
        start = time.perf_counter()
        for index in range(args.parts):
            write_part(root, index, args.rows, image)
        say(f"wrote {args.parts} parts of {args.rows:,} rows in {time.perf_counter() - start:.0f} s")
        for parts in (args.small_parts, args.parts):
            run = runs[parts] = _export(root, parts, Path(tmp) / f"out-{parts}")
            say(
                f"{parts} parts ({run['rows']:,} rows): {run['seconds']:.1f} s, "
                f"{run['seconds'] / run['rows'] * 1e6:.1f} µs/row, peak +{run['peak_increment_mib']:.0f} MiB "
                f"(base {run['base_mib']:.0f} MiB), {run['shards']} shards"
            )
            expected = parts * args.rows
            if set(run["exported"].values()) != {expected}:
                raise RuntimeError(f"the {parts}-part export wrote {run['exported']}, expected {expected:,} each")
    small, large = runs[args.small_parts], runs[args.parts]
    value = round(large["peak_increment_mib"] / max(small["peak_increment_mib"], 1.0), 3)
    return {
        "value": value,
        "meets_target": value <= TARGET,
        "small_parts": args.small_parts,
        "large_parts": args.parts,
        "rows_per_part": args.rows,
        "small_peak_increment_mib": round(small["peak_increment_mib"], 1),
        "large_peak_increment_mib": round(large["peak_increment_mib"], 1),
        "small_us_per_row": round(small["seconds"] / small["rows"] * 1e6, 2),
        "large_us_per_row": round(large["seconds"] / large["rows"] * 1e6, 2),
        "small_s": round(small["seconds"], 2),
        "large_s": round(large["seconds"], 2),
        **host_load(load),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=16, help="parts of the larger export")
    parser.add_argument("--small-parts", type=int, default=4, help="parts of the smaller export (its first parts)")
    parser.add_argument("--rows", type=int, default=25_000, help="rows per part")
    run_benchmark("export_memory", "ratio", TARGET, parser, body, argv=argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
