"""Train–test similarity (seed 004: Mayilvahanan et al., "Does CLIP's generalization performance
mainly stem from high train-test similarity?", ICLR 2024): semantic deduplication of LAION,
eval-to-LAION similarities, and LAION pools pruned to be no more similar to an eval set than
the "train" set (ImageNet-train in the paper) is.
"""

import math
import zlib
from typing import Literal

import numpy as np
import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import EMBEDDINGS_TABLE, downloaded_shards, laion_embeddings, reference_embeddings
from asset_defs.lineage import (
    latest_by_partition,
    parts_seen_of,
    require_same_params,
    storage_ids,
    wait_for_earlier_parts,
)
from asset_defs.metadata import (
    bar_plot,
    gallery_metadata,
    histogram,
    largest_clusters,
    line_plot,
    markdown_table,
    nothing_to_show,
    quantile_table,
)
from asset_defs.partitions import dataset, every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from asset_defs.readers import laion_vectors, reference_vectors, sample_laion_vectors
from laionlab.progress import Progress
from resources import DatasetCatalog, FileStore, LanceStore

GROUP = "train_test_similarity"


def _part_vectors(lance: LanceStore, part: str) -> tuple[list[str], np.ndarray]:
    return laion_vectors(lance, part=part, raw=False)


@profiled("dedup_centroids")
class DedupCentroidsConfig(Config):
    k: int | None = Field(
        None, ge=1, description="clusters; unset: LAION rows / rows_per_cluster (seed: 50,000 for LAION-400M)"
    )
    rows_per_cluster: int = Field(
        8_260,
        ge=1,
        description="with k unset, k = ceil(LAION rows / this): the seed's 413M rows / 50,000 clusters, "
        "so laion_dedup's cost per row (≈ rows_per_cluster / 2 comparisons) stays the same as LAION grows",
    )
    sample_size: int = Field(
        10_000_000,
        ge=1,
        description="rows sampled for k-means, from each part in proportion to its size (the seed used every row)",
    )
    duplicate_cosine: float = Field(
        0.9, gt=0, lt=1, description="initial centres closer than this are redrawn (seed: 0.9)"
    )
    n_iter: int = Field(25, ge=1)
    seed: int = Field(0, ge=0)


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_embeddings)],
    kinds={"faiss", "numpy"},
    pool="gpu",
    description="Spherical k-means centroids of LAION image embeddings for deduplication (seed 004: 50,000 "
    "clusters, initial centres with cosine > 0.9 redrawn), trained on a sample drawn part by part.",
)
def dedup_centroids(
    context: AssetExecutionContext, config: DedupCentroidsConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    """Spherical (cosine) k-means on ``sample_size`` rows drawn from every part in proportion
    to its size (:func:`laionlab.cluster.sample_across_parts`; only the sampled rows' vectors
    are read). The seed (``assign_clusters.py``) ran Euclidean Lloyd on all rows, with centres
    the plain means of their unit vectors. For a unit row ``x``, ``|x - c|² = 1 + |c|² - 2<x, c>``,
    so Euclidean assignment is ``argmax <x, c> - |c|²/2`` and equals cosine assignment
    ``argmax <x, c/|c|>`` exactly when all centres have the same norm, as ours (unit) do; the
    seed's means have norms below 1 that differ between tight and spread clusters, so its
    assignments can differ near cluster borders. Update directions agree (a mean and its
    normalised version point the same way). Every row is then assigned by cosine in
    dedup_assignments."""
    from laionlab.cluster import kmeans

    parts = registered(context, laion_part)
    X, counts = sample_laion_vectors(context, lance, parts, config.sample_size, config.seed)
    k = config.k or math.ceil(sum(counts) / config.rows_per_cluster)
    if k > len(X):
        raise Failure(f"k={k} is larger than the sample ({len(X)} LAION rows); lower k (or raise rows_per_cluster)")
    context.log.info(
        f"k = {k} ({'set' if config.k else f'{sum(counts):,} rows / rows_per_cluster {config.rows_per_cluster:,}'})"
    )
    result = kmeans(
        X, k, n_iter=config.n_iter, seed=config.seed, spherical=True, redraw_duplicate_cosine=config.duplicate_cosine
    )
    files.save_npy(result.centroids, "dedup_centroids", "centroids.npy")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            "k": k,
            "rows_per_cluster": round(sum(counts) / k, 1),
            "dedup_comparisons_per_row": round(sum(counts) / k / 2, 1),  # ≈ what laion_dedup costs per row
            "sample": len(X),
            "laion_rows": sum(counts),
            "parts_seen": ", ".join(parts),
            "empty_clusters": int((result.sizes == 0).sum()),
            "cluster_sizes": histogram(
                result.sizes,
                "rows of the sample in the cluster",
                f"dedup cluster sizes (k={k})",
                files.path("dedup_centroids", "sizes.png"),
                bins=min(50, k),
                ylabel="clusters",
            ),
            "largest_clusters": largest_clusters(result.sizes),
        }
    )


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[every_partition(dedup_centroids), laion_embeddings],
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
        raise Failure(
            f"laion_embeddings[{part}] has dimension {X.shape[1]}, dedup_centroids {centroids.shape[1]}: "
            "rematerialise dedup_centroids"
        )
    labels, sims = assign(X, centroids, metric="ip")
    frame = pl.DataFrame(
        {"uid": uids, "cluster": labels.astype(np.int32), "centroid_sim": sims, "row": np.arange(len(uids))}
    )
    frame = frame.sort("cluster", "uid")
    # vectors first, then the table that says they are complete (laion_dedup checks the counts)
    files.save_npy(X[frame["row"].to_numpy()], "dedup_assignments", f"{part}.vectors.npy")
    files.write_parquet(frame.drop("row"), "dedup_assignments", f"{part}.parquet")
    return MaterializeResult(
        metadata={"rows": frame.height, "clusters_used": frame["cluster"].n_unique(), "k": len(centroids)}
    )


@profiled("laion_dedup")
class DedupConfig(Config):
    eps: float = Field(
        0.124,
        gt=0,
        lt=1,
        description="drop a row whose max cosine to an earlier row of its cluster > 1 - eps (seed: 0.124)",
    )
    block_rows: int = Field(40_000, ge=1, description="rows per block inside big clusters (seed: 40,000)")
    group_rows: int = Field(
        1_000_000, ge=1, description="rows of consecutive clusters read from all parts at once (memory bound)"
    )
    curve_eps: list[float] = Field(
        [0.02, 0.05, 0.08, 0.1, 0.124, 0.15, 0.2, 0.3], description="ε values of the removal curve"
    )
    keep: Literal["earlier_row", "hard", "easy", "random"] = Field(
        "earlier_row",
        description="which row of a duplicate group survives: earlier_row (seed 004: the stable order, parts then "
        "uids); hard / easy / random: SemDeDup's order inside the part (farthest from the centroid first, nearest "
        "first, shuffled); earlier parts' rows still come first, so earlier parts' flags never change",
    )
    keep_seed: int = Field(0, ge=0, description="seed of keep='random' (with a hash of the part name)")


def _version_files(files: FileStore, *folder: str) -> list[str]:
    """The Parquet files of the current version of a versioned output folder (one per part)."""
    current = files.current_version(*folder)
    found = current.glob("*.parquet")
    if not found:
        raise Failure(
            f"{'/'.join(folder)}'s current version {current.uri} holds no parquet file: rematerialise {folder[0]}"
        )
    return found


def _read_version(files: FileStore, *folder: str, columns: list[str] | None = None) -> pl.DataFrame:
    from laionlab.dedup import concat_parquets

    return concat_parquets(_version_files(files, *folder), columns)


def dedup_files(files: FileStore, parts: list[str]) -> list[str]:
    """laion_dedup's Parquet files of ``parts`` (uid, cluster, part, keep, max_earlier_sim)."""
    missing = [p for p in parts if not files.exists("laion_dedup", f"{p}.parquet")]
    if missing:
        raise Failure(f"laion_dedup has no result for {', '.join(missing)}: materialise laion_dedup for these parts")
    return [files.path("laion_dedup", f"{p}.parquet") for p in parts]


def read_dedup(files: FileStore, parts: list[str], columns: list[str] | None = None) -> pl.DataFrame:
    """laion_dedup over ``parts``, in one frame (small tables, tests)."""
    return pl.concat([files.read_parquet("laion_dedup", f"{p}.parquet", columns=columns) for p in parts])


def _open_shards(
    context: AssetExecutionContext, files: FileStore, parts: list[str], k: int, keep: str = "earlier_row", seed: int = 0
) -> tuple[list, list | None]:
    """dedup_assignments of every part as ClusterShards (vectors memory-mapped locally, read
    with ranged reads on an object store), after checking each part's files agree, and each
    part's keep-order keys (None for keep='earlier_row'; 'random' seeded by ``seed`` and the
    part name's CRC-32, so a part's order never depends on the other parts)."""
    from laionlab.dedup import ClusterShard, cluster_offsets, keep_order_keys

    shards, keys = [], []
    progress = Progress("opening dedup_assignments", len(parts), log=context.log, unit="parts")
    for part in parts:
        frame = files.read_parquet("dedup_assignments", f"{part}.parquet", columns=["cluster", "centroid_sim"])
        clusters = frame["cluster"].to_numpy()
        keys.append(keep_order_keys(frame["centroid_sim"].to_numpy(), keep, seed, zlib.crc32(part.encode())))
        vectors = files.load_npy("dedup_assignments", f"{part}.vectors.npy", mmap=True)
        if len(vectors) != len(clusters) or (len(clusters) and clusters.max() >= k):
            raise Failure(
                f"dedup_assignments[{part}] is inconsistent ({len(vectors)} vectors, {len(clusters)} rows, k={k}): "
                "rematerialise dedup_assignments for this part"
            )
        shards.append(ClusterShard(vectors, cluster_offsets(clusters, k)))
        progress.update()
    progress.close()
    return shards, (None if keep == "earlier_row" else keys)


# A backfill launches laion_dedup[p] once dedup_assignments[p] is done (Dagster cannot map a
# dynamic partition to the partitions before it); the earlier parts' runs may still be going:
# lineage.wait_for_earlier_parts retries the step while they are.


def dedup_chain_problems(instance, parts: list[str]) -> dict[str, str]:
    """Parts whose laion_dedup result no longer matches the earlier parts it was computed
    against (seed 004's rule compares a row with the earlier rows of its cluster, so
    re-materialising part p's assignments, or registering a part that sorts before p,
    changes every later part's flags): part -> why."""
    latest = latest_by_partition(instance, laion_dedup.key, parts)
    current = storage_ids(instance, dedup_assignments.key, parts)
    problems = {}
    for i, part in enumerate(parts):
        record = latest.get(part)
        if record is None:
            problems[part] = "not materialised"
            continue
        read = record.asset_materialization.metadata.get("assignments_read")
        read = read.value if read is not None else {}
        if list(read) != parts[: i + 1]:
            problems[part] = f"computed after parts [{', '.join(list(read)[:-1])}], now after [{', '.join(parts[:i])}]"
        elif changed := [q for q in read if read[q] != current.get(q)]:
            problems[part] = f"dedup_assignments re-materialised since for {', '.join(changed)}"
    return problems


def require_dedup_chain(context: AssetExecutionContext, parts: list[str]) -> dict:
    """laion_dedup's parameters over ``parts`` (one set, or a Failure naming the parts), after
    checking that every part's flags are computed against the current earlier parts."""
    params = require_same_params(context, laion_dedup.key.to_user_string(), parts)
    problems = dedup_chain_problems(context.instance, parts)
    if problems:
        raise Failure(
            "laion_dedup is out of date for some parts (a part's flags depend on every earlier part):\n  "
            + "\n  ".join(f"{p}: {why}" for p, why in problems.items())
            + f"\nRe-materialise laion_dedup for {', '.join(problems)} (in part order)."
        )
    return params


def _dedup_metadata(
    config: DedupConfig,
    files: FileStore,
    part: str,
    keep: np.ndarray,
    max_sim: np.ndarray,
    earlier: int,
    read: dict[str, int],
    curve: list[tuple[float, float]],
) -> dict:
    """laion_dedup's metadata for one part: rows removed, the earlier rows compared with, the
    assignments read (what dedup_chain_problems compares), the removal curve (counts per ε and
    a table) and the histogram of each row's max similarity to an earlier row of its cluster."""
    from laionlab.dedup import removal_curve_table

    return {
        **params_metadata(config),
        "rows": len(keep),
        "removed": int((~keep).sum()),
        "removal_fraction": float((~keep).mean()) if len(keep) else 0.0,
        "earlier_rows": earlier,
        "assignments_read": read,
        "curve_removed": {str(e): round(f * len(keep)) for e, f in curve},
        "removal_table": markdown_table(removal_curve_table(curve)),
        "max_earlier_similarity": histogram(
            max_sim[np.isfinite(max_sim)],
            "max cosine to an earlier row of the cluster",
            f"{part}: rows with an earlier row in their cluster",
            files.path("laion_dedup", f"{part}.png"),
            mark=(1 - config.eps, f"1 − ε = {1 - config.eps:.3f}"),
            ylabel="rows",
        ),
    }


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[every_partition(dedup_centroids), dedup_assignments],
    kinds={"parquet"},
    description="Semantic deduplication of one LAION part (seed 004's compute_dedup_paths): a row is dropped when an "
    "earlier row of its cluster (earlier parts, then earlier uids of this part) is more similar than 1 − ε. "
    "Earlier parts' results never change when a part is appended.",
)
def laion_dedup(context: AssetExecutionContext, config: DedupConfig, files: FileStore) -> MaterializeResult:
    """The part's rows against every earlier row of their clusters (parts in sorted order,
    then uid order inside a part: the stable order the seed's per-cluster files give), read
    cluster group by cluster group from the parts' ``dedup_assignments`` (memory bounded by
    ``group_rows``). The seed's rule drops a row whatever happened to the earlier row, so
    the earlier parts' flags stay valid and only this part's rows are computed
    (:func:`laionlab.dedup.dedup_shards` with ``from_shard``)."""
    from laionlab import validate
    from laionlab.dedup import dedup_shards, removal_summary

    with library_errors("laion_dedup"):  # before any work, so a bad curve never follows a written result
        validate.real_list("curve_eps", config.curve_eps, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    part = context.partition_key
    parts = registered(context, laion_part)
    order = parts[: parts.index(part) + 1]
    read = wait_for_earlier_parts(context, dedup_assignments.key, order)
    k = len(files.load_npy("dedup_centroids", "centroids.npy", mmap=True))
    shards, keys = _open_shards(context, files, order, k, config.keep, config.keep_seed)
    earlier = sum(len(s.vectors) for s in shards[:-1])
    context.log.info(
        f"deduplicating {len(shards[-1].vectors)} rows of {part} against {earlier} rows "
        f"of {len(order) - 1} earlier parts in {k} clusters"
    )
    keep, max_sim = dedup_shards(
        shards,
        eps=config.eps,
        block_rows=config.block_rows,
        group_rows=config.group_rows,
        from_shard=len(order) - 1,
        keys=keys,
    )[0]
    frame = files.read_parquet("dedup_assignments", f"{part}.parquet", columns=["uid", "cluster"])
    files.write_parquet(
        frame.with_columns(part=pl.lit(part), keep=pl.Series(keep), max_earlier_sim=pl.Series(max_sim)),
        "laion_dedup",
        f"{part}.parquet",
    )
    curve = removal_summary([(keep, max_sim)], config.curve_eps).curve
    return MaterializeResult(metadata=_dedup_metadata(config, files, part, keep, max_sim, earlier, read, curve))


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_dedup)],
    kinds={"parquet"},
    description="LAION's deduplication over all parts: rows kept and removed per part, the removal fraction and its "
    "curve over ε (seed 004), summed from the parts' results; fails naming any part out of date.",
)
def dedup_summary(context: AssetExecutionContext, files: FileStore) -> MaterializeResult:
    parts = registered(context, laion_part)
    params = require_dedup_chain(context, parts)
    latest = latest_by_partition(context.instance, laion_dedup.key, parts)
    meta = [latest[p].asset_materialization.metadata for p in parts]
    table = pl.DataFrame(
        {"part": parts, "rows": [m["rows"].value for m in meta], "removed": [m["removed"].value for m in meta]}
    )
    table = table.with_columns(removal_fraction=(pl.col("removed") / pl.col("rows")).round(4))
    files.write_parquet(table, "dedup_summary", "parts.parquet")
    rows, removed = int(table["rows"].sum()), int(table["removed"].sum())
    curve_eps = params.get("curve_eps") or [float(e) for e in meta[0]["curve_removed"].value]
    frac = [sum(m["curve_removed"].value[str(e)] for m in meta) / rows if rows else 0.0 for e in curve_eps]
    return MaterializeResult(
        metadata={
            "params": params,
            "rows": rows,
            "removed": removed,
            "removal_fraction": removed / rows if rows else 0.0,
            "parts_seen": ", ".join(parts),
            "per_part": markdown_table(table),
            "removal_curve": line_plot(
                list(curve_eps),
                {"removed": frac},
                "ε (drop when cosine > 1 − ε)",
                "removal fraction vs ε (seed 004's rule)",
                files.path("dedup_summary", "removal_curve.png"),
                logx=False,
                ylabel="fraction removed",
            ),
            "removal_table": markdown_table(
                pl.DataFrame(
                    {
                        "eps": list(curve_eps),
                        "drop_when_cosine_above": [round(1 - e, 4) for e in curve_eps],
                        "fraction_removed": np.round(frac, 4),
                    }
                )
            ),
        }
    )


# --- dedup_gallery ---------------------------------------------------------------------------


@profiled("dedup_gallery")
class DedupGalleryConfig(Config):
    pairs: int = Field(8, ge=1, le=32, description="dropped rows shown, each beside the earlier row it duplicates")
    pairs_per_row: int = Field(2, ge=1, le=6, description="pairs per row of the sheet")
    parts: int = Field(
        3, ge=1, description="parts the dropped rows are drawn from (a seeded choice among those with any)"
    )
    seed: int = Field(0, ge=0, description="seeds the choice of the parts and the rows")


def _dedup_partners(files: FileStore, parts: list[str], shown: pl.DataFrame) -> pl.DataFrame:
    """``shown`` (dropped rows: uid, part, cluster, max_earlier_sim) with the row each
    duplicates (partner, partner_kept, cosine), found again from its cluster's vectors in its
    part and the earlier parts (:func:`laionlab.dedup.duplicate_partner`): laion_dedup's rows
    are dedup_assignments' order, so a cluster's rows are one contiguous slice of each part's
    memory-mapped vectors; only the shown clusters' slices are read, one part at a time."""
    from laionlab.dedup import duplicate_partner

    wanted = shown.with_columns(position=pl.col("part").replace_strict(parts, list(range(len(parts)))))
    found = {uid: ([], [], []) for uid in wanted["uid"]}  # uid -> (vectors, uids, kept) of its candidates
    query = {}
    for position, part in enumerate(parts[: wanted["position"].max() + 1]):
        frame = files.read_parquet("laion_dedup", f"{part}.parquet", columns=["uid", "cluster", "keep"])
        frame = frame.with_row_index("i").filter(pl.col("cluster").is_in(wanted["cluster"].implode()))
        vectors = files.load_npy("dedup_assignments", f"{part}.vectors.npy", mmap=True)
        for uid, cluster in wanted.filter(pl.col("position") >= position).select("uid", "cluster").iter_rows():
            rows = frame.filter(pl.col("cluster") == cluster)
            if rows.height == 0:
                continue
            block = np.asarray(vectors[rows["i"].min() : rows["i"].max() + 1])
            own = (rows["uid"] == uid).to_numpy()
            if own.any():
                query[uid] = block[own][0]
            for store, values in zip(found[uid], (block, rows["uid"].to_numpy(), rows["keep"].to_numpy())):
                store.append(values[~own])
    partners = []
    for uid, max_sim in wanted.select("uid", "max_earlier_sim").iter_rows():
        vectors, uids, kept = (np.concatenate(values) for values in found[uid])
        index, cos = duplicate_partner(query[uid], vectors, max_sim, kept)
        partners.append((str(uids[index]), bool(kept[index]), round(cos, 4)))
    partners = pl.DataFrame(partners, schema=["partner", "partner_kept", "cosine"], orient="row")
    return pl.concat([shown, partners], how="horizontal")


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_dedup)],
    kinds={"jpeg"},
    description="What laion_dedup drops: a contact sheet of a seeded few dropped rows, each beside the earlier row of "
    "its cluster it duplicates (with their cosine), read back from only those images' shards.",
)
def dedup_gallery(context: AssetExecutionContext, config: DedupGalleryConfig, files: FileStore) -> MaterializeResult:
    """The partner of a dropped row is found again for the rows shown only (``_dedup_partners``):
    laion_dedup records each row's maximum cosine to an earlier row, not which row."""
    from laionlab.gallery import contact_sheet, fetch_thumbnails, pair_rows, row_uids, sample_rows

    parts = registered(context, laion_part)
    latest = latest_by_partition(context.instance, laion_dedup.key, parts)
    with_drops = [p for p in parts if p in latest and latest[p].asset_materialization.metadata["removed"].value]
    if not with_drops:
        return MaterializeResult(
            metadata={**params_metadata(config), **nothing_to_show(f"laion_dedup dropped no row of {parts}")}
        )
    chosen = sample_rows(pl.DataFrame({"part": with_drops}), config.parts, config.seed)["part"].to_list()
    columns = ["uid", "part", "cluster", "keep", "max_earlier_sim"]
    dropped = pl.concat([files.read_parquet("laion_dedup", f"{p}.parquet", columns=columns) for p in chosen])
    shown = sample_rows(dropped.filter(~pl.col("keep")), config.pairs, config.seed)
    pairs = _dedup_partners(files, parts, shown).with_columns(
        label=pl.format("dropped, cos {}", pl.col("cosine").round(3)),
        partner_label=pl.when(pl.col("partner_kept")).then(pl.lit("kept")).otherwise(pl.lit("dropped too")),
    )
    rows = pair_rows(pairs, "uid", "partner", "label", "partner_label", config.pairs_per_row, "dropped ↔ earlier")
    images = fetch_thumbnails(lambda part: downloaded_shards(files, part), row_uids(rows))
    fig = contact_sheet(rows, images, f"laion_dedup: {pairs.height} dropped rows beside the row they duplicate")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("dedup_gallery", "dedup.jpg"), rows, images),
            "parts_shown": ", ".join(chosen),
            "dropped_in_parts_shown": int((~dropped["keep"]).sum()),
            "pairs_shown": markdown_table(pairs.select("uid", "partner", "cosine", "partner_kept", "cluster")),
        }
    )


@asset_check(
    asset=dedup_summary,
    name="dedup_parts_current",
    blocking=False,
    description="Is every registered part's laion_dedup computed against the current earlier parts? "
    "(re-materialising a part's assignments changes every later part's flags; "
    "Dagster cannot mark those partitions stale itself)",
)
def dedup_parts_current(context: AssetCheckExecutionContext) -> AssetCheckResult:
    parts = sorted(context.instance.get_dynamic_partitions(laion_part.name))
    problems = dedup_chain_problems(context.instance, parts)
    text = "; ".join(f"{p}: {why}" for p, why in problems.items()) or f"all {len(parts)} parts current"
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.WARN,
        description=text,
        metadata={"parts_out_of_date": sorted(problems)},
    )


@profiled("eval_to_laion_similarity")
class EvalSimilarityConfig(Config):
    k: int = Field(10_000, ge=1, description="candidates per eval sample (seed: 10,000)")
    block_rows: int = Field(65_536, ge=1, description="LAION rows per block of the top-k search")


def _part_uids(lance: LanceStore, part: str) -> pl.Series:
    """The part's uids in uid order (the row order of :func:`_part_vectors`), without vectors."""
    return lance.tables().part_query(EMBEDDINGS_TABLE, part, ["uid"]).to_polars()["uid"].sort()


def _laion_parts(
    context: AssetExecutionContext, lance: LanceStore, parts: list[str], eval_name: str, dim: int, total: int
):
    """(uids, unit vectors) of each LAION part in turn, refusing a part of another dimension
    than the eval set's."""
    progress = Progress(f"{eval_name} vs LAION", total, log=context.log)
    for part in parts:
        uids, X = _part_vectors(lance, part)
        if uids and X.shape[1] != dim:
            raise Failure(f"eval set {eval_name!r} has dimension {dim}, laion_embeddings[{part}] {X.shape[1]}")
        yield uids, X
        progress.update(len(uids))
    progress.close()


def read_max_sims(files: FileStore, name: str) -> pl.DataFrame:
    """eval_to_laion_similarity[name]'s current per-LAION-row max similarities: uid, part, max_sim."""
    return _read_version(files, "eval_to_laion_similarity", f"{name}.max_sim")


def _similarity_metadata(
    files: FileStore,
    name: str,
    parts: list[str],
    folder: str,
    found,
    candidates: pl.DataFrame,
    laion_max_sims: np.ndarray,
) -> dict:
    """eval_to_laion_similarity's metadata about the search ``found``
    (:func:`laionlab.neighbours.search_parts`): its size, the mean top-1 similarity, a
    histogram of both directions' nearest similarities (``laion_max_sims``: a sample of the
    LAION rows' maxima) and the ten closest eval–LAION pairs; ``folder``: where the maxima are."""
    return {
        "eval_samples": len(found.top.scores),
        "k": found.top.k,
        "laion_rows": found.rows,
        "mean_top1_sim": float(found.top.scores[:, 0].mean()),
        "parts_seen": ", ".join(parts),
        "max_sim_folder": folder,
        "similarity_histogram": histogram(
            None,
            "cosine similarity",
            f"{name} vs LAION",
            files.path("eval_to_laion_similarity", f"{name}.png"),
            series={
                "eval sample → nearest LAION row": found.top.scores[:, 0],
                "LAION row → nearest eval sample": laion_max_sims,
            },
        ),
        "closest_pairs": markdown_table(candidates.filter(pl.col("rank") == 0).sort("sim", descending=True).head(10)),
    }


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[reference_embeddings, every_partition(laion_embeddings)],
    kinds={"parquet", "numpy"},
    pool="gpu",
    description="For one eval dataset: each eval sample's exact top-k LAION neighbours (merged over parts) and each "
    "LAION row's max similarity to the eval set (one Parquet per part).",
)
def eval_to_laion_similarity(
    context: AssetExecutionContext, config: EvalSimilarityConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.dedup import candidate_table, candidate_uids, max_sim_table, plot_sample
    from laionlab.neighbours import search_parts

    name = context.partition_key
    queries = reference_vectors(lance, name, raw=False)
    parts = registered(context, laion_part)
    total = sum(lance.tables().count_part(EMBEDDINGS_TABLE, p) for p in parts)
    if config.k > total:
        raise Failure(f"k={config.k} candidates per eval sample is larger than the LAION pool ({total} rows); lower k")
    where = f"eval_to_laion_similarity[{name}]"
    plotted = []  # ≤ ~100k max similarities per part, for the histogram
    with library_errors(where), files.new_version("eval_to_laion_similarity", f"{name}.max_sim") as version:

        def write_max_sims(j: int, uids: list[str], sims: np.ndarray) -> None:
            version.write_parquet(max_sim_table(uids, parts[j], sims), f"{parts[j]}.parquet")
            plotted.append(plot_sample(sims))

        laion = _laion_parts(context, lance, parts, name, queries.shape[1], total)
        found = search_parts(queries, laion, config.k, on_part=write_max_sims, block_rows=config.block_rows)
    with library_errors(where, hint=": laion_embeddings changed during the search; materialise this again"):
        uids = candidate_uids(found, parts, lambda part: _part_uids(lance, part))
    candidates = candidate_table(found.top.scores, uids)
    files.write_parquet(candidates, "eval_to_laion_similarity", f"{name}.topk.parquet")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            **_similarity_metadata(files, name, parts, version.uri, found, candidates, np.concatenate(plotted)),
        }
    )


@profiled("train_to_eval_threshold")
class ThresholdConfig(Config):
    train_dataset: str = Field(description="catalog dataset playing ImageNet-train (the paper's reference 'train' set)")


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[every_partition(reference_embeddings)],
    kinds={"parquet"},
    description="For each eval sample, the similarity to its nearest neighbour in the 'train' reference set "
    "(ImageNet-train → ImageNet-X in the paper): the per-sample pruning threshold.",
)
def train_to_eval_threshold(
    context: AssetExecutionContext, config: ThresholdConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.dedup import nearest_similarity

    name = context.partition_key
    thresholds = nearest_similarity(
        reference_vectors(lance, name, raw=False), reference_vectors(lance, config.train_dataset, raw=False)
    )
    files.write_parquet(
        pl.DataFrame({"eval_index": np.arange(len(thresholds)), "threshold": thresholds}),
        "train_to_eval_threshold",
        f"{name}.parquet",
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "train_dataset": config.train_dataset,
            "eval_samples": len(thresholds),
            "mean_threshold": float(thresholds.mean()),
            "threshold_histogram": histogram(
                thresholds,
                f"cosine similarity to the nearest {config.train_dataset} sample",
                f"{name}: per-sample pruning thresholds",
                files.path("train_to_eval_threshold", f"{name}.png"),
                ylabel="eval samples",
            ),
            "threshold_quantiles": quantile_table(thresholds, "threshold"),
        }
    )


@profiled("pruned_pools")
class PrunedPoolConfig(Config):
    target_size: int | None = Field(None, ge=1, description="optional uniform subsample of the pruned pool (seeded)")
    seed: int = Field(0, ge=0)


def _pruning_inputs(files: FileStore, name: str) -> tuple[np.ndarray, pl.DataFrame]:
    """Eval set ``name``'s per-sample thresholds (by eval_index) and its candidate table."""
    thresholds = files.read_parquet("train_to_eval_threshold", f"{name}.parquet").sort("eval_index")["threshold"]
    return thresholds.to_numpy(), files.read_parquet("eval_to_laion_similarity", f"{name}.topk.parquet")


def read_pruned_pool(files: FileStore, name: str) -> pl.DataFrame:
    """pruned_pools[name]'s current uids over all parts."""
    return _read_version(files, "pruned_pools", name)


def _saturation_check(saturated: np.ndarray, k: int) -> AssetCheckResult:
    """pruned_pools' no_saturated_eval_samples check: a warning when some eval sample has all
    ``k`` candidates above its threshold (its pruning is cut off at k)."""
    return AssetCheckResult(
        check_name="no_saturated_eval_samples",
        passed=not saturated.any(),
        severity=AssetCheckSeverity.WARN,
        metadata={"saturated_eval_samples": int(saturated.sum()), "k": k, "fix": "raise eval_to_laion_similarity's k"},
    )


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[every_partition(laion_dedup), eval_to_laion_similarity, train_to_eval_threshold],
    kinds={"parquet"},
    check_specs=[
        AssetCheckSpec(
            "no_saturated_eval_samples",
            asset="pruned_pools",
            description="no eval sample has all k candidates above its threshold "
            "(else its pruning is cut off at k: raise eval_to_laion_similarity's k)",
        )
    ],
    description="The deduplicated LAION pool minus every row that is some eval sample's candidate with similarity "
    "above that sample's train→eval threshold (seed 004's get_paths_chunk), optionally subsampled; "
    "one Parquet per part.",
)
def pruned_pools(context: AssetExecutionContext, config: PrunedPoolConfig, files: FileStore) -> MaterializeResult:
    from laionlab.dedup import candidate_matrix, pool_picks, pruned_uids, rows_in_parquets, write_pool

    name = context.partition_key
    thresholds, candidates = _pruning_inputs(files, name)
    where = f"pruned_pools[{name}]"
    with library_errors(where, hint=": rematerialise eval_to_laion_similarity and train_to_eval_threshold"):
        matrix = candidate_matrix(candidates, len(thresholds))
    parts = registered(context, laion_part)
    dedup_params = require_dedup_chain(context, parts)
    sources = dedup_files(files, parts)
    laion_rows = rows_in_parquets(sources)
    with library_errors(where):
        pruned, saturated = pruned_uids(matrix, thresholds, laion_rows)
        picks = pool_picks(sources, pruned, config.target_size, config.seed, eval_name=name)
    with files.new_version("pruned_pools", name) as version:
        counts = write_pool(sources, pruned, version.write_parquet, picks)
    sizes = counts.table(laion_rows)
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "dedup_params": dedup_params,
            "parts_seen": ", ".join(parts),
            "sizes": markdown_table(sizes),
            "pruned_away": counts.pruned_away,
            "final_size": counts.final,
            "saturated_eval_samples": int(saturated.sum()),
            "pool_folder": version.uri,
            "sizes_plot": bar_plot(
                sizes["stage"].to_list(),
                sizes["rows"].to_list(),
                f"pool size for {name}",
                "rows",
                files.path("pruned_pools", f"{name}.png"),
            ),
        },
        check_results=[_saturation_check(saturated, matrix.k)],
    )


# --- pruned_gallery ---------------------------------------------------------------------------


@profiled("pruned_gallery")
class PrunedGalleryConfig(Config):
    samples: int = Field(
        6, ge=1, le=16, description="eval samples shown (a seeded choice among those with pruned rows)"
    )
    per_sample: int = Field(4, ge=1, le=8, description="the most similar pruned LAION rows shown beside each sample")
    seed: int = Field(0, ge=0)


def _pruned_rows(examples: pl.DataFrame, name: str) -> list:
    """contact_sheet rows: per eval sample its image, its pruned candidates, its nearest kept one."""
    from laionlab.gallery import Tile

    rows = []
    for (index,), group in examples.group_by("eval_index", maintain_order=True):
        tiles = [Tile(f"{name}:{index:09d}", "eval sample")] + [
            Tile(uid, f"{'pruned' if pruned else 'kept'}, cos {sim:.3f}")
            for uid, sim, pruned in group.select("uid", "sim", "pruned").iter_rows()
        ]
        rows.append((f"#{index}: pruned above cos {group['threshold'][0]:.3f}", tiles))
    return rows


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[pruned_pools],
    kinds={"jpeg"},
    description="What pruning removes for an eval set: a seeded few eval samples, each beside its most similar "
    "pruned LAION rows and its nearest kept one (with their cosine), read back from only those images' shards.",
)
def pruned_gallery(
    context: AssetExecutionContext, config: PrunedGalleryConfig, catalog: DatasetCatalog, files: FileStore
) -> MaterializeResult:
    from laionlab.dedup import pruned_examples
    from laionlab.gallery import contact_sheet, fetch_thumbnails, reference_thumbnails

    name = context.partition_key
    thresholds, candidates = _pruning_inputs(files, name)
    with library_errors(f"pruned_gallery[{name}]"):
        examples = pruned_examples(candidates, thresholds, config.samples, config.per_sample, config.seed)
    if examples.is_empty():
        reason = f"no LAION row is above its {name} sample's threshold: pruning removed nothing"
        return MaterializeResult(metadata={**params_metadata(config), **nothing_to_show(reason)})
    rows = _pruned_rows(examples, name)
    images = fetch_thumbnails(lambda part: downloaded_shards(files, part), examples["uid"].unique().sort().to_list())
    with library_errors(f"pruned_gallery[{name}]", FileNotFoundError):
        images |= reference_thumbnails(catalog.get(name), examples["eval_index"].unique())
    fig = contact_sheet(rows, images, f"{name}: eval samples beside the LAION rows pruning removes for them")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("pruned_pools", f"{name}.gallery.jpg"), rows, images),
            "eval_samples_shown": examples["eval_index"].n_unique(),
            "shown": markdown_table(examples.with_columns(pl.col("sim", "threshold").round(4))),
        }
    )


def _pool_size(files: FileStore, name: str) -> int:
    """Rows of pruned_pools[name], from the Parquet footers (no uid is read)."""
    from laionlab.dedup import rows_in_parquets

    return rows_in_parquets(_version_files(files, "pruned_pools", name))


@asset(
    group_name=GROUP,
    deps=[every_partition(pruned_pools)],
    kinds={"parquet"},
    description="Size of the pruned LAION pool for every eval dataset (table and plot).",
)
def pruned_pool_sizes(context: AssetExecutionContext, files: FileStore) -> MaterializeResult:
    names = registered(context, dataset)
    sizes = pl.DataFrame({"dataset": names, "pool_size": [_pool_size(files, n) for n in names]})
    files.write_parquet(sizes, "pruned_pools", "sizes.parquet")
    return MaterializeResult(
        metadata={
            "parts_seen": parts_seen_of(context.instance, "pruned_pools"),  # what the pools were built from
            "sizes": markdown_table(sizes),
            "sizes_plot": bar_plot(
                names,
                sizes["pool_size"].to_list(),
                "pruned pool size by eval dataset",
                "rows",
                files.path("pruned_pools", "sizes.png"),
            ),
        }
    )


assets = [
    dedup_centroids,
    dedup_assignments,
    laion_dedup,
    dedup_summary,
    dedup_gallery,
    eval_to_laion_similarity,
    train_to_eval_threshold,
    pruned_pools,
    pruned_gallery,
    pruned_pool_sizes,
]

checks = [dedup_parts_current]
