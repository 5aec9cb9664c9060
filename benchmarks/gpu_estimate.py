"""GPU figures behind the README's LAION-400M / LAION-2B estimate (run on a CUDA host).

Measures, on one GPU, the project's own CUDA paths, and turns them into wall time and
GPU-hours for LAION-400M (413M pairs) and LAION-2B-en (2.32B pairs):

1. Embedding (``laion_embeddings``): for each ``--models`` (open_clip architectures, random
   init: the speed does not depend on the weights), fp16 by default:
   - raw: ``encode_image`` / ``encode_text`` on preloaded, preprocessed tensors (the GPU's
     ceiling), batch ``--batch-size``;
   - loader: the asset's decode + preprocess + tokenise pipeline alone (``--num-workers``
     DataLoader workers, no model): the CPU's ceiling;
   - pipeline: ``laionlab.embed.encode_shards`` end to end (decode, preprocess, forward,
     normalise), i.e. the asset without its LanceDB write (measured on the CPU host by
     ``embed_throughput.py``).
   Synthetic 256x256 JPEGs (img2dataset's default ``image_size``) in webdataset shards.
2. Similarity search (seed 004): ``laionlab.neighbours.max_similarity`` of LAION rows against
   a 50,000-row eval set (ImageNet-val size) and ``topk_similar`` with k = 1 against 50,000
   centroids (the cost of one k-means assignment pass / ``dedup_assignments``), on torch CUDA.

Headline: value = pipeline images/s / min(raw images/s, loader images/s) for the first model
(how well the asset overlaps CPU decoding with the GPU), target >= 0.8. The estimates are in
the JSON line's ``estimates``. Prints progress, ends with one JSON line, always exits 0.
Run from the repository root: ``python benchmarks/gpu_estimate.py [--help]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks._common import run_benchmark, say  # noqa: E402
from benchmarks.embed_throughput import _sync, loader_only, preload, read_samples, run_raw, write_shards  # noqa: E402

TARGET = 0.8
LAION = {"LAION-400M": 413_000_000, "LAION-2B-en": 2_320_000_000}


def embedding(args, shards: list[str], images: list[bytes], captions: list[str]) -> dict:
    import torch

    from laionlab.embed.encode import EncodeStats, encode_shards
    from laionlab.embed.model import ClipSpec, load_clip

    out = {}
    for name in args.models:
        loaded = load_clip(ClipSpec(name, None, None, args.device, args.precision, 0))
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()  # the peak below is this model's, not the largest so far
        if not out:  # the DataLoader's forkserver starts once per process: not part of any figure
            t0 = time.perf_counter()
            loader_only(loaded, shards[:1], args.batch_size, 1, args.decode)
            say(f"forkserver start + one shard: {time.perf_counter() - t0:.1f}s")
        pix, tok = preload(loaded, images[: args.raw_images], captions[: args.raw_images])
        run_raw(loaded, pix[: args.batch_size], tok[: args.batch_size], args.batch_size)  # warm-up
        img_s = run_raw(loaded, pix, tok, args.batch_size, "image")
        txt_s = run_raw(loaded, pix, tok, args.batch_size, "text")
        both_s = run_raw(loaded, pix, tok, args.batch_size, "both")
        del pix, tok
        lo = loader_only(loaded, shards, args.batch_size, args.num_workers, args.decode)
        stats, rows = EncodeStats(), 0
        start = time.perf_counter()
        for batch in encode_shards(
            loaded, shards, args.batch_size, args.num_workers, stats, log_every_s=1e9, decode=args.decode
        ):
            rows += len(batch.uid)
        _sync(loaded.device)
        pipe = rows / (time.perf_counter() - start)
        n = args.raw_images
        fig = {
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "raw_image_per_s": round(n / img_s, 1),
            "raw_text_per_s": round(n / txt_s, 1),
            "raw_both_per_s": round(n / both_s, 1),
            "loader_per_s": round(lo, 1),
            "pipeline_per_s": round(pipe, 1),
            "pipeline_rows": rows,
            "gpu_memory_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if torch.cuda.is_available()
            else None,
        }
        fig["efficiency"] = round(pipe / min(fig["raw_both_per_s"], lo), 3)
        if name == args.models[0] and loaded.dtype != torch.float32:
            fig["min_cosine_vs_fp32"] = agreement(loaded, images[:256], captions[:256])
        out[name] = fig
        say(f"[embed] {name}: " + json.dumps(fig))
        del loaded
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def agreement(loaded, images: list[bytes], captions: list[str]) -> float:
    """Smallest cosine between this precision's image embeddings and fp32's (same weights)."""
    import torch

    pix, _ = preload(loaded, images, captions)
    model32 = loaded.model.float()
    with torch.inference_mode():
        e32 = torch.nn.functional.normalize(model32.encode_image(pix.float()).float(), dim=1)
        model = model32.to(loaded.dtype)
        e16 = torch.nn.functional.normalize(model.encode_image(pix).float(), dim=1)
    return round(float((e32 * e16).sum(1).min()), 5)


def search(args) -> dict:
    import numpy as np
    import torch

    from laionlab.neighbours import max_similarity, topk_similar

    dev = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    g = torch.Generator(device=dev).manual_seed(0)

    def unit(n: int, d: int) -> np.ndarray:
        x = torch.randn(n, d, generator=g, device=dev)
        return torch.nn.functional.normalize(x, dim=1).cpu().numpy()

    corpus, evalset, centroids = unit(args.search_rows, args.dim), unit(50_000, args.dim), unit(50_000, args.dim)
    max_similarity(corpus[:20_000], evalset, device=dev)  # warm-up
    start = time.perf_counter()
    max_similarity(corpus, evalset, device=dev)
    ms = time.perf_counter() - start
    assign_rows = min(args.search_rows, 1_000_000)
    topk_similar(corpus[:4096], centroids, 1, device=dev, query_block_rows=4096)
    start = time.perf_counter()
    topk_similar(corpus[:assign_rows], centroids, 1, device=dev, query_block_rows=4096)
    assign = time.perf_counter() - start
    check = slice(0, 20_000)  # the CUDA path against the NumPy one on the same rows
    diff = np.abs(
        max_similarity(corpus[check], evalset, device=dev) - max_similarity(corpus[check], evalset, device="cpu")
    )
    fig = {
        "dim": args.dim,
        "max_sim_cuda_vs_numpy_max_abs_diff": float(diff.max()),
        "max_sim_rows": args.search_rows,
        "max_sim_vs_50k_rows_per_s": round(args.search_rows / ms, 1),
        "assign_vs_50k_centroids_rows_per_s": round(assign_rows / assign, 1),
    }
    say("[search] " + json.dumps(fig))
    return fig


def estimates(embed: dict, srch: dict | None, gpus: int) -> dict:
    """Hours on ``gpus`` GPUs (one host each, CPU decoding as measured), and GPU-hours."""
    out = {}
    for name, fig in embed.items():
        for data, rows in LAION.items():
            hours = rows / fig["pipeline_per_s"] / 3600
            out[f"{name} embed {data}"] = {
                "gpu_hours": round(hours, 1),
                f"wall_hours_on_{gpus}_gpus": round(hours / gpus, 1),
            }
    if srch:
        for data, rows in LAION.items():
            ms = rows / srch["max_sim_vs_50k_rows_per_s"] / 3600
            # k-means as dedup_centroids' defaults run it (a 10M-row sample, 25 iterations,
            # 50,000 centroids), then one assignment of every row (dedup_assignments)
            sample = 10_000_000
            km = (25 * sample + rows) / srch["assign_vs_50k_centroids_rows_per_s"] / 3600
            out[f"max_sim vs 50k eval {data}"] = {"gpu_hours": round(ms, 2)}
            out[f"k-means 50k + assign {data}"] = {"gpu_hours": round(km, 2)}
    return out


def benchmark(args, result: dict) -> None:
    import torch

    result.update(
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        cpu_count=os.cpu_count(),
        num_workers=args.num_workers,
        torch=torch.__version__,
    )
    if not torch.cuda.is_available() and args.device in ("auto", "cuda") and not args.allow_cpu:
        result["error"] = "no CUDA device: these figures are for GPU hosts (--allow-cpu runs it anyway, slowly)"
        say(result["error"])
        return
    result["search"] = srch = None if args.skip_search else search(args)
    with tempfile.TemporaryDirectory(prefix="gpu_estimate_") as tmp:
        t0 = time.perf_counter()
        shards = write_shards(Path(tmp) / "shards", args.n_images, 256, args.shard_size, 0)
        images, captions = read_samples(shards)
        say(f"wrote {args.n_images} JPEGs in {len(shards)} shards ({time.perf_counter() - t0:.1f}s)")
        result["embedding"] = embed = embedding(args, shards, images, captions)
    result["estimates"] = estimates(embed, srch, args.gpus)
    first = embed[args.models[0]]
    result.update(value=first["efficiency"], meets_target=first["efficiency"] >= TARGET)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14", "ViT-B-16-plus-240"])
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--decode", default="auto", choices=["auto", "cpu", "device", "pil"], help="encode_shards' decode mode"
    )
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--n-images", type=int, default=6144)
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--raw-images", type=int, default=2048)
    p.add_argument("--search-rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--gpus", type=int, default=8, help="GPUs for the wall-time column")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument(
        "--allow-cpu", action="store_true", help="run without a GPU (small sizes only: ViT-L-14 on a CPU takes hours)"
    )
    run_benchmark("gpu_estimate", "ratio", TARGET, p, benchmark, argv=argv, value=0.0)


if __name__ == "__main__":
    main()
