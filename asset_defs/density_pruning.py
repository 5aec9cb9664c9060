"""Density-based pruning (DBP: Abbas et al., "Effective pruning of web-scale datasets based on
complexity of concept clusters", ICLR 2024) over seed 004's deduplication clusters: a
per-cluster budget from each cluster's complexity, then SemDeDup's keep order inside a
cluster (laionlab.dedup.dbp). Reads dedup_centroids, dedup_assignments and laion_dedup by
key (no import of the train_test_similarity module), one part at a time."""

import zlib
from typing import Literal

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.metadata import markdown_table, scatter_plot
from asset_defs.partitions import every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from resources import FileStore

GROUP = "curation_dedup"


@profiled("dbp_selection")
class DbpConfig(Config):
    keep_fraction: float = Field(
        0.277,
        gt=0,
        le=1,
        description="rows kept, as a fraction of the candidates (DBP's LAION result: 27.7% of the data)",
    )
    temperature: float = Field(0.5, gt=0, description="softmax temperature over complexities (DBP's prune.py: 0.5)")
    min_share: float = Field(
        0.5, ge=0, le=1, description="each cluster keeps at least this share of target / k (prune.py cls_bal_ratio 0.5)"
    )
    n_neighbours: int = Field(20, ge=1, description="nearest other centroids averaged in d_inter (DBP: 20)")
    keep: Literal["hard", "easy", "random"] = Field(
        "hard", description="order inside a cluster (SemDeDup's): hard keeps the rows farthest from the centroid"
    )
    seed: int = Field(0, ge=0, description="seed of keep='random' (with a hash of the part name)")
    deduplicated: bool = Field(
        True, description="candidates are the rows laion_dedup keeps (DBP deduplicates first); False: every row"
    )


def _candidates(files: FileStore, part: str, deduplicated: bool) -> pl.DataFrame:
    """A part's rows (uid, cluster, centroid_sim, candidate): from dedup_assignments, candidate
    where laion_dedup keeps the row (or every row)."""
    frame = files.read_parquet("dedup_assignments", f"{part}.parquet", columns=["uid", "cluster", "centroid_sim"])
    if not deduplicated:
        return frame.with_columns(candidate=pl.lit(True))
    if not files.exists("laion_dedup", f"{part}.parquet"):
        raise Failure(f"laion_dedup has no result for {part}: materialise it, or set deduplicated: false")
    flags = files.read_parquet("laion_dedup", f"{part}.parquet", columns=["uid", "keep"])
    frame = frame.join(flags, on="uid", how="left", maintain_order="left")
    if frame["keep"].null_count():
        raise Failure(f"laion_dedup[{part}] lacks rows of dedup_assignments[{part}]: rematerialise laion_dedup")
    return frame.rename({"keep": "candidate"})


def _cluster_stats(files: FileStore, parts: list[str], k: int, deduplicated: bool) -> tuple[np.ndarray, np.ndarray]:
    """Candidates per cluster and their summed cosine distance to the centroid, part by part."""
    counts, dist = np.zeros(k, np.int64), np.zeros(k)
    for part in parts:
        f = _candidates(files, part, deduplicated).filter("candidate")
        counts += np.bincount(f["cluster"].to_numpy(), minlength=k)
        dist += np.bincount(f["cluster"].to_numpy(), weights=1.0 - f["centroid_sim"].to_numpy(), minlength=k)
    return counts, dist


def _part_keys(files: FileStore, parts: list[str], config: DbpConfig):
    """Per part, (cluster, key) of its candidates, in the keep order's keys."""
    from laionlab.dedup import keep_order_keys

    for part in parts:
        f = _candidates(files, part, config.deduplicated).filter("candidate")
        keys = keep_order_keys(f["centroid_sim"].to_numpy(), config.keep, config.seed, zlib.crc32(part.encode()))
        yield f["cluster"].to_numpy(), keys


def _write_parts(files: FileStore, parts: list[str], kept: pl.DataFrame, deduplicated: bool) -> None:
    """dbp_selection/{part}.parquet: every row of the part (uid, part, cluster, kept)."""
    for i, part in enumerate(parts):
        f = _candidates(files, part, deduplicated)
        rows = np.flatnonzero(f["candidate"].to_numpy())[kept.filter(pl.col("part") == i)["row"].to_numpy()]
        flags = np.zeros(f.height, dtype=bool)
        flags[rows] = True
        out = f.select("uid", pl.lit(part).alias("part"), "cluster", kept=pl.Series(flags))
        files.write_parquet(out, "dbp_selection", f"{part}.parquet")


@asset(
    group_name=GROUP,
    deps=["dedup_centroids", every_partition("dedup_assignments"), every_partition("laion_dedup")],
    kinds={"parquet"},
    description="Density-based pruning (DBP, ICLR 2024) of LAION: per-cluster budgets ∝ softmax(d_inter·d_intra / τ), "
    "capped at cluster sizes, filled in SemDeDup's keep order; read part by part.",
)
def dbp_selection(context: AssetExecutionContext, config: DbpConfig, files: FileStore) -> MaterializeResult:
    from laionlab.dedup import cluster_budgets, cluster_complexity, dbp_select

    parts = registered(context, laion_part)
    centroids = files.load_npy("dedup_centroids", "centroids.npy")
    counts, dist = _cluster_stats(files, parts, len(centroids), config.deduplicated)
    target = round(config.keep_fraction * int(counts.sum()))
    with library_errors("dbp_selection"):
        d_inter, d_intra, complexity = cluster_complexity(centroids, dist, counts, config.n_neighbours)
        b = cluster_budgets(complexity, counts, target, config.temperature, config.min_share)
    kept = dbp_select(_part_keys(files, parts, config), b.budget)
    _write_parts(files, parts, kept, config.deduplicated)
    table = pl.DataFrame(
        {"cluster": np.arange(len(counts)), "size": counts, "d_inter": d_inter, "d_intra": d_intra}
    ).with_columns(complexity=complexity, probability=b.probability, ideal=b.ideal, budget=b.budget)
    files.write_parquet(table, "dbp_selection", "budgets.parquet")
    used = table.filter(pl.col("size") > 0)
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "candidates": int(counts.sum()),
            "kept": kept.height,
            "kept_fraction": kept.height / max(1, int(counts.sum())),
            "clusters_capped": int((b.budget == counts).sum()),
            "parts_seen": ", ".join(parts),
            "budgets": markdown_table(
                table.sort("complexity", descending=True).with_columns(pl.col(pl.Float64).round(4))
            ),
            "budget_vs_complexity": scatter_plot(
                used["complexity"].to_numpy(),
                (used["budget"] / used["size"]).to_numpy(),
                "complexity d_inter · d_intra",
                "budget / cluster size",
                f"DBP budgets ({len(used)} clusters, τ = {config.temperature})",
                files.path("dbp_selection", "budget_vs_complexity.png"),
            ),
            "budget_table": MetadataValue.path(files.path("dbp_selection", "budgets.parquet")),
        }
    )


assets = [dbp_selection]
