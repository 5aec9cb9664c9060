"""Embedding throughput of the ``laion_embeddings`` asset path, against the model's raw speed.

Headline: ratio = (asset-path images/s) / (raw encode images/s), target >= 0.9.

1. Writes N synthetic 256x256 JPEGs (seeded noise) as webdataset tar shards laid out like
   img2dataset output (``{key}.jpg``, ``{key}.txt``, ``{key}.json`` with a ``uid``).
2. Asset path: ``load_clip`` -> ``encode_shards`` -> ``embeddings_batches`` ->
   ``LanceTables.replace_part`` into a temporary LanceDB, timed from the start of the encode
   to the end of the write (DataLoader start-up, JPEG decode, preprocessing, tokenising,
   forward passes, normalising, Arrow conversion and the Lance merge all count).
   Raw: the same images preprocessed and the captions tokenised beforehand, already on the
   device; only ``encode_image`` + ``encode_text`` of each batch are timed (the asset encodes
   both, so the raw side does too), in ``torch.inference_mode`` with the same dtype/device.
3. Peak RSS of a clean subprocess running the asset path on a 20k-image part (64x64 JPEGs,
   10k-sample shards, model ``laionlab-tiny``), target < 2 GiB. Measured as the larger of
   (a) the peak, polled every 50 ms from /proc, of the summed PSS of the subprocess and all its
   descendants (forkserver, DataLoader workers) and (b) ``ru_maxrss`` of the subprocess from
   ``wait4`` (the largest single process of its tree). PSS shares pages common to several
   processes among them, so the sum is the tree's real footprint; the summed RSS (which counts
   them once per process, an upper bound) is reported alongside.

Prints progress, then exactly one JSON line on stdout as its last line; always exits 0.
Run from the repository root: ``python benchmarks/embed_throughput.py [--help]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks._common import run_benchmark, say  # noqa: E402

TARGET_RATIO = 0.9
RSS_TARGET_GIB = 2.0
GIB = 1024**3
WORDS = (
    "a photo of the dog cat car house tree beach sunset mountain city street portrait red blue "
    "green vintage modern wooden small large old new black white with on in at near under over "
    "garden kitchen painting logo shirt shoe table chair lamp flower river bridge night morning"
).split()


# --------------------------------------------------------------------------- synthetic shards


def _jpeg(rng, size: int) -> bytes:
    """Seeded noise with some low-frequency structure (pure per-pixel noise makes unrealistically
    large, slow-to-decode JPEGs)."""
    import numpy as np
    from PIL import Image

    coarse = rng.integers(0, 256, (max(size // 16, 2), max(size // 16, 2), 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-24, 25, (size, size, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, n: int, image_size: int, shard_size: int, seed: int) -> list[str]:
    """img2dataset layout: shard ``{shard:05d}.tar``, sample key ``{shard:05d}{index:04d}``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shards, mtime = [], time.time()
    for shard_id, start in enumerate(range(0, n, shard_size)):
        path = folder / f"{shard_id:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(start, min(start + shard_size, n)):
                key = f"{shard_id:05d}{i - start:04d}"
                caption = " ".join(rng.choice(WORDS, int(rng.integers(3, 30))))
                uid = hashlib.md5(f"{seed}-{i}".encode()).hexdigest()
                meta = {
                    "uid": uid,
                    "key": key,
                    "caption": caption,
                    "url": f"https://example.invalid/{uid}.jpg",
                    "status": "success",
                    "error_message": None,
                    "width": image_size,
                    "height": image_size,
                }
                _add(tar, f"{key}.jpg", _jpeg(rng, image_size), mtime)
                _add(tar, f"{key}.txt", caption.encode(), mtime)
                _add(tar, f"{key}.json", json.dumps(meta).encode(), mtime)
        shards.append(str(path))
    return shards


def read_samples(shards: list[str]) -> tuple[list[bytes], list[str]]:
    images, captions = [], []
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in sorted(k for k in members if k.endswith(".jpg")):
                key = name[: -len(".jpg")]
                images.append(tar.extractfile(members[name]).read())
                captions.append(tar.extractfile(members[f"{key}.txt"]).read().decode())
    return images, captions


# --------------------------------------------------------------------------- the two paths


def run_asset_path(
    loaded, shards: list[str], uri: str, part: str, batch_size: int, num_workers: int, decode: str = "auto"
) -> dict:
    """Exactly what ``asset_defs.ingest.laion_embeddings`` does between loading and checks."""
    from laionlab.embed.encode import EncodeStats, encode_shards
    from laionlab.io.lance import LanceTables, embeddings_batches, embeddings_schema

    schema = embeddings_schema(loaded.embed_dim)
    tables = LanceTables(uri)
    tables.ensure("laion_embeddings", schema)  # the asset does this before the encode too
    stats = EncodeStats()
    start = time.perf_counter()
    encoded = encode_shards(loaded, shards, batch_size, num_workers, stats, decode=decode)
    batches = embeddings_batches(encoded, part, loaded.model_id)
    written = tables.replace_part("laion_embeddings", part, batches, schema)
    seconds = time.perf_counter() - start
    return {
        "rows": written.rows,
        "seconds": seconds,
        "images_per_s": written.rows / seconds,
        "encode_loop_seconds": stats.seconds,
        "forward_seconds": stats.encode_seconds,  # forward + normalise, inside encode_shards
    }


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def preload(loaded, images: list[bytes], captions: list[str]):
    import torch
    from PIL import Image

    pix = torch.stack([loaded.preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    tok = loaded.tokenizer(captions)
    return pix.to(loaded.device, dtype=loaded.dtype), tok.to(loaded.device)


def run_raw(loaded, pix, tok, batch_size: int, what: str = "both") -> float:
    """Seconds for the forward passes over all preloaded samples."""
    import torch

    model = loaded.model
    _sync(loaded.device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pix), batch_size):
            if what in ("both", "image"):
                model.encode_image(pix[i : i + batch_size])
            if what in ("both", "text"):
                model.encode_text(tok[i : i + batch_size])
        _sync(loaded.device)
    return time.perf_counter() - start


def loader_only(loaded, shards: list[str], batch_size: int, num_workers: int, decode: str = "auto") -> float:
    """images/s of the asset's decode + preprocess + tokenise pipeline alone (no model), to
    model-ready tensors on the model's device."""
    from benchmarks.embed_pipeline import loader_rate

    return loader_rate(loaded, shards, decode, batch_size, max(0, min(num_workers, len(shards))))


# --------------------------------------------------------------------------- peak RSS


def _tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreePoller(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.stop = pid, interval, threading.Event()
        self.rss_peak = self.pss_peak = 0  # bytes
        self.max_procs = 0

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.pid)
            rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids) * 1024
            pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) * 1024
            self.rss_peak, self.pss_peak = max(self.rss_peak, rss), max(self.pss_peak, pss)
            self.max_procs = max(self.max_procs, len(pids))
            self.stop.wait(self.interval)


def measure_rss(args, tmp: Path) -> dict:
    folder = tmp / "rss_shards"
    t0 = time.perf_counter()
    shards = write_shards(folder, args.rss_images, 64, 10_000, args.seed + 1)
    gen_s = time.perf_counter() - t0
    say(
        f"[rss] wrote {args.rss_images} 64x64 JPEGs in {len(shards)} shards ({gen_s:.1f}s); "
        f"embedding them with {args.rss_model} in a subprocess (batch {args.rss_batch_size}, "
        f"{args.rss_workers} workers)"
    )
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_rss-child",
        str(folder),
        "--_lance",
        str(tmp / "rss_lance"),
        "--rss-model",
        args.rss_model,
        "--rss-batch-size",
        str(args.rss_batch_size),
        "--rss-workers",
        str(args.rss_workers),
        "--device",
        args.device,
        "--precision",
        args.precision,
    ]
    out_path = tmp / "rss_child.json"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        poller = TreePoller(proc.pid)
        poller.start()
        stderr_chunks: list[str] = []
        reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        poller.stop.set()
        poller.join()
        reader.join(timeout=5)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS subprocess failed (rc {proc.returncode}): {''.join(stderr_chunks)[-2000:]}")
    child = json.loads(out_path.read_text().strip().splitlines()[-1])
    maxrss = usage.ru_maxrss * 1024  # KiB on Linux; max over the child and its reaped descendants
    # PSS splits pages shared by the forkserver and its workers among them, so its sum is the
    # tree's real footprint; without smaps_rollup fall back to the (over-counting) RSS sum
    tree = poller.pss_peak or poller.rss_peak
    peak = max(tree, maxrss)
    return {
        "rss_peak_gib": round(peak / GIB, 3),
        "rss_target_gib": RSS_TARGET_GIB,
        "rss_meets_target": peak < RSS_TARGET_GIB * GIB,
        "rss_tree_sum_peak_gib": round(poller.rss_peak / GIB, 3),
        "pss_tree_sum_peak_gib": round(poller.pss_peak / GIB, 3),
        "rss_max_single_process_gib": round(maxrss / GIB, 3),
        "rss_max_processes": poller.max_procs,
        "rss_images": child["rows"],
        "rss_model": args.rss_model,
        "rss_batch_size": args.rss_batch_size,
        "rss_num_workers": args.rss_workers,
        "rss_images_per_s": round(child["images_per_s"], 1),
        "rss_method": "max(peak of the summed PSS of the subprocess and all its descendants (forkserver, "
        "DataLoader workers), polled every 50 ms from /proc; wait4 ru_maxrss = largest single process); "
        "rss_tree_sum_peak_gib sums RSS instead (counts shared pages once per process: an upper bound)",
    }


def rss_child(args) -> None:
    """Runs in the clean subprocess: load the model and embed the part, nothing else."""
    from laionlab.embed.model import ClipSpec, load_clip

    loaded = load_clip(ClipSpec(args.rss_model, None, None, args.device, args.precision))
    shards = sorted(str(p) for p in Path(args._rss_child).glob("*.tar"))
    result = run_asset_path(loaded, shards, args._lance, "rss-part", args.rss_batch_size, args.rss_workers)
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- main


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ViT-B-32", help="open_clip model for the throughput part (random init)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: 1 on CPU, 4 on CUDA)")
    p.add_argument("--n-images", type=int, default=512)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--shard-size", type=int, default=128, help="samples per shard (workers are capped by shard count)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rss-images", type=int, default=20_000, help="images in the peak-RSS part (0 skips it)")
    p.add_argument("--rss-model", default="laionlab-tiny")
    p.add_argument("--rss-batch-size", type=int, default=256, help="default: the ClipEncoder resource's")
    p.add_argument("--rss-workers", type=int, default=2, help="default: the ClipEncoder resource's")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the loader-only / image-only timings")
    p.add_argument("--_rss-child", help=argparse.SUPPRESS)
    p.add_argument("--_lance", help=argparse.SUPPRESS)
    return p


def benchmark(args, result: dict) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import torch

    from laionlab.embed.model import ClipSpec, load_clip

    t_all = time.perf_counter()
    load_before = os.getloadavg()[0]
    result["host_load_avg_1m_before"] = round(load_before, 2)
    if load_before > 0.5 * (os.cpu_count() or 1):
        say(
            f"!! host load average {load_before:.1f} on {os.cpu_count()} CPUs before starting: other processes "
            "compete for the CPU, wall-clock figures (and the ratio) will be noisy"
        )
    with tempfile.TemporaryDirectory(prefix="embed_bench_") as tmpdir:
        tmp = Path(tmpdir)
        spec = ClipSpec(args.model, None, None, args.device, args.precision, args.seed)
        loaded = load_clip(spec)
        workers = args.num_workers if args.num_workers is not None else (4 if loaded.device.type == "cuda" else 1)
        result.update(
            model=loaded.model_id,
            device=str(loaded.device),
            dtype=str(loaded.dtype).removeprefix("torch."),
            batch_size=args.batch_size,
            num_workers=workers,
            n_images=args.n_images,
            torch_threads=torch.get_num_threads(),
            cpu_count=os.cpu_count(),
        )
        say(
            f"model {loaded.model_id} on {loaded.device} ({result['dtype']}), batch {args.batch_size}, "
            f"{workers} DataLoader workers, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs"
        )

        t0 = time.perf_counter()
        shards = write_shards(tmp / "shards", args.n_images, args.image_size, args.shard_size, args.seed)
        # two batches: Lance pulls the first batch on the calling thread, later ones on its own
        warm = write_shards(tmp / "warm", 2 * args.batch_size, args.image_size, 2 * args.batch_size, args.seed + 7)
        say(
            f"wrote {args.n_images} {args.image_size}x{args.image_size} JPEGs in {len(shards)} shards "
            f"({time.perf_counter() - t0:.1f}s)"
        )

        images, captions = read_samples(shards)
        t0 = time.perf_counter()
        pix, tok = preload(loaded, images, captions)
        preprocess_s = time.perf_counter() - t0
        del images

        # warm-up for both (model kernels, DataLoader worker start-up, Lance table creation):
        # the asset path on a separate two-batch part
        t0 = time.perf_counter()
        uri = str(tmp / "lance")
        run_asset_path(loaded, warm, uri, "warmup", args.batch_size, workers)

        say(f"warm-up done ({time.perf_counter() - t0:.1f}s)")

        # raw: half of the batches just before the asset run, the other half just after, so a
        # drift in machine load (shared hosts) biases both sides alike
        half = (len(pix) // args.batch_size + 1) // 2 * args.batch_size
        raw_before = run_raw(loaded, pix[:half], tok[:half], args.batch_size)
        asset = run_asset_path(loaded, shards, uri, "bench", args.batch_size, workers)
        say(
            f"asset path: {asset['rows']} rows in {asset['seconds']:.2f}s = {asset['images_per_s']:.1f} images/s "
            f"(forward+normalise inside encode_shards: {asset['forward_seconds']:.2f}s)"
        )
        raw_after = run_raw(loaded, pix[half:], tok[half:], args.batch_size) if half < len(pix) else 0.0
        raw_s = raw_before + raw_after
        raw_ips = len(pix) / raw_s
        say(
            f"raw encode_image+encode_text on preloaded tensors: {raw_s:.2f}s = {raw_ips:.1f} images/s "
            f"({half} images timed before the asset run, {len(pix) - half} after: {raw_before:.2f}s + {raw_after:.2f}s)"
        )

        ratio = asset["images_per_s"] / raw_ips
        result.update(
            value=round(ratio, 4),
            meets_target=ratio >= TARGET_RATIO,
            asset_images_per_s=round(asset["images_per_s"], 2),
            raw_images_per_s=round(raw_ips, 2),
            asset_seconds=round(asset["seconds"], 3),
            raw_seconds=round(raw_s, 3),
            asset_forward_seconds=round(asset["forward_seconds"], 3),
            asset_forward_images_per_s=round(asset["rows"] / asset["forward_seconds"], 2),
            asset_write_and_overhead_seconds=round(asset["seconds"] - asset["encode_loop_seconds"], 3),
            raw_includes="encode_image + encode_text per batch (the asset encodes both); preprocessing, "
            "tokenising and host->device copies done beforehand, not timed; half the batches timed "
            "before the asset run, half after",
            asset_includes="encode_shards (DataLoader decode/preprocess/tokenise, forward, normalise) + "
            "embeddings_batches + LanceTables.replace_part, from start of encode to end of write",
        )
        say(f"ratio asset/raw = {ratio:.3f} (target >= {TARGET_RATIO})")

        if not args.no_diagnostics:  # cheap: one batch for the image/text split
            one = min(args.batch_size, len(pix))
            img_s = run_raw(loaded, pix[:one], tok[:one], args.batch_size, "image")
            txt_s = run_raw(loaded, pix[:one], tok[:one], args.batch_size, "text")
            lo = loader_only(loaded, shards, args.batch_size, workers)
            result["diagnostics"] = {
                "raw_image_only_images_per_s": round(one / img_s, 2),
                "raw_text_only_captions_per_s": round(one / txt_s, 2),
                "loader_only_images_per_s": round(lo, 1),
                "loader_only_note": (
                    f"decode+preprocess+tokenise through encode_shards' pipeline, {workers} workers, no model"
                ),
                "preprocess_in_main_images_per_s": round(len(pix) / preprocess_s, 1),
            }
            say("diagnostics: " + json.dumps(result["diagnostics"]))
        del pix, tok, loaded

        if args.rss_images > 0:
            rss = measure_rss(args, tmp)
            result.update(rss)
            say(
                f"[rss] peak {rss['rss_peak_gib']:.3f} GiB (tree RSS sum {rss['rss_tree_sum_peak_gib']:.3f}, "
                f"tree PSS sum {rss['pss_tree_sum_peak_gib']:.3f}, largest process "
                f"{rss['rss_max_single_process_gib']:.3f}) for {rss['rss_images']} images at "
                f"{rss['rss_images_per_s']:.0f} images/s; target < {RSS_TARGET_GIB} GiB"
            )
    result["host_load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--_rss-child" in argv:  # measure_rss's clean subprocess: its own JSON line, its exit status
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        rss_child(make_parser().parse_args(argv))
        return
    run_benchmark("embed_throughput", "ratio", TARGET_RATIO, make_parser(), benchmark, argv=argv, value=0.0)


if __name__ == "__main__":
    main()
