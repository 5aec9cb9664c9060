"""Train–test similarity (seed 004: Mayilvahanan et al., "Does CLIP's generalization performance
mainly stem from high train-test similarity?", ICLR 2024): semantic deduplication of LAION,
eval-to-LAION similarities, and LAION pools pruned to be no more similar to an eval set than
the "train" set (ImageNet-train in the paper) is.
"""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset
from pydantic import Field

from asset_defs.ingest import EMBEDDINGS_TABLE, laion_embeddings
from asset_defs.metadata import bar_plot, histogram, largest_clusters, line_plot, markdown_table, quantile_table
from asset_defs.partitions import dataset, laion_part, registered
from asset_defs.visual_world import laion_vectors, reference_embeddings, reference_vectors
from laionlab.progress import Progress
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
    blocks, progress = [], Progress("reading LAION vectors", len(parts), log=context.log, unit="parts")
    for part in parts:
        blocks.append(_part_vectors(lance, part)[1])
        progress.update()
    progress.close()
    X = sample_rows(np.concatenate(blocks), config.sample_size, config.seed)
    del blocks
    if config.k > len(X):
        raise Failure(f"k={config.k} is larger than the sample ({len(X)} LAION rows); lower k")
    result = kmeans(X, config.k, n_iter=config.n_iter, seed=config.seed, spherical=True, redraw_duplicate_cosine=config.duplicate_cosine)
    files.save_npy(result.centroids, "dedup_centroids", "centroids.npy")
    return MaterializeResult(
        metadata={
            "k": config.k,
            "sample": len(X),
            "parts_seen": ", ".join(parts),
            "empty_clusters": int((result.sizes == 0).sum()),
            "cluster_sizes": histogram(
                result.sizes, "rows of the sample in the cluster", f"dedup cluster sizes (k={config.k})", files.path("dedup_centroids", "sizes.png"),
                bins=min(50, config.k), ylabel="clusters",
            ),
            "largest_clusters": largest_clusters(result.sizes),
        }
    )


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[dedup_centroids, laion_embeddings],
    kinds={"parquet", "numpy", "faiss"},
    description="Nearest dedup centroid (cosine) of every embedded row of the part, and the part's vectors "
    "sorted by cluster (seed 004's per-cluster embedding files, cut by part) for laion_dedup to stream.",
)
def dedup_assignments(context: AssetExecutionContext, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.cluster import assign

    part = context.partition_key
    centroids = files.load_npy("dedup_centroids", "centroids.npy")
    uids, X = _part_vectors(lance, part)
    if not uids:
        raise Failure(f"laion_embeddings has no rows for part {part!r}")
    if X.shape[1] != centroids.shape[1]:
        raise Failure(f"laion_embeddings[{part}] has dimension {X.shape[1]}, dedup_centroids {centroids.shape[1]}: rematerialise dedup_centroids")
    labels, sims = assign(X, centroids, metric="ip")
    frame = pl.DataFrame({"uid": uids, "cluster": labels.astype(np.int32), "centroid_sim": sims, "row": np.arange(len(uids))})
    frame = frame.sort("cluster", "uid")
    # vectors first, then the table that says they are complete (laion_dedup checks the counts)
    files.save_npy(X[frame["row"].to_numpy()], "dedup_assignments", f"{part}.vectors.npy")
    files.write_parquet(frame.drop("row"), "dedup_assignments", f"{part}.parquet")
    return MaterializeResult(metadata={"rows": frame.height, "clusters_used": frame["cluster"].n_unique(), "k": len(centroids)})


class DedupConfig(Config):
    eps: float = Field(0.124, gt=0, lt=1, description="drop a row whose max cosine to an earlier row of its cluster > 1 - eps (seed: 0.124)")
    rule: str = Field("seed", description="seed (drop vs any earlier row) or semdedup (keep one per group)")
    block_rows: int = Field(40_000, ge=1, description="rows per block inside big clusters (seed: 40,000)")
    group_rows: int = Field(1_000_000, ge=1, description="rows of consecutive clusters read from all parts at once (memory bound)")
    curve_eps: list[float] = Field([0.02, 0.05, 0.08, 0.1, 0.124, 0.15, 0.2, 0.3], description="ε values of the removal curve")


def read_dedup(files: FileStore, columns: list[str] | None = None) -> pl.DataFrame:
    """laion_dedup's current result over all parts: uid, part, cluster, keep, max_earlier_sim."""
    from laionlab.io.files import current_version_dir, list_files, read_parquet

    folder = current_version_dir(files.path("laion_dedup"))
    found = list_files(folder, "*.parquet")
    if not found:
        raise Failure(f"laion_dedup's current version {folder} holds no parquet file: rematerialise laion_dedup")
    return pl.concat([read_parquet(f, columns) for f in found])


@asset(
    group_name=GROUP,
    deps=[dedup_assignments],
    kinds={"parquet"},
    description="Semantic deduplication of LAION (seed 004's compute_dedup_paths): keep/drop per uid, streamed "
    "cluster group by cluster group over the parts, with the removal fraction and its curve over ε.",
)
def laion_dedup(context: AssetExecutionContext, config: DedupConfig, files: FileStore) -> MaterializeResult:
    from laionlab.dedup import ClusterShard, cluster_offsets, dedup_shards, removal_curve
    from laionlab.io.files import atomic_write_parquet, commit_version_dir, join, new_version_dir

    if config.rule not in ("seed", "semdedup"):
        raise Failure(f"rule must be 'seed' or 'semdedup', got {config.rule!r}")
    parts = registered(context, laion_part)
    k = len(files.load_npy("dedup_centroids", "centroids.npy", mmap=True))
    shards = []
    progress = Progress("opening dedup_assignments", len(parts), log=context.log, unit="parts")
    for part in parts:
        clusters = files.read_parquet("dedup_assignments", f"{part}.parquet", columns=["cluster"])["cluster"].to_numpy()
        # rows are read group by group (memory-mapped locally, ranged reads on an object store)
        vectors = files.load_npy("dedup_assignments", f"{part}.vectors.npy", mmap=True)
        if len(vectors) != len(clusters) or (len(clusters) and clusters.max() >= k):
            raise Failure(
                f"dedup_assignments[{part}] is inconsistent ({len(vectors)} vectors, {len(clusters)} rows, k={k}): "
                "rematerialise dedup_assignments for this part"
            )
        shards.append(ClusterShard(vectors, cluster_offsets(clusters, k)))
        progress.update()
    progress.close()
    total = sum(len(s.vectors) for s in shards)
    context.log.info(f"deduplicating {total} rows of {len(parts)} parts in {k} clusters, {config.group_rows} rows at a time")
    # the library logs rows done, rate and ETA through the laionlab logger
    flags = dedup_shards(shards, eps=config.eps, rule=config.rule, block_rows=config.block_rows, group_rows=config.group_rows)
    version = new_version_dir(files.path("laion_dedup"))
    removed, curve_counts = 0, np.zeros(len(config.curve_eps))
    progress = Progress("writing laion_dedup", len(parts), log=context.log, unit="parts")
    for part, (keep, max_sim) in zip(parts, flags):
        frame = files.read_parquet("dedup_assignments", f"{part}.parquet", columns=["uid", "cluster"])
        frame = frame.with_columns(part=pl.lit(part), keep=pl.Series(keep), max_earlier_sim=pl.Series(max_sim))
        atomic_write_parquet(frame, join(version, f"{part}.parquet"))
        removed += int((~keep).sum())
        curve_counts += np.array([f * len(keep) for _, f in removal_curve(max_sim, config.curve_eps)])
        progress.update()
    progress.close()
    commit_version_dir(files.path("laion_dedup"), version)
    frac = curve_counts / max(total, 1)
    return MaterializeResult(
        metadata={
            "rows": total,
            "removed": removed,
            "removal_fraction": removed / max(total, 1),
            "eps": config.eps,
            "rule": config.rule,
            "parts_seen": ", ".join(parts),
            "removal_curve": line_plot(
                list(config.curve_eps), {"removed": list(frac)}, "ε (drop when cosine > 1 − ε)", "removal fraction vs ε (seed rule)",
                files.path("laion_dedup", "removal_curve.png"), logx=False, ylabel="fraction removed",
            ),
            "removal_table": markdown_table(
                pl.DataFrame({"eps": list(config.curve_eps), "drop_when_cosine_above": [round(1 - e, 4) for e in config.curve_eps], "fraction_removed": frac.round(4)})
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
    progress = Progress(f"{name} vs LAION", total, log=context.log)
    for part in parts:
        uids, X = _part_vectors(lance, part)
        if X.shape[1] != queries.shape[1]:
            raise Failure(f"eval set {name!r} has dimension {queries.shape[1]}, laion_embeddings[{part}] {X.shape[1]}")
        tops.append(topk_similar(queries, X, min(config.k, len(X)), corpus_ids=np.arange(offset, offset + len(X)), block_rows=config.block_rows))
        max_rows.append(max_similarity(X, queries, block_rows=config.block_rows))
        all_uids.extend(uids)
        offset += len(X)
        progress.update(len(X))
    progress.close()
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
        metadata={
            "eval_samples": q,
            "k": kk,
            "laion_rows": offset,
            "mean_top1_sim": float(top.scores[:, 0].mean()),
            "parts_seen": ", ".join(parts),
            "similarity_histogram": histogram(
                None, "cosine similarity", f"{name} vs LAION", files.path("eval_to_laion_similarity", f"{name}.png"),
                series={"eval sample → nearest LAION row": top.scores[:, 0], "LAION row → nearest eval sample": maxsim["max_sim"].to_numpy()},
            ),
            "closest_pairs": markdown_table(candidates.filter(pl.col("rank") == 0).sort("sim", descending=True).head(10)),
        }
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
        metadata={
            "train_dataset": config.train_dataset,
            "eval_samples": len(thresholds),
            "mean_threshold": float(thresholds.mean()),
            "threshold_histogram": histogram(
                thresholds, f"cosine similarity to the nearest {config.train_dataset} sample", f"{name}: per-sample pruning thresholds",
                files.path("train_to_eval_threshold", f"{name}.png"), ylabel="eval samples",
            ),
            "threshold_quantiles": quantile_table(thresholds, "threshold"),
        }
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
    from laionlab.dedup import subsample

    name = context.partition_key
    dedup = read_dedup(files, ["uid", "keep"])
    pool = dedup.filter(pl.col("keep")).select("uid")
    candidates = files.read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")
    thresholds = files.read_parquet("train_to_eval_threshold", f"{name}.parquet")
    if candidates["eval_index"].max() >= thresholds.height:
        raise Failure(f"eval_to_laion_similarity[{name}] and train_to_eval_threshold[{name}] disagree on the eval set size: rematerialise both")
    # seed 004 (get_paths_chunk.py): drop a candidate when sims > per_query_imagenet_train
    too_close = candidates.join(thresholds, on="eval_index").filter(pl.col("sim") > pl.col("threshold")).select("uid").unique()
    kept = pool.join(too_close, on="uid", how="anti").sort("uid")["uid"]
    pruned_size = len(kept)
    if config.target_size is not None:
        kept = kept.gather(np.sort(subsample(np.arange(len(kept)), config.target_size, config.seed)))
    files.write_parquet(pl.DataFrame({"uid": kept}), "pruned_pools", f"{name}.parquet")
    sizes = pl.DataFrame({"stage": ["laion", "deduplicated", "pruned", "final"], "rows": [dedup.height, pool.height, pruned_size, len(kept)]})
    return MaterializeResult(
        metadata={
            "sizes": markdown_table(sizes),
            "pruned_away": pool.height - pruned_size,
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
