"""Train–test similarity (seed 004: Mayilvahanan et al., "Does CLIP's generalization performance
mainly stem from high train-test similarity?", ICLR 2024): semantic deduplication of LAION,
eval-to-LAION similarities, and LAION pools pruned to be no more similar to an eval set than
the "train" set (ImageNet-train in the paper) is.
"""

from pathlib import Path

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset
from pydantic import Field

from asset_defs.ingest import EMBEDDINGS_TABLE, laion_embeddings
from asset_defs.metadata import bar_plot, line_plot, markdown_table
from asset_defs.partitions import dataset, laion_part, registered
from asset_defs.visual_world import laion_vectors, reference_embeddings, reference_vectors
from laionlab.io.lance import read_vectors
from resources import FileStore, LanceStore

GROUP = "train_test_similarity"


def _part_vectors(lance: LanceStore, part: str) -> tuple[list[str], np.ndarray]:
    return laion_vectors(lance, where=f"part = '{part}'", raw=False)


class DedupCentroidsConfig(Config):
    k: int = Field(50_000, ge=1, description="clusters (seed: 50,000 for LAION-400M)")
    sample_size: int = Field(10_000_000, ge=1, description="rows sampled uniformly across parts for k-means")
    duplicate_cosine: float = Field(0.9, gt=0, lt=1, description="initial centres closer than this are redrawn (seed: 0.9)")
    n_iter: int = Field(25, ge=1)
    seed: int = Field(0)


@asset(
    group_name=GROUP,
    deps=[laion_embeddings],
    kinds={"faiss", "numpy"},
    pool="gpu",
    description="Spherical k-means centroids of LAION image embeddings for deduplication (seed 004: 50,000 "
    "clusters, initial centres with cosine > 0.9 redrawn).",
)
def dedup_centroids(context: AssetExecutionContext, config: DedupCentroidsConfig, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.cluster import kmeans
    from laionlab.coverage.report import sample_rows

    parts = registered(context, laion_part)
    X = np.concatenate([_part_vectors(lance, p)[1] for p in parts])
    X = sample_rows(X, config.sample_size, config.seed)
    if config.k > len(X):
        raise Failure(f"k={config.k} is larger than the sample ({len(X)} LAION rows); lower k")
    result = kmeans(X, config.k, n_iter=config.n_iter, seed=config.seed, spherical=True, redraw_duplicate_cosine=config.duplicate_cosine)
    out = Path(files.path("dedup_centroids"))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "centroids.npy", result.centroids)
    return MaterializeResult(
        metadata={"k": config.k, "sample": len(X), "parts_seen": ", ".join(parts), "empty_clusters": int((result.sizes == 0).sum())}
    )


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[dedup_centroids, laion_embeddings],
    kinds={"parquet", "faiss"},
    description="Nearest dedup centroid (cosine) of every embedded row of the part.",
)
def dedup_assignments(context: AssetExecutionContext, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.cluster import assign

    part = context.partition_key
    centroids = np.load(Path(files.path("dedup_centroids")) / "centroids.npy")
    uids, X = _part_vectors(lance, part)
    if not uids:
        raise Failure(f"laion_embeddings has no rows for part {part!r}")
    labels, sims = assign(X, centroids, metric="ip")
    frame = pl.DataFrame({"uid": uids, "cluster": labels, "centroid_sim": sims}).sort("uid")
    files.write_parquet(frame, "dedup_assignments", f"{part}.parquet")
    return MaterializeResult(metadata={"rows": frame.height, "clusters_used": frame["cluster"].n_unique()})


class DedupConfig(Config):
    eps: float = Field(0.124, gt=0, lt=1, description="drop a row whose max cosine to an earlier row of its cluster > 1 - eps (seed: 0.124)")
    rule: str = Field("seed", description="seed (drop vs any earlier row) or semdedup (keep one per group)")
    block_rows: int = Field(40_000, ge=1, description="rows per block inside big clusters (seed: 40,000)")


@asset(
    group_name=GROUP,
    deps=[dedup_assignments],
    kinds={"parquet"},
    description="Semantic deduplication of LAION (seed 004's compute_dedup_paths): keep/drop per uid, with the "
    "removal fraction and its curve over ε.",
)
def laion_dedup(context: AssetExecutionContext, config: DedupConfig, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.dedup import dedup_keep, keep_from_max_sim, max_earlier_similarity, removal_curve

    parts = registered(context, laion_part)
    uids, blocks, labels = [], [], []
    for part in parts:
        part_uids, X = _part_vectors(lance, part)
        assigned = files.read_parquet("dedup_assignments", f"{part}.parquet")
        frame = pl.DataFrame({"uid": part_uids, "row": np.arange(len(part_uids))}).join(assigned, on="uid").sort("uid")
        uids.extend(frame["uid"].to_list())
        blocks.append(X[frame["row"].to_numpy()])
        labels.append(frame["cluster"].to_numpy())
    X, labels = np.concatenate(blocks), np.concatenate(labels)
    # one similarity pass serves the seed rule's mask and the removal curve
    max_sim = max_earlier_similarity(X, labels, block_rows=config.block_rows)
    if config.rule == "seed":
        keep = keep_from_max_sim(max_sim, eps=config.eps)
    else:
        keep = dedup_keep(X, labels, eps=config.eps, block_rows=config.block_rows, rule=config.rule)
    curve = removal_curve(max_sim, [0.02, 0.05, 0.08, 0.1, 0.124, 0.15, 0.2, 0.3])
    result = pl.DataFrame({"uid": uids, "keep": keep, "max_earlier_sim": max_sim})
    files.write_parquet(result, "laion_dedup", "dedup.parquet")
    eps, frac = zip(*[(c[0], c[1]) for c in curve])
    return MaterializeResult(
        metadata={
            "rows": len(uids),
            "removed": int((~keep).sum()),
            "removal_fraction": float((~keep).mean()),
            "eps": config.eps,
            "rule": config.rule,
            "parts_seen": ", ".join(parts),
            "removal_curve": line_plot(
                list(eps), {"removed": list(frac)}, "ε (drop when cosine > 1 − ε)", "removal fraction vs ε",
                files.path("laion_dedup", "removal_curve.png"), logx=False, ylabel="fraction removed",
            ),
        }
    )


class EvalSimilarityConfig(Config):
    k: int = Field(10_000, ge=1, description="candidates per eval sample (seed: 10,000)")
    block_rows: int = Field(65_536, ge=1)


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[reference_embeddings, laion_embeddings],
    kinds={"parquet", "numpy"},
    pool="gpu",
    description="For one eval dataset: each eval sample's exact top-k LAION neighbours (merged over parts) and each "
    "LAION row's max similarity to the eval set.",
)
def eval_to_laion_similarity(
    context: AssetExecutionContext, config: EvalSimilarityConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.retrieval import max_similarity, merge_topk, topk_similar

    name = context.partition_key
    queries = reference_vectors(lance, name, raw=False)
    parts = registered(context, laion_part)
    tops, max_rows, all_uids = [], [], []
    offset = 0
    total = sum(lance.tables().count(EMBEDDINGS_TABLE, f"part = '{p}'") for p in parts)
    if config.k > total:
        raise Failure(f"k={config.k} candidates per eval sample is larger than the LAION pool ({total} rows); lower k")
    for part in parts:
        uids, X = _part_vectors(lance, part)
        if X.shape[1] != queries.shape[1]:
            raise Failure(f"eval set {name!r} has dimension {queries.shape[1]}, laion_embeddings[{part}] {X.shape[1]}")
        tops.append(topk_similar(queries, X, min(config.k, len(X)), corpus_ids=np.arange(offset, offset + len(X)), block_rows=config.block_rows))
        max_rows.append(max_similarity(X, queries, block_rows=config.block_rows))
        all_uids.extend(uids)
        offset += len(X)
    top = merge_topk(tops, config.k)
    uid_arr = np.array(all_uids)
    q, kk = top.ids.shape
    candidates = pl.DataFrame(
        {"eval_index": np.repeat(np.arange(q), kk), "rank": np.tile(np.arange(kk), q), "uid": uid_arr[top.ids.ravel()], "sim": top.scores.ravel()}
    )
    files.write_parquet(candidates, "eval_to_laion_similarity", f"{name}.topk.parquet")
    maxsim = pl.DataFrame({"uid": all_uids, "max_sim": np.concatenate(max_rows)})
    files.write_parquet(maxsim, "eval_to_laion_similarity", f"{name}.max_sim.parquet")
    return MaterializeResult(
        metadata={"eval_samples": q, "k": kk, "laion_rows": offset, "mean_top1_sim": float(top.scores[:, 0].mean()), "parts_seen": ", ".join(parts)}
    )


class ThresholdConfig(Config):
    train_dataset: str = Field(description="catalog dataset playing ImageNet-train (the paper's reference 'train' set)")


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[reference_embeddings],
    kinds={"parquet"},
    description="For each eval sample, the similarity to its nearest neighbour in the 'train' reference set "
    "(ImageNet-train → ImageNet-X in the paper): the per-sample pruning threshold.",
)
def train_to_eval_threshold(context: AssetExecutionContext, config: ThresholdConfig, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.dedup import nearest_similarity

    name = context.partition_key
    thresholds = nearest_similarity(reference_vectors(lance, name, raw=False), reference_vectors(lance, config.train_dataset, raw=False))
    files.write_parquet(pl.DataFrame({"eval_index": np.arange(len(thresholds)), "threshold": thresholds}), "train_to_eval_threshold", f"{name}.parquet")
    return MaterializeResult(
        metadata={"train_dataset": config.train_dataset, "eval_samples": len(thresholds), "mean_threshold": float(thresholds.mean())}
    )


class PrunedPoolConfig(Config):
    target_size: int | None = Field(None, ge=1, description="optional uniform subsample of the pruned pool (seeded)")
    seed: int = Field(0)


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[laion_dedup, eval_to_laion_similarity, train_to_eval_threshold],
    kinds={"parquet"},
    description="The deduplicated LAION pool minus every row that is some eval sample's candidate with similarity "
    "above that sample's train→eval threshold (seed 004's get_paths_chunk), optionally subsampled.",
)
def pruned_pools(context: AssetExecutionContext, config: PrunedPoolConfig, files: FileStore) -> MaterializeResult:
    from laionlab.dedup import prune_mask, subsample

    name = context.partition_key
    dedup = files.read_parquet("laion_dedup", "dedup.parquet")
    pool = dedup.filter(pl.col("keep"))["uid"]
    candidates = files.read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")
    thresholds = files.read_parquet("train_to_eval_threshold", f"{name}.parquet")["threshold"].to_numpy()
    index = {u: i for i, u in enumerate(pool.to_list())}
    in_pool = candidates.filter(pl.col("uid").is_in(pool.implode()))
    q = len(thresholds)
    ids = np.full((q, max(1, candidates["rank"].max() + 1)), -1, np.int64)
    scores = np.full(ids.shape, -np.inf, np.float32)
    rows = in_pool["eval_index"].to_numpy()
    ranks = in_pool["rank"].to_numpy()
    ids[rows, ranks] = np.array([index[u] for u in in_pool["uid"].to_list()], np.int64)
    scores[rows, ranks] = in_pool["sim"].to_numpy()
    keep = prune_mask(ids, scores, thresholds, len(pool))
    kept = pool.filter(pl.Series(keep))
    if config.target_size is not None:
        kept = kept.gather(np.sort(subsample(np.arange(len(kept)), config.target_size, config.seed)))
    files.write_parquet(pl.DataFrame({"uid": kept}), "pruned_pools", f"{name}.parquet")
    sizes = pl.DataFrame({"stage": ["laion", "deduplicated", "pruned", "final"], "rows": [dedup.height, len(pool), int(keep.sum()), len(kept)]})
    return MaterializeResult(
        metadata={
            "sizes": markdown_table(sizes),
            "pruned_away": len(pool) - int(keep.sum()),
            "final_size": len(kept),
            "sizes_plot": bar_plot(sizes["stage"].to_list(), sizes["rows"].to_list(), f"pool size for {name}", "rows", files.path("pruned_pools", f"{name}.png")),
        }
    )


@asset(
    group_name=GROUP,
    deps=[pruned_pools],
    kinds={"parquet"},
    description="Size of the pruned LAION pool for every eval dataset (table and plot).",
)
def pruned_pool_sizes(context: AssetExecutionContext, files: FileStore) -> MaterializeResult:
    names = registered(context, dataset)
    sizes = pl.DataFrame({"dataset": names, "pool_size": [files.read_parquet("pruned_pools", f"{n}.parquet").height for n in names]})
    files.write_parquet(sizes, "pruned_pools", "sizes.parquet")
    return MaterializeResult(
        metadata={
            "sizes": markdown_table(sizes),
            "sizes_plot": bar_plot(names, sizes["pool_size"].to_list(), "pruned pool size by eval dataset", "rows", files.path("pruned_pools", "sizes.png")),
        }
    )


assets = [
    dedup_centroids,
    dedup_assignments,
    laion_dedup,
    eval_to_laion_similarity,
    train_to_eval_threshold,
    pruned_pools,
    pruned_pool_sizes,
]
