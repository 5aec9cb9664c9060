"""DataComp's filtering baselines (Gadre et al., "DataComp: In search of the next generation of
multimodal datasets", NeurIPS 2023; code mlfoundations/datacomp, ``baselines/apply_filter.py``)
on the LAION parts: basic filtering, CLIP-score threshold (and LAION-2B's rule), CLIP-score top
fraction, text-based (synset lemmas), their intersection, and the kept ids in DataComp's format.

datacomp_flags[part] (row-by-row filters + the part's clip-score histogram) → datacomp_selection
(the merged histogram's top-fraction threshold, the kept ids of each filter). Defaults are
DataComp's; every threshold is config. The deviations are in :mod:`laionlab.curation.datacomp`.
"""

import polars as pl
from dagster import AssetExecutionContext, AssetKey, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import (
    EMBEDDINGS_TABLE,
    STATUS_FILE,
    downloaded_shards,
    laion_embeddings,
    laion_images,
    laion_metadata,
)
from asset_defs.lineage import require_same_params
from asset_defs.metadata import bar_plot, gallery_metadata, heatmap, histogram, markdown_table
from asset_defs.partitions import every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from asset_defs.readers import KEEP_FLAGS, part_flags, reference_vectors, require_one_model
from laionlab.curation.datacomp import FILTERS, HIST_BINS, LAION2B_THRESHOLD, TOP_FRACTION
from resources import FileStore, LanceStore

GROUP = "curation"


def _status(files: FileStore, part: str) -> pl.DataFrame | None:
    """img2dataset's status rows of the part's committed download (None before any)."""
    if not files.has_version("laion_images", part):
        return None
    return files.current_version("laion_images", part).read_parquet(STATUS_FILE)


# --- datacomp_flags[part] -------------------------------------------------------------------


@profiled("datacomp_flags")
class DatacompFlagsConfig(Config):
    min_caption_words: int = Field(3, ge=0, description="basic: caption words >= this (DataComp: > 2)")
    min_caption_chars: int = Field(6, ge=0, description="basic: caption characters >= this (DataComp: > 5)")
    min_image_side: int = Field(200, ge=0, description="basic: min(width, height) >= this (DataComp: 200 px)")
    max_aspect_ratio: float = Field(3.0, ge=1, description="basic: max/min side <= this (DataComp: 3)")
    language: str | None = Field(
        "en", description="basic, laion2b, text_based: the language kept (DataComp: fasttext 'en'); null keeps all"
    )
    language_column: str | None = Field(
        "LANGUAGE",
        description="metadata column holding a language code (LAION-2B-multi); a part without it counts as English "
        "(we have no language detector)",
    )
    clip_threshold: float = Field(
        LAION2B_THRESHOLD,
        ge=-1,
        le=1,
        description="clip_score_threshold and laion2b: clip_score >= this (LAION-2B: 0.28 with OpenAI ViT-B/32)",
    )
    synsets: str = Field(
        "imagenet21k",
        description="text_based: imagenet21k (DataComp's list), ilsvrc2012, or a file of wnids (one a line)",
    )
    case_sensitive: bool = Field(False, description="text_based: match lemmas case-sensitively (NLTK lower-cases)")
    histogram_bins: int = Field(
        HIST_BINS, ge=16, description="bins of the clip-score histogram over [-1, 1] (the top-fraction resolution)"
    )


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[laion_metadata, laion_images, laion_embeddings],
    kinds={"parquet", "numpy"},
    description="DataComp's row-by-row filters on one part (basic, CLIP score >= threshold, LAION-2B's rule, "
    "text-based) as flags per row, and the part's clip-score histogram for the global top fraction.",
)
def datacomp_flags(
    context: AssetExecutionContext, config: DatacompFlagsConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.curation import BasicRule, filter_counts, filter_lemmas, filter_synsets, part_flags, score_histogram

    part = context.partition_key
    model = require_one_model(lance)
    meta = files.read_parquet("laion_metadata", f"{part}.parquet")
    scores = lance.tables().part_query(EMBEDDINGS_TABLE, part, ["uid", "clip_score"]).to_polars()
    with library_errors(f"datacomp_flags[{part}]"):
        rule = BasicRule(
            config.min_caption_words,
            config.min_caption_chars,
            config.min_image_side,
            config.max_aspect_ratio,
            config.language,
        )
        flags = part_flags(
            meta,
            scores,
            filter_lemmas(filter_synsets(config.synsets)),
            status=_status(files, part),
            rule=rule,
            clip_threshold=config.clip_threshold,
            language_column=config.language_column,
            case_sensitive=config.case_sensitive,
        )
        histogram = score_histogram(flags["clip_score"].drop_nulls().to_numpy(), config.histogram_bins)
    files.save_npy(histogram, "datacomp_flags", f"{part}.hist.npy")
    files.write_parquet(flags, "datacomp_flags", f"{part}.parquet")
    return MaterializeResult(metadata=_flags_metadata(config, meta, flags, filter_counts(flags), model, files, part))


def _flags_metadata(
    config: DatacompFlagsConfig,
    meta: pl.DataFrame,
    flags: pl.DataFrame,
    counts: dict,
    model: str | None,
    files: FileStore,
    part: str,
) -> dict:
    """datacomp_flags' metadata: rows kept by each filter, what the basic filter's rules
    dropped, where the image sizes came from, whether a language column was there, and the
    part's clip scores against the threshold."""
    pool = counts["no_filter"]
    table = pl.DataFrame(
        {
            "filter": list(counts),
            "kept": list(counts.values()),
            "of_pool": [round(v / max(pool, 1), 4) for v in counts.values()],
        }
    )
    return {
        **params_metadata(config),
        "rows": meta.height,
        "pool (embedded rows)": pool,
        **{f"kept_{name}": v for name, v in counts.items()},
        "kept": markdown_table(table),
        "pool_failing_caption": int((flags["no_filter"] & ~flags["caption"]).sum()),
        "pool_failing_image": int((flags["no_filter"] & ~flags["image"]).sum()),
        "pool_failing_language": int((flags["no_filter"] & ~flags["english"]).sum()),
        "language_checked": bool(config.language_column and config.language_column in meta.columns),
        "image_size_from": MetadataValue.json(
            {str(k): int(v) for k, v in flags["size_source"].fill_null("unknown").value_counts().iter_rows()}
        ),
        "clip_model": model or "none",
        "clip_score_histogram": histogram(
            flags["clip_score"].drop_nulls().to_numpy(),
            "image-caption CLIP score",
            f"{part}: clip scores of the pool",
            files.path("datacomp_flags", f"{part}.png"),
            mark=(config.clip_threshold, f"clip_threshold {config.clip_threshold}"),
            ylabel="rows",
        ),
    }


# --- datacomp_selection ---------------------------------------------------------------------


@profiled("datacomp_selection")
class DatacompSelectionConfig(Config):
    top_fraction: float = Field(
        TOP_FRACTION, gt=0, le=1, description="clip_score_top_fraction: keep this top share of the pool (DataComp: 0.3)"
    )
    intersect: list[str] = Field(
        ["basic", "clip_score_top_fraction"],
        description=f"filters whose intersection is exported, among {', '.join(FILTERS)}",
    )
    export: list[str] = Field(
        list(FILTERS), description="filters whose kept ids are exported (.npy + .parquet), besides the intersection"
    )
    image_reference: str | None = Field(
        None,
        description="image_based: the catalog dataset whose image embeddings pick the pool clusters kept (DataComp: "
        "ImageNet-1k train); the clusters are seed 004's dedup_centroids / dedup_assignments. None: not computed",
    )


@asset(
    group_name=GROUP,
    deps=[
        every_partition(datacomp_flags),
        # image_based: seed 004's pool clusters and a reference dataset's embeddings
        AssetKey("dedup_centroids"),
        every_partition(AssetKey("dedup_assignments")),
        every_partition(AssetKey("reference_embeddings")),
    ],
    kinds={"parquet", "numpy"},
    description="DataComp's filters over all parts: the CLIP-score top-fraction threshold from the parts' merged "
    "histograms, each filter's and the intersection's kept ids (DataComp's sorted u8,u8 .npy and a uid/part parquet).",
)
def datacomp_selection(
    context: AssetExecutionContext, config: DatacompSelectionConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.curation import (
        bin_width,
        datacomp_uids,
        export_frame,
        merge_histograms,
        select_parts,
        top_fraction_threshold,
    )

    parts = registered(context, laion_part)
    params = require_same_params(context, "datacomp_flags", parts)  # one rule set (and bins) across parts
    missing = [p for p in parts if not files.exists("datacomp_flags", f"{p}.parquet")]
    if missing:
        raise Failure(f"datacomp_flags is missing for parts {missing}: materialise datacomp_flags for them first")
    with library_errors("datacomp_selection"):
        histogram = merge_histograms([files.load_npy("datacomp_flags", f"{p}.hist.npy", mmap=False) for p in parts])
        threshold = top_fraction_threshold(histogram, config.top_fraction)
        targets = _image_targets(lance, files, config.image_reference)
        export = [f for f in config.export if f != "image_based" or targets is not None]
        selection = select_parts(lambda p: _part_flags(files, p, targets), parts, threshold, config.intersect, export)
    for name, kept in selection.kept.items():
        frame = export_frame(kept)
        files.save_npy(datacomp_uids(frame["uid_hex"].to_list()), "datacomp_selection", f"{name}.npy")
        files.write_parquet(frame, "datacomp_selection", f"{name}.parquet")
    files.write_parquet(selection.counts, "datacomp_selection", "counts.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "flags_params": MetadataValue.json(params),
            "top_fraction_threshold": threshold,
            "image_based_target_clusters": len(targets) if targets is not None else "not computed (image_reference)",
            "threshold_resolution (bin width)": bin_width(len(histogram)),
            **_selection_metadata(selection.counts, parts, files),
        }
    )


def _image_targets(lance: LanceStore, files: FileStore, reference: str | None):
    """The image-based baseline's target clusters (None without a reference dataset)."""
    from laionlab.curation import image_based_targets

    if reference is None:
        return None
    return image_based_targets(
        files.load_npy("dedup_centroids", "centroids.npy"), reference_vectors(lance, reference, raw=False)
    )


def _part_flags(files: FileStore, part: str, targets) -> pl.DataFrame:
    """A part's datacomp_flags, with image_based when the target clusters are known."""
    from laionlab.curation import image_based_flags

    flags = files.read_parquet("datacomp_flags", f"{part}.parquet")
    if targets is None:
        return flags
    if not files.exists("dedup_assignments", f"{part}.parquet"):
        raise Failure(f"image_based needs dedup_assignments[{part}]: materialise it first")
    return image_based_flags(
        flags, files.read_parquet("dedup_assignments", f"{part}.parquet", columns=["uid", "cluster"]), targets
    )


def _selection_metadata(counts: pl.DataFrame, parts: list[str], files: FileStore) -> dict:
    """The kept rows and fractions of each filter over all parts (table and bar chart) and per part."""
    names = [c for c in counts.columns if c != "part"]
    totals = {name: int(counts[name].sum()) for name in names}
    pool = max(totals["no_filter"], 1)
    fractions = [totals[n] / pool for n in names]
    return {
        "parts_seen": ", ".join(parts),
        "pool": totals["no_filter"],
        **{f"kept_{name}": v for name, v in totals.items()},
        "kept": markdown_table(
            pl.DataFrame({"filter": names, "kept": list(totals.values()), "fraction": [round(f, 4) for f in fractions]})
        ),
        "kept_fraction_plot": bar_plot(
            names,
            [100 * f for f in fractions],
            "DataComp filters: share of the pool kept",
            "% of the pool",
            files.path("datacomp_selection", "kept_fractions.png"),
        ),
        "per_part": markdown_table(counts),
    }


# --- datacomp_gallery -----------------------------------------------------------------------


@profiled("datacomp_gallery")
class DatacompGalleryConfig(Config):
    per_verdict: int = Field(8, ge=1, le=16, description="images shown of the kept rows and of the rejected ones")
    parts: int = Field(2, ge=1, description="parts the rows are drawn from (a seeded choice)")
    seed: int = Field(0, ge=0, description="seeds the choice of the parts and the rows")


def _selection_rule(context: AssetExecutionContext) -> tuple[float, list[str]]:
    """The top-fraction threshold and the intersected filters of datacomp_selection's latest run."""
    event = context.instance.get_latest_materialization_event(datacomp_selection.key)
    if event is None:
        raise Failure("datacomp_selection has no result: materialise it first")
    meta = event.asset_materialization.metadata
    return meta["top_fraction_threshold"].value, list(meta["params"].value["intersect"])


@asset(
    group_name=GROUP,
    deps=[datacomp_selection],
    kinds={"jpeg"},
    description="What DataComp's intersection filter keeps and rejects: a contact sheet of a seeded few kept and "
    "rejected pool rows with their CLIP scores and the filters they fail, read back from only those images' shards.",
)
def datacomp_gallery(
    context: AssetExecutionContext, config: DatacompGalleryConfig, files: FileStore
) -> MaterializeResult:
    """The rows' verdicts are recomputed from their parts' flags with datacomp_selection's
    threshold and filters (``select_filters``), so no export is read, only the chosen parts' flags."""
    from laionlab.curation import select_filters, selection_verdicts
    from laionlab.gallery import contact_sheet, fetch_thumbnails, pick, row_uids, sample_rows, sheet_rows

    threshold, intersect = _selection_rule(context)
    parts = [p for p in registered(context, laion_part) if files.exists("datacomp_flags", f"{p}.parquet")]
    if not parts:
        raise Failure("datacomp_flags has no part: materialise datacomp_flags first")
    chosen = sample_rows(pl.DataFrame({"part": parts}), config.parts, config.seed)["part"].to_list()
    with library_errors("datacomp_gallery"):
        flags = [
            select_filters(files.read_parquet("datacomp_flags", f"{p}.parquet"), threshold, intersect) for p in chosen
        ]
        verdicts = pl.concat([selection_verdicts(f, intersect) for f in flags])
    shown = pick(verdicts, "verdict", 2, config.per_verdict, config.seed, order=["kept", "rejected"])
    label = pl.format("clip {}", pl.col("clip_score").round(3))
    shown = shown.with_columns(
        label=pl.when(pl.col("failed") == "").then(label).otherwise(pl.format("{} ✗ {}", label, pl.col("failed")))
    )
    rows = sheet_rows(shown, "verdict", "label")
    images = fetch_thumbnails(lambda part: downloaded_shards(files, part), row_uids(rows))
    fig = contact_sheet(rows, images, f"DataComp: kept vs rejected by {' ∩ '.join(intersect)}", label_chars=30)
    table = (
        verdicts.group_by("verdict")
        .agg(rows=pl.len(), median_clip_score=pl.col("clip_score").median().round(4))
        .join(shown.group_by("verdict").len().rename({"len": "shown"}), on="verdict", how="left")
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("datacomp_gallery", "kept_rejected.jpg"), rows, images),
            "top_fraction_threshold": threshold,
            "parts_shown": ", ".join(chosen),
            "verdicts": markdown_table(table.sort("verdict")),
            "rows_shown": markdown_table(shown.select("verdict", "uid", "clip_score", "failed")),
        }
    )


# --- curation_agreement ----------------------------------------------------------------------

# the methods curation_agreement compares: every per-part keep decision (asset_defs/readers.py)
AGREEMENT_SOURCES = KEEP_FLAGS


@profiled("curation_agreement")
class AgreementConfig(Config):
    methods: list[str] = Field(
        list(AGREEMENT_SOURCES),
        description=f"methods compared (a method without results for every part is left out): "
        f"{', '.join(AGREEMENT_SOURCES)}",
    )


def _agreement_metadata(stats, missing: list[str], files: FileStore) -> dict:
    return {
        "rows_compared": stats.rows,
        "methods_left_out (no results for every part)": ", ".join(missing) or "none",
        "kept": markdown_table(stats.kept_table()),
        "pairs": markdown_table(stats.pairs_table()),
        "jaccard_heatmap": heatmap(
            stats.matrix(),
            stats.methods,
            "Jaccard of the kept sets (rows of the embedded pool)",
            files.path("curation_agreement", "jaccard.png"),
        ),
    }


@asset(
    group_name=GROUP,
    deps=[
        every_partition(datacomp_flags),
        every_partition(AssetKey("laion_dedup")),
        AssetKey("dbp_selection"),
        every_partition(AssetKey("concept_balanced")),
        every_partition(AssetKey("exact_duplicates")),
    ],
    kinds={"parquet"},
    description="Which rows each curation method keeps on the same rows (the embedded pool): counts per method "
    "and, for every pair, the overlap and Jaccard of their kept sets, accumulated part by part.",
)
def curation_agreement(context: AssetExecutionContext, config: AgreementConfig, files: FileStore) -> MaterializeResult:
    from laionlab.curation.agreement import Agreement

    unknown = sorted(set(config.methods) - set(AGREEMENT_SOURCES))
    if unknown:
        raise Failure(f"curation_agreement: unknown methods {unknown}; known: {', '.join(AGREEMENT_SOURCES)}")
    parts = registered(context, laion_part)
    has = {m: all(files.exists(AGREEMENT_SOURCES[m][0], f"{p}.parquet") for p in parts) for m in config.methods}
    methods = [m for m in config.methods if has[m]]
    pool_ready = all(files.exists("datacomp_flags", f"{p}.parquet") for p in parts)  # the rows compared
    if not pool_ready or len(methods) < 2:
        raise Failure(
            f"curation_agreement: needs datacomp_flags and two methods with results for every part ({methods})"
        )
    stats = Agreement(methods)
    for part in parts:  # one part's flags at a time
        pool = files.read_parquet("datacomp_flags", f"{part}.parquet", columns=["uid", "no_filter"])
        stats.add_part(
            pool.filter(pl.col("no_filter"))["uid"], {m: part_flags(files, AGREEMENT_SOURCES[m], part) for m in methods}
        )
    files.write_parquet(stats.kept_table(), "curation_agreement", "kept.parquet")
    files.write_parquet(stats.pairs_table(), "curation_agreement", "pairs.parquet")
    missing = [m for m in config.methods if m not in methods]
    return MaterializeResult(metadata={**params_metadata(config), **_agreement_metadata(stats, missing, files)})


assets = [datacomp_flags, datacomp_selection, datacomp_gallery, curation_agreement]
