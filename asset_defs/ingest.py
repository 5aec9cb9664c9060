"""Ingest, the inputs every pipeline shares: LAION metadata → img2dataset images → open_clip
embeddings in LanceDB, per ``laion_part`` (one key per source file or row range; each asset
reads its input for one part, calls the library and writes that part atomically), and the
catalog's reference image sets embedded with the same encoder, per ``dataset``.
"""

import os

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    asset,
)
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.lineage import data_version
from asset_defs.metadata import bar_plot, markdown_table
from asset_defs.partitions import dataset, laion_part
from asset_defs.profile import params_metadata, profiled
from laionlab.embed.checks import embedding_health
from laionlab.io.digest import fingerprint, frame_digest
from laionlab.io.download import (
    checked_failures,
    count_successes,
    describe_lost,
    download_part,
    fetched_contents,
    lost_by_shard,
    redownload_failed,
)
from laionlab.io.lance import (
    ShrinkError,
    embeddings_batches,
    embeddings_schema,
    one_of,
    reference_batches,
    reference_schema,
)
from laionlab.io.metadata import metadata_summary, read_part, split_part_key
from laionlab.io.precomputed import find_precomputed, iter_precomputed
from resources import (
    ClipEncoder,
    DatasetCatalog,
    Downloader,
    FileStore,
    FolderBusyError,
    LaionSource,
    LanceStore,
    Version,
)

EMBEDDINGS_TABLE = "laion_embeddings"
REFERENCE_TABLE = "reference_embeddings"
STATUS_FILE = "status.parquet"


def encode_shards(*args, **kwargs):
    """laionlab.embed.encode.encode_shards, imported on first call: torch and webdataset are
    not imported with the code location (a module-level name, so tests can replace it)."""
    from laionlab.embed.encode import encode_shards as encode

    return encode(*args, **kwargs)


def images_dir(files: FileStore, part: str) -> str:
    """The committed webdataset folder of a part (follows the CURRENT pointer)."""
    return files.current_version("laion_images", part).uri


def image_shards(files: FileStore, part: str) -> list[str]:
    """The tar shards of a part's committed images (local paths or URIs), sorted."""
    return files.current_version("laion_images", part).glob("*.tar")


def downloaded_shards(files: FileStore, part: str) -> list[str]:
    """``image_shards``, or none for a part never downloaded (a gallery then shows its tiles as missing)."""
    return image_shards(files, part) if files.has_version("laion_images", part) else []


@asset(
    partitions_def=laion_part,
    group_name="ingest",
    kinds={"parquet", "polars"},
    description="One LAION metadata file, schema-checked and normalised, with a stable uid per row.",
)
def laion_metadata(context: AssetExecutionContext, source: LaionSource, files: FileStore) -> MaterializeResult:
    part = context.partition_key
    with library_errors(None, FileNotFoundError):
        piece = source.part_slice(part)
    if piece.chunks > 1:  # the file's other partitions must be the ones this setting cuts
        registered_chunks = [
            k for k in context.instance.get_dynamic_partitions(laion_part.name) if k.startswith(f"{piece.file_key}.")
        ]
        if len(registered_chunks) != piece.chunks:
            raise Failure(
                f"{piece.uri} is registered as {len(registered_chunks)} partitions but rows_per_partition="
                f"{source.rows_per_partition:,} cuts it into {piece.chunks}: "
                "set it back to the value used at registration"
            )
    uri = piece.uri
    context.log.info(f"{part}: rows {piece.start:,}..{piece.stop - 1:,} of {uri}")
    frame = read_part(uri, part, piece.start, piece.stop)
    if frame.height == 0:
        raise Failure(f"LAION part {part!r} ({uri}) has no rows; nothing written")
    out = files.write_parquet(frame, "laion_metadata", f"{part}.parquet")
    contents = frame_digest(frame)
    summary = metadata_summary(frame)
    nulls = pl.DataFrame({"column": list(summary["null_counts"]), "nulls": list(summary["null_counts"].values())})
    return MaterializeResult(
        metadata={
            "source": uri,
            "source_rows": f"{piece.start}..{piece.stop - 1}",
            "path": out,
            "rows": summary["rows"],
            "nsfw_share": round(summary["nsfw_share"], 4),
            "empty_captions": summary["empty_captions"],
            "null_counts": markdown_table(nulls),
            "columns": ", ".join(frame.columns),
            "source_fingerprint": fingerprint(uri),
            "contents": contents,
        },
        data_version=data_version(context, contents),
    )


@profiled("laion_images")
class LaionImagesConfig(Config):
    min_success_rate: float = Field(0.5, ge=0, le=1, description="download success rate below which the check warns")
    retry_failed: bool = Field(
        False,
        description="fetch again only the samples the part's current download failed on (its successes are "
        "kept, copied into the new version); without a current download, the whole part",
    )


@asset(
    partitions_def=laion_part,
    group_name="ingest",
    deps=[laion_metadata],
    kinds={"webdataset"},
    check_specs=[AssetCheckSpec("download_success_rate", asset="laion_images")],
    description="The part's images downloaded by img2dataset into webdataset shards, with a "
    "status row (success or error message) for every uid.",
)
def laion_images(
    context: AssetExecutionContext,
    config: LaionImagesConfig,
    files: FileStore,
    downloader: Downloader,
    clip: ClipEncoder,
) -> MaterializeResult:
    part = context.partition_key
    # the model laion_embeddings will need: a typo or a missing checkpoint fails now, not after the download
    with library_errors(
        "clip resource",
        FileNotFoundError,
        hint=f" (checked before downloading part {part!r}; laion_embeddings needs it)",
    ):
        clip.validate()
    metadata = files.read_parquet("laion_metadata", f"{part}.parquet")
    previous = files.current_version("laion_images", part) if files.has_version("laion_images", part) else None
    try:  # a second writer's commit would delete this one's version mid-download
        with files.new_version("laion_images", part) as version:
            result = _download(context, metadata, version, downloader, previous if config.retry_failed else None)
            with library_errors():  # not one image: the version is dropped, the current one stays
                failures = checked_failures(result, f"part {part!r}")
            version.write_parquet(result.status, STATUS_FILE)
    except FolderBusyError as err:
        raise Failure(f"laion_images[{part}]: another run is downloading this part: {err}") from None
    # the web is not versioned: the result is what was fetched (which rows, which shard bytes)
    fetched = fetched_contents(result.status, result.shards)
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "path": version.uri,
            "rows": metadata.height,
            "successes": result.successes,
            "success_rate": round(result.success_rate, 4),
            "shards": len(result.shards),
            "seconds": round(result.seconds, 2),
            "failure_reasons": markdown_table(failures.head(20)),
            **_failure_metadata(result.status, metadata, files, part),
        },
        data_version=data_version(context, fetched, upstream=[("laion_metadata", part)]),
        check_results=[_success_rate_check(result.success_rate, config)],
    )


def _download(context, metadata: pl.DataFrame, version, downloader: Downloader, previous):
    """The part's download into ``version``: only the samples ``previous`` (the current version,
    when retry_failed is set) did not get, else every row; on Ray when the downloader names a cluster."""
    settings = downloader.settings()
    if previous is not None:
        status = previous.read_parquet(STATUS_FILE)
        context.log.info(f"retrying the {int((status['status'] != 'success').sum())} failed samples into {version.uri}")
        return redownload_failed(metadata, status, previous.glob("*.tar"), version.uri, settings)
    context.log.info(f"downloading {metadata.height} images into {version.uri}")
    if downloader.ray_address:  # img2dataset's ray distributor on an existing cluster
        from laionlab.distributed import ray_download_part

        return ray_download_part(metadata, version.uri, settings, downloader.ray_address)
    return download_part(metadata, version.uri, settings)


def _failure_metadata(status: pl.DataFrame, metadata: pl.DataFrame, files: FileStore, part: str) -> dict:
    """Why a part's downloads failed: by class (DNS, timeout, 4xx, 5xx, TLS, decode, policy...)
    as a table and a bar plot, and the hosts with most failures."""
    from laionlab.io.download import failure_causes

    causes, domains = failure_causes(status, metadata.select("uid", "URL"))
    if causes.height == 0:
        return {"failure_causes": markdown_table(causes)}
    return {
        "failure_causes": markdown_table(causes),
        "failure_causes_plot": bar_plot(
            causes["cause"].to_list(),
            [float(c) for c in causes["count"]],
            f"{part}: failed downloads by cause",
            "samples",
            files.path("laion_images", f"{part}.failures.png"),
        ),
        "failures_by_domain": markdown_table(domains),
    }


def _success_rate_check(rate: float, config: LaionImagesConfig) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="download_success_rate",
        passed=rate >= config.min_success_rate,
        severity=AssetCheckSeverity.WARN,
        metadata={"success_rate": rate, "threshold": config.min_success_rate},
    )


@profiled("laion_embeddings")
class EmbeddingsConfig(Config):
    unit_norm_tolerance: float = Field(1e-3, gt=0, description="allowed | ||v|| - 1 | per stored vector")
    max_shrink_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="a re-embedded part may lack at most this share of its stored rows (a truncated "
        "shard would otherwise shrink it silently); beyond it the step fails and keeps the stored rows",
    )
    allow_shrink: bool = Field(
        False, description="accept a re-embedded part with fewer rows than stored, whatever the share"
    )


# blocking: a failure fails the step, so steps downstream in the same run do not read a broken or
# mixed table (later runs' readers refuse a mixed table themselves: require_one_model)
EMBEDDING_CHECKS = [
    AssetCheckSpec(
        "finite_values", asset=EMBEDDINGS_TABLE, blocking=True, description="no NaN/inf in the part's vectors"
    ),
    AssetCheckSpec(
        "unit_norm", asset=EMBEDDINGS_TABLE, blocking=True, description="every vector has norm 1 within tolerance"
    ),
    AssetCheckSpec(
        "one_model_one_dim",
        asset=EMBEDDINGS_TABLE,
        blocking=True,
        description="the table holds one model id and one dimension",
    ),
    AssetCheckSpec(
        "every_download_decoded",
        asset=EMBEDDINGS_TABLE,
        description="every downloaded sample of the part could be decoded (WARN)",
    ),
]


def _embedding_checks(lance: LanceStore, part: str, config: EmbeddingsConfig) -> tuple[list[AssetCheckResult], dict]:
    tables = lance.tables()
    part_health = embedding_health(tables.iter_part(EMBEDDINGS_TABLE, part))
    # the part's models, and how many rows of the table are of another one (the model column's
    # BITMAP index answers that without scanning the table)
    mine = (
        pl.from_arrow(tables.read_part(EMBEDDINGS_TABLE, part, ["model"])).group_by("model").agg(pl.len().alias("rows"))
    )
    others = tables.count(EMBEDDINGS_TABLE, one_of("model", mine["model"].to_list(), negate=True)) if mine.height else 0
    models = pl.concat(
        [
            mine.with_columns(pl.lit(part).alias("where")),
            pl.DataFrame({"model": ["(any other)"], "rows": [others], "where": ["other parts"]}),
        ],
        how="vertical_relaxed",
    )
    results = [
        AssetCheckResult(
            check_name="finite_values",
            passed=part_health.non_finite_rows == 0,
            metadata={"non_finite_rows": part_health.non_finite_rows},
        ),
        AssetCheckResult(
            check_name="unit_norm",
            passed=part_health.unit_norm(config.unit_norm_tolerance),
            metadata={"max_norm_deviation": part_health.max_norm_deviation, "tolerance": config.unit_norm_tolerance},
        ),
        AssetCheckResult(
            check_name="one_model_one_dim",
            passed=mine.height == 1 and others == 0 and len(part_health.dims) == 1,
            metadata={"models": markdown_table(models), "dims": str(sorted(part_health.dims))},
        ),
    ]
    return results, {"rows_checked": part_health.rows}


@asset(
    partitions_def=laion_part,
    group_name="ingest",
    deps=[laion_images],
    kinds={"lancedb", "pytorch"},
    pool="gpu",
    check_specs=EMBEDDING_CHECKS,
    description="Image and caption embeddings (unit norm, plus raw norms) and the image–caption "
    "clip_score of every downloaded sample, in the LanceDB table laion_embeddings.",
)
def laion_embeddings(
    context: AssetExecutionContext, config: EmbeddingsConfig, clip: ClipEncoder, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    part = context.partition_key
    images = files.current_version("laion_images", part)
    shards = images.glob("*.tar")
    expected = count_successes(images.read_parquet(STATUS_FILE, columns=["status"]))
    loaded = clip.load()
    schema = embeddings_schema(loaded.embed_dim)
    lance.tables().ensure(EMBEDDINGS_TABLE, schema)  # dimension mismatch fails here, before any work
    context.log.info(f"embedding {expected} samples of {part} from {len(shards)} shards with {loaded.model_id}")
    encoded, stats = _encode(clip, loaded, shards, expected)
    batches = embeddings_batches(encoded, part, loaded.model_id)
    max_shrink = None if config.allow_shrink else config.max_shrink_share
    try:
        written = lance.replace_part(EMBEDDINGS_TABLE, part, batches, schema, max_shrink=max_shrink)
    except ShrinkError as err:
        raise _shrink_failure(err, images, shards) from None
    checks, extra = _embedding_checks(lance, part, config)
    checks.append(_decoded_check(expected, written.rows))
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "rows": written.rows,
            "skipped_undecodable": expected - written.rows,
            "model_id": loaded.model_id,
            "embed_dim": loaded.embed_dim,
            "device": str(loaded.device),
            "images_per_second": round(stats.images_per_second, 1),
            "table_version": written.version,
            "lance_uri": lance.uri,
            **extra,
        },
        # the model comes from a resource, which code versions do not see
        data_version=data_version(context, loaded.model_id, written.rows, upstream=[("laion_images", part)]),
        check_results=checks,
    )


def _decoded_check(downloaded: int, embedded: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="every_download_decoded",
        passed=embedded >= downloaded,
        severity=AssetCheckSeverity.WARN,
        metadata={"downloaded": downloaded, "embedded": embedded, "undecodable": downloaded - embedded},
    )


def _encode(clip: ClipEncoder, loaded, shards: list[str], expected: int):
    """The part's encoded batches, by the executor the clip resource names (a Ray Data actor
    pool on an existing cluster, else this process: same rows, same atomic write), and the
    EncodeStats they fill as they are read."""
    from laionlab.embed.encode import EncodeStats

    stats = EncodeStats()
    if clip.ray_address:
        from laionlab.distributed import ray_encode_shards

        encoded = ray_encode_shards(
            clip.spec,
            shards,
            clip.ray_address,
            clip.batch_size,
            clip.ray_actors,
            clip.ray_gpus_per_actor,
            stats=stats,
            **clip.loader_options,
        )
    else:
        encoded = encode_shards(
            loaded, shards, clip.batch_size, clip.num_workers, stats, total=expected, **clip.loader_options
        )
    return encoded, stats


def _shrink_failure(err: ShrinkError, images: Version, shards: list[str]) -> Failure:
    """The step's Failure when the re-embedded part would lose stored rows: the lost samples
    by shard (from the part's status table) and what to do."""
    lost = lost_by_shard(images.read_parquet(STATUS_FILE, columns=["uid", "key", "status"]), shards, err.lost)
    lost_counts = pl.DataFrame({"shard": list(lost), "lost": [len(u) for u in lost.values()]})
    return Failure(
        f"{err}. Lost samples by shard: {describe_lost(lost)}. A truncated or corrupt shard? Re-materialise "
        "laion_images for the part; to accept the smaller part, run laion_embeddings with config allow_shrink: true.",
        metadata={
            "lost_rows": len(err.lost),
            "stored_rows": err.stored,
            "lost_by_shard": markdown_table(lost_counts),
        },
    )


# A deployment that imports a release's embeddings instead of downloading images sets this; only
# then is laion_embeddings_import part of the graph (otherwise "Materialize all" would run an
# import with nothing to import).
IMPORT_ROOT = os.environ.get("LAIONLAB_EMBEDDINGS_IMPORT_ROOT") or None


@profiled("laion_embeddings_import")
class EmbeddingsImportConfig(Config):
    root: str = Field(
        *([IMPORT_ROOT] if IMPORT_ROOT else []),
        description="folder or fsspec URI with img_emb/, text_emb/ and metadata/ (clip-retrieval layout); default "
        "LAIONLAB_EMBEDDINGS_IMPORT_ROOT",
    )
    model_id: str = Field("ViT-L-14/openai", description="model that produced the vectors (LAION-5B: ViT-L/14)")
    batch_rows: int = Field(65_536, ge=1)


@asset(
    partitions_def=laion_part,
    group_name="ingest",
    deps=[laion_metadata],
    kinds={"lancedb", "numpy"},
    description="Alternative to laion_embeddings: precomputed embeddings in the clip-retrieval / "
    "LAION release layout imported into the same laion_embeddings table.",
)
def laion_embeddings_import(
    context: AssetExecutionContext, config: EmbeddingsImportConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    part = context.partition_key
    file_key, chunk = split_part_key(part)
    found = find_precomputed(config.root, file_key)
    rows = files.read_parquet("laion_metadata", f"{part}.parquet", columns=["row"])["row"]
    start, stop = (int(rows.min()), int(rows.max()) + 1) if len(rows) else (0, 0)
    whole = chunk is None and found.rows != len(rows)
    if whole or stop > found.rows or stop - start != len(rows):
        raise Failure(
            f"{found.image} has {found.rows} rows but laion_metadata[{part}] has {len(rows)} "
            f"(file rows {start}..{stop - 1}): "
            "the embeddings do not belong to this part"
        )
    first = next(iter_precomputed(found, part, config.model_id, batch_rows=1, start=start, stop=stop))
    schema = first.schema
    written = lance.replace_part(
        EMBEDDINGS_TABLE, part, iter_precomputed(found, part, config.model_id, config.batch_rows, start, stop), schema
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "rows": written.rows,
            "model_id": config.model_id,
            "source": str(found.image),
            "table_version": written.version,
        },
        data_version=data_version(
            context, config.model_id, fingerprint(str(found.image)), start, stop, upstream=[("laion_metadata", part)]
        ),
    )


# --- reference_embeddings[dataset]: the catalog's image sets, the other input of four papers ---


@asset(
    partitions_def=dataset,
    group_name="ingest",
    kinds={"lancedb", "pytorch"},
    pool="gpu",
    description="Image embeddings of one catalog reference dataset (THINGS, NSD, demo sets...) "
    "with the same ClipEncoder as LAION, in the LanceDB table reference_embeddings.",
)
def reference_embeddings(
    context: AssetExecutionContext, catalog: DatasetCatalog, clip: ClipEncoder, lance: LanceStore
) -> MaterializeResult:
    from laionlab.embed.encode import EncodeStats, encode_dataset
    from laionlab.io.reference import ReferenceImages, list_items

    name = context.partition_key
    spec = catalog.get(name)
    items = list_items(spec)
    if not items.sources:
        raise Failure(f"reference dataset {name!r} ({spec.path}) has no images")
    loaded = clip.load()
    schema = reference_schema(loaded.embed_dim)
    lance.tables().ensure(REFERENCE_TABLE, schema)
    stats = EncodeStats()
    encoded = encode_dataset(loaded, ReferenceImages(spec, loaded.preprocess), clip.batch_size, clip.num_workers, stats)
    batches = reference_batches(encoded, name, loaded.model_id, items.labels, items.sources)
    written = lance.tables().replace_part(REFERENCE_TABLE, name, batches, schema, part_column="dataset")
    labels = (
        pl.DataFrame({"label": items.labels})
        .group_by("label")
        .agg(pl.len().alias("images"))
        .sort("images", descending=True)
    )
    return MaterializeResult(
        metadata={
            "rows": written.rows,
            "kind": spec.kind,
            "source": spec.path,
            "model_id": loaded.model_id,
            "images_per_second": round(stats.images_per_second, 1),
            "labels": markdown_table(labels, max_rows=20),
        },
        data_version=data_version(context, repr(spec), fingerprint(spec.path), loaded.model_id, written.rows),
    )


assets = [
    laion_metadata,
    laion_images,
    laion_embeddings,
    reference_embeddings,
    *([laion_embeddings_import] if IMPORT_ROOT else []),
]
