"""Exports for training and for peers, and takedown propagation (issue 20).

subset_export[subset] writes one curated subset (LAIONet, laion_dedup's / dbp_selection's /
concept_balanced's kept rows, a DataComp filter) as an img2dataset parquet, webdataset shards of
the downloaded images (open_clip's ``--train-data``) and DataComp's uid ``.npy``, minus the rows
of a removal list; takedown_report says which subsets and current exports hold a listed uid,
URL or sha256, so that re-materialising those exports drops them. The subsets are read from
the files their assets write (by path through FileStore: no other pipeline is imported); the
format code is :mod:`laionlab.export`.
"""

import os
from collections.abc import Callable

import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import STATUS_FILE, image_shards
from asset_defs.metadata import bar_plot, markdown_table
from asset_defs.partitions import DATACOMP_SUBSETS, every_partition, laion_part, registered, subset
from asset_defs.profile import params_metadata, profiled
from laionlab.export import FORMATS, SAMPLES_PER_SHARD
from resources import FileStore

GROUP = "exports"
# the removal list both assets apply when their config names none (a local file or data-store URI)
TAKEDOWN_LIST = os.environ.get("LAIONLAB_TAKEDOWN_LIST") or None

# per-part subsets: subset → (asset folder, flag column of its <part>.parquet)
PART_FLAGS = {
    "laion_dedup_kept": ("laion_dedup", "keep"),
    "dbp_kept": ("dbp_selection", "kept"),
    "concept_balanced": ("concept_balanced", "keep"),
}
SOURCES = ["laion_metadata", "laion_images", "laionet", "datacomp_selection", *(a for a, _ in PART_FLAGS.values())]


def _read(files: FileStore, folder: str, name: str, columns: list[str]) -> pl.DataFrame:
    if not files.exists(folder, name):
        raise Failure(f"{folder}/{name} does not exist: materialise {folder} first")
    return files.read_parquet(folder, name, columns=columns)


def subset_uids(files: FileStore, name: str, parts: list[str]) -> pl.Series:
    """The uids of subset ``name`` (a key of ``subset``), from its asset's files."""
    if name == "laionet":
        return _read(files, "laionet", "laionet.parquet", ["uid"])["uid"]
    if name.startswith("datacomp_") and name.removeprefix("datacomp_") in DATACOMP_SUBSETS:
        return _read(files, "datacomp_selection", f"{name.removeprefix('datacomp_')}.parquet", ["uid"])["uid"]
    folder, flag = PART_FLAGS[name]
    return pl.concat(
        [_read(files, folder, f"{p}.parquet", ["uid", flag]).filter(pl.col(flag))["uid"] for p in parts],
        how="vertical",
    )


def _readers(files: FileStore) -> tuple[Callable, Callable, Callable]:
    """(metadata_of, status_of, shards_of) of a part, as laionlab.export reads them."""

    def status_of(part: str) -> pl.DataFrame | None:
        if not files.has_version("laion_images", part):
            return None
        return files.current_version("laion_images", part).read_parquet(STATUS_FILE, columns=["uid", "sha256"])

    def metadata_of(part: str) -> pl.DataFrame:
        return _read(files, "laion_metadata", f"{part}.parquet", ["uid", "URL", "TEXT"])

    return metadata_of, status_of, lambda part: image_shards(files, part)


def _removal(path: str | None):
    from laionlab.export import read_removal_list

    if not path:
        return None
    with library_errors("removal_list", FileNotFoundError):
        return read_removal_list(path)


# --- subset_export[subset] ------------------------------------------------------------------


@profiled("subset_export")
class SubsetExportConfig(Config):
    formats: list[str] = Field(
        list(FORMATS), description="img2dataset (url/caption/uid parquet), webdataset (shards), datacomp (uid .npy)"
    )
    samples_per_shard: int = Field(
        SAMPLES_PER_SHARD, ge=1, description="webdataset samples per shard (img2dataset's default 10,000)"
    )
    removal_list: str | None = Field(
        TAKEDOWN_LIST,
        description="takedown list applied before writing: a txt (one uid, URL or sha256 a line) or a parquet/csv "
        "with uid/url/sha256 columns; local path or data-store URI (default: LAIONLAB_TAKEDOWN_LIST)",
    )


@asset(
    partitions_def=subset,
    group_name=GROUP,
    deps=[every_partition(name) for name in SOURCES],
    kinds={"parquet", "webdataset", "numpy"},
    description="One curated subset for training and for peers: img2dataset parquet (url, caption, uid), webdataset "
    "shards of its downloaded images (open_clip --train-data) and DataComp's uid .npy, minus a takedown list.",
)
def subset_export(context: AssetExecutionContext, config: SubsetExportConfig, files: FileStore) -> MaterializeResult:
    from laionlab.export import export_subset, subset_parts

    name = context.partition_key
    removal = _removal(config.removal_list)
    with library_errors(f"subset_export[{name}]"):
        groups = subset_parts(subset_uids(files, name, registered(context, laion_part)))
    rows = sum(map(len, groups.values()))
    context.log.info(f"exporting {rows} rows of {name} ({len(groups)} parts) as {', '.join(config.formats)}")
    with files.new_version("subset_export", name) as version, library_errors(f"subset_export[{name}]"):
        summary = export_subset(
            sorted(groups), groups.__getitem__, *_readers(files), version.uri, config.formats,
            config.samples_per_shard, removal, context.log.info,
        )  # fmt: skip
    counts = pl.DataFrame({"format": list(summary.exported), "rows": list(summary.exported.values())})
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "subset_rows": summary.subset_rows,
            **{f"exported_{f}": n for f, n in summary.exported.items()},
            "exported": markdown_table(counts),
            "removed_by_takedown_list": summary.removed.height,
            "removed": markdown_table(summary.removed),
            "without_downloaded_image": summary.missing_images,
            "shards": len(summary.shards),
            "train_data": summary.train_data or "none",
            "path": MetadataValue.path(version.uri),
            **{f"path_{k}": MetadataValue.path(v) for k, v in summary.paths.items()},
        }
    )


# --- takedown_report ------------------------------------------------------------------------


@profiled("takedown_report")
class TakedownReportConfig(Config):
    removal_list: str | None = Field(
        TAKEDOWN_LIST, description="the takedown list to look for (as subset_export's; default LAIONLAB_TAKEDOWN_LIST)"
    )


def _report_frames(files: FileStore, parts: list[str]) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """Each subset whose files exist (uid) and each committed export's rows, by name; and
    the subsets not materialised."""
    frames, absent = {}, []
    for name in subset.get_partition_keys():
        try:
            frames[name] = pl.DataFrame({"uid": subset_uids(files, name, parts)})
        except Failure:
            absent.append(name)
        if files.has_version("subset_export", name):
            rows = files.current_version("subset_export", name).read_parquet("rows.parquet", columns=["uid"])
            frames[f"export:{name}"] = rows
    return frames, absent


@asset(
    group_name=GROUP,
    deps=[every_partition(subset_export), *(every_partition(name) for name in SOURCES)],
    kinds={"parquet"},
    description="Which subsets and current exports hold an item of the takedown list (uid, URL, or the sha256 of "
    "the downloaded bytes): counts and the items per subset; re-materialise the exports named to drop them.",
)
def takedown_report(
    context: AssetExecutionContext, config: TakedownReportConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.export import listed_rows, takedown_table

    removal = _removal(config.removal_list)
    if removal is None:
        return MaterializeResult(
            metadata={"applicable": False, "reason": "no removal list: set removal_list or LAIONLAB_TAKEDOWN_LIST"}
        )
    parts = registered(context, laion_part)
    metadata_of, status_of, _ = _readers(files)
    with library_errors("takedown_report"):
        listed = listed_rows(parts, metadata_of, status_of, removal)
    frames, absent = _report_frames(files, parts)
    counts, items = takedown_table(frames, listed)
    files.write_parquet(listed, "takedown_report", "listed_rows.parquet")
    files.write_parquet(items, "takedown_report", "items.parquet")
    names = counts["subset"].to_list()
    stale = counts.filter(pl.col("subset").str.starts_with("export:") & (pl.col("listed_rows") > 0))["subset"]
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "listed_items": len(removal),
            "items_found": listed["item"].n_unique(),
            "rows_listed": listed["uid"].n_unique(),
            "subsets": markdown_table(counts),
            "subsets_not_materialised": ", ".join(absent) or "none",
            "exports_to_rematerialise": ", ".join(s.removeprefix("export:") for s in stale) or "none",
            "listed_rows_per_subset": bar_plot(
                counts["subset"].to_list(),
                counts["listed_rows"].to_list(),
                "Rows of the takedown list per subset and export",
                "listed rows",
                files.path("takedown_report", "listed_rows.png"),
            ),
            **{f"items_{s.replace(':', '_')}": markdown_table(items.filter(pl.col("subset") == s)) for s in names},
            "path": MetadataValue.path(files.path("takedown_report", "items.parquet")),
        }
    )


assets = [subset_export, takedown_report]
