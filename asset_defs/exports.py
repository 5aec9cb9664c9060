"""Exports for training and for peers, and takedown propagation (issue 20).

Three export assets write a curated subset as an img2dataset parquet, webdataset shards of the
downloaded images (open_clip's ``--train-data``) and DataComp's uid ``.npy``, minus the rows of
a removal list, one LAION part at a time (memory set by the largest part, not the subset):

* subset_export[subset]: LAIONet, laion_dedup's / dbp_selection's / concept_balanced's kept
  rows, a DataComp filter;
* pool_export[dataset]: seed 004's pruned pool of one eval dataset (what the paper trains on);
* swat_export[target]: SWAT's samples of one target, one export per sampling method, each
  sample with its class (``.cls``).

takedown_report says which subsets and current exports hold a listed uid, URL or sha256, so
that re-materialising those exports drops them. The subsets are read from the files their
assets write (by path through FileStore: no other pipeline is imported); the format code is
:mod:`laionlab.export`.
"""

import os
import re
from collections.abc import Callable, Iterator

import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import STATUS_FILE, downloaded_shards, image_shards
from asset_defs.metadata import bar_plot, markdown_table
from asset_defs.partitions import DATACOMP_SUBSETS, dataset, every_partition, laion_part, registered, subset, target
from asset_defs.profile import params_metadata, profiled
from asset_defs.readers import KEEP_FLAGS, part_flags, retrieved_shards
from laionlab.export import FORMATS, SAMPLES_PER_SHARD
from resources import FileStore

GROUP = "exports"
# the removal list the export assets and takedown_report apply when their config names none (a local
# file or data-store URI)
TAKEDOWN_LIST = os.environ.get("LAIONLAB_TAKEDOWN_LIST") or None

# per-part subsets: subset → its per-part keep flags (asset_defs/readers.py)
PART_FLAGS = {
    "laion_dedup_kept": KEEP_FLAGS["seed004_dedup"],
    "dbp_kept": KEEP_FLAGS["dbp"],
    "concept_balanced": KEEP_FLAGS["metaclip_cap"],
}
SOURCES = ["laion_metadata", "laion_images", "laionet", "datacomp_selection", *(a for a, _ in PART_FLAGS.values())]
# each export asset (its folder): the prefix its subsets carry in takedown_report, its partitions
EXPORTS = {"subset_export": ("", subset), "pool_export": ("pruned_pool:", dataset), "swat_export": ("swat:", target)}


def _read(files: FileStore, folder: str, name: str, columns: list[str]) -> pl.DataFrame:
    if not files.exists(folder, name):
        raise Failure(f"{folder}/{name} does not exist: materialise {folder} first")
    return files.read_parquet(folder, name, columns=columns)


# (parts, uids_of(part)) of a subset: uids_of gives a part's uids (a Series), or a frame with
# uid and per-row extras such as SWAT's class (cls)
Source = tuple[list[str], Callable[[str], pl.Series | pl.DataFrame]]


def _grouped(uids: pl.Series | pl.DataFrame) -> Source:
    """A subset held whole (one file of uids) as (parts, uids_of), split by part."""
    from laionlab.export import subset_parts

    groups = subset_parts(uids)
    return sorted(groups), groups.__getitem__


def subset_source(files: FileStore, name: str, parts: list[str]) -> Source:
    """(parts, uids_of) of subset ``name`` (a key of ``subset``), from its asset's files: one
    file read whole (LAIONet, a DataComp filter) or each part's keep flags, one at a time."""
    if name == "laionet":
        return _grouped(_read(files, "laionet", "laionet.parquet", ["uid"])["uid"])
    if name.startswith("datacomp_") and name.removeprefix("datacomp_") in DATACOMP_SUBSETS:
        return _grouped(_read(files, "datacomp_selection", f"{name.removeprefix('datacomp_')}.parquet", ["uid"])["uid"])
    source = PART_FLAGS[name]
    missing = [p for p in parts if not files.exists(source[0], f"{p}.parquet")]
    if missing:
        raise Failure(f"{source[0]} has no result for {', '.join(missing)}: materialise {source[0]} for these parts")
    return parts, lambda part: part_flags(files, source, part).filter(pl.col("keep"))["uid"]


def pool_source(files: FileStore, name: str) -> Source:
    """(parts, uids_of) of pruned_pools[name]: its committed version's <part>.parquet files."""
    if not files.has_version("pruned_pools", name):
        raise Failure(f"pruned_pools[{name}] was never materialised: materialise it first")
    version = files.current_version("pruned_pools", name)
    parts = [uri.rsplit("/", 1)[-1].removesuffix(".parquet") for uri in version.glob("*.parquet")]
    return parts, lambda part: version.read_parquet(f"{part}.parquet", columns=["uid"])["uid"]


def swat_samples(files: FileStore, name: str) -> pl.DataFrame:
    """retrieval_samples[name]'s picks: uid, class, score, rank, method."""
    return _read(files, "retrieval_samples", f"{name}.parquet", ["uid", "class", "score", "rank", "method"])


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


def _counts(summary) -> dict:
    """An export's rows, rows per format, removed rows, rows without an image, --train-data."""
    return {
        "subset_rows": summary.subset_rows,
        **{f"exported_{f}": n for f, n in summary.exported.items()},
        "removed_by_takedown_list": summary.removed.height,
        "without_downloaded_image": summary.missing_images,
        "train_data": summary.train_data or "none",
    }


def _export_metadata(summary) -> dict:
    """An export's counts, removed rows, open_clip's --train-data and paths, as metadata."""
    counts = pl.DataFrame({"format": list(summary.exported), "rows": list(summary.exported.values())})
    return {
        **_counts(summary),
        "exported": markdown_table(counts),
        "removed": markdown_table(summary.removed),
        "shards": len(summary.shards),
        **{f"path_{k}": MetadataValue.path(v) for k, v in summary.paths.items()},
    }


def _export(context: AssetExecutionContext, config, files: FileStore, source: Source, folder: str, **options):
    """export_subset of ``source`` into ``folder`` with the config's formats and removal list
    (``options``: another ``shards_of``; ``labelled``; ``label``, the progress lines' prefix)."""
    from laionlab.export import export_subset

    metadata_of, status_of, shards_of = _readers(files)
    where = f"{context.asset_key.to_user_string()}[{context.partition_key}]"
    with library_errors(where, FileNotFoundError):
        return export_subset(
            *source, metadata_of, status_of, options.get("shards_of", shards_of), folder, config.formats,
            config.samples_per_shard, _removal(config.removal_list),
            lambda line: context.log.info(options.get("label", "") + line), options.get("labelled", False),
        )  # fmt: skip


def _exported(context: AssetExecutionContext, config, files: FileStore, source: Source) -> MaterializeResult:
    """The asset's partition written from ``source`` into a new version of its folder."""
    asset, name = context.asset_key.to_user_string(), context.partition_key
    context.log.info(f"{asset}[{name}]: exporting {len(source[0])} parts as {', '.join(config.formats)}")
    with files.new_version(asset, name) as version:
        summary = _export(context, config, files, source, version.uri)
    return MaterializeResult(
        metadata={**params_metadata(config), **_export_metadata(summary), "path": MetadataValue.path(version.uri)}
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
    name = context.partition_key
    with library_errors(f"subset_export[{name}]"):
        source = subset_source(files, name, registered(context, laion_part))
    return _exported(context, config, files, source)


# --- pool_export[dataset] -------------------------------------------------------------------


@profiled("pool_export")
class PoolExportConfig(SubsetExportConfig):
    pass


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=["pruned_pools", every_partition("laion_metadata"), every_partition("laion_images")],
    kinds={"parquet", "webdataset", "numpy"},
    description="Seed 004's pruned pool of one eval dataset, what the paper trains CLIP on: img2dataset parquet, "
    "webdataset shards of its downloaded images (open_clip --train-data), DataComp's uid .npy; part by part.",
)
def pool_export(context: AssetExecutionContext, config: PoolExportConfig, files: FileStore) -> MaterializeResult:
    return _exported(context, config, files, pool_source(files, context.partition_key))


# --- swat_export[target] --------------------------------------------------------------------


@profiled("swat_export")
class SwatExportConfig(SubsetExportConfig):
    pass


def _swat_shards(files: FileStore, name: str) -> Callable[[str], list[str]]:
    """A part's shards for target ``name``: its laion_images download plus the target's
    retrieved_images shards (the rows of parts never downloaded); only wanted uids are kept."""
    retrieved = retrieved_shards(files, name)
    return lambda part: downloaded_shards(files, part) + retrieved


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=["retrieval_samples", "retrieved_images", every_partition("laion_metadata"), every_partition("laion_images")],
    kinds={"parquet", "webdataset", "numpy"},
    description="SWAT's samples of one target, one export per sampling method (img2dataset parquet, webdataset "
    "shards with each image's class as .cls, DataComp's uid .npy), minus a takedown list.",
)
def swat_export(context: AssetExecutionContext, config: SwatExportConfig, files: FileStore) -> MaterializeResult:
    name = context.partition_key
    samples = swat_samples(files, name).with_columns(cls=pl.col("class").cast(pl.Int64, strict=False))
    methods = samples["method"].unique(maintain_order=True).to_list()
    rows, shards_of = [], _swat_shards(files, name)
    with files.new_version("swat_export", name) as version:
        for method in methods:
            source = _grouped(samples.filter(pl.col("method") == method).select("uid", "cls"))
            summary = _export(
                context, config, files, source, version.path(method), shards_of=shards_of, labelled=True,
                label=f"{method}: ",
            )  # fmt: skip
            rows.append({"method": method, **_counts(summary)})
        table = pl.DataFrame(rows) if rows else pl.DataFrame(schema={"method": pl.String})
        version.write_parquet(table, "methods.parquet")  # what takedown_report reads back
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "methods": markdown_table(table),
            "exported_webdataset": int(table["exported_webdataset"].sum()) if "exported_webdataset" in table else 0,
            "path": MetadataValue.path(version.uri),
        }
    )


# --- takedown_report ------------------------------------------------------------------------


@profiled("takedown_report")
class TakedownReportConfig(Config):
    removal_list: str | None = Field(
        TAKEDOWN_LIST, description="the takedown list to look for (as subset_export's; default LAIONLAB_TAKEDOWN_LIST)"
    )


def _source_uids(source: Source):
    """A subset's uids part by part."""
    parts, uids_of = source
    for part in parts:
        got = uids_of(part)
        yield got["uid"] if isinstance(got, pl.DataFrame) else got


def _export_uids(version, rows_file: str):
    """An export's rows.parquet uids a batch (at most a row group: a part) at a time."""
    for batch in version.iter_parquet(*rows_file.split("/"), columns=["uid"]):
        yield batch["uid"]


def _subsets(files: FileStore, context: AssetExecutionContext) -> tuple[dict[str, Source], list[str]]:
    """Every subset that exports are made of, by takedown_report's name: the static subsets,
    each registered dataset's pruned pool and each registered target's SWAT samples (sources,
    read part by part when used), and the names of those not materialised."""
    parts = registered(context, laion_part)
    found, absent = {}, []
    for name in subset.get_partition_keys():
        try:
            found[name] = subset_source(files, name, parts)
        except Failure:
            absent.append(name)
    for name in registered(context, dataset):
        try:
            found[f"pruned_pool:{name}"] = pool_source(files, name)
        except Failure:
            absent.append(f"pruned_pool:{name}")
    for name in registered(context, target):
        if files.exists("retrieval_samples", f"{name}.parquet"):
            found[f"swat:{name}"] = _grouped(swat_samples(files, name)["uid"].unique())
        else:
            absent.append(f"swat:{name}")
    return found, absent


def _exports(files: FileStore, context: AssetExecutionContext) -> dict[str, Iterator[pl.Series]]:
    """Each committed export's uids (its rows.parquet, read a part at a time when used), by
    takedown_report's name: export:<subset>, export:pruned_pool:<dataset>,
    export:swat:<target>/<method> (the methods listed in the version's methods.parquet)."""
    out = {}
    for folder, (prefix, partitions_def) in EXPORTS.items():
        static = partitions_def is subset
        for name in subset.get_partition_keys() if static else registered(context, partitions_def):
            if not files.has_version(folder, name):
                continue
            version = files.current_version(folder, name)
            if folder != "swat_export":
                out[f"export:{prefix}{name}"] = _export_uids(version, "rows.parquet")
                continue
            for method in version.read_parquet("methods.parquet", columns=["method"])["method"]:
                out[f"export:{prefix}{name}/{method}"] = _export_uids(version, f"{method}/rows.parquet")
    return out


@asset(
    group_name=GROUP,
    deps=[
        *(every_partition(name) for name in [*EXPORTS, *SOURCES]),
        every_partition("pruned_pools"),
        every_partition("retrieval_samples"),
    ],
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
    metadata_of, status_of, _ = _readers(files)
    with library_errors("takedown_report"):
        listed = listed_rows(registered(context, laion_part), metadata_of, status_of, removal)
    subsets, absent = _subsets(files, context)
    held = {name: _source_uids(source) for name, source in subsets.items()}  # read when the table is made
    held |= _exports(files, context)
    counts, items = takedown_table(held, listed)
    files.write_parquet(listed, "takedown_report", "listed_rows.parquet")
    files.write_parquet(items, "takedown_report", "items.parquet")
    names = counts.filter(pl.col("listed_rows") > 0)["subset"].to_list()  # an items table each
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
            **{f"items_{re.sub('[:/]', '_', s)}": markdown_table(items.filter(pl.col("subset") == s)) for s in names},
            "path": MetadataValue.path(files.path("takedown_report", "items.parquet")),
        }
    )


assets = [subset_export, pool_export, swat_export, takedown_report]
