"""SWAT-style retrieval (seed 003: Liu et al., "Few-Shot Recognition via Stage-Wise
Retrieval-Augmented Finetuning", CVPR 2025; public code tian1327/SWAT ``retrieval/``): concept
synonyms of a target's classes, string matching over all LAION captions, the eight sampling
methods (Random, T2T/T2I/I2T/I2I ranking and the thresholded T2T variants) and the export in
SWAT's list format.

caption_search_index → string_matches[target] ← concept_synonyms[target];
string_matches → retrieved_images[target] (matched rows whose part was not downloaded) →
retrieval_samples[target].
"""

import io
import logging
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
import pyarrow as pa
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
from asset_defs.ingest import (
    EMBEDDINGS_TABLE,
    downloaded_shards,
    laion_embeddings,
    laion_metadata,
    reference_embeddings,
)
from asset_defs.lineage import data_version
from asset_defs.metadata import bar_plot, gallery_metadata, line_plot, markdown_table
from asset_defs.partitions import every_partition, laion_part, registered, target
from asset_defs.profile import params_metadata, profiled
from asset_defs.readers import labelled_reference, laion_columns_for, retrieved_shards, stack_vectors
from laionlab.io.digest import frame_digest
from laionlab.io.lance import embeddings_batches, embeddings_schema, read_vectors, uid_filters
from laionlab.io.metadata import uid_parts
from laionlab.progress import Progress
from laionlab.swat import (
    candidate_rows,
    caption_rows,
    check_methods,
    class_frequency,
    fewshot_embeddings,
    matched_captions,
    merge_failures,
    needs_fewshot,
    normalise,
    picked_rows,
    plan_retrieval,
    prompt_embeddings,
    rows_to_retrieve,
    sample_all_methods,
    samples_table,
    swat_labels,
    synonyms_from_table,
    synonyms_table,
    write_swat_lists,
)
from resources import ClipEncoder, DatasetCatalog, Downloader, FileStore, FolderBusyError, LanceStore

if TYPE_CHECKING:
    from laionlab.io.download import DownloadResult

GROUP = "retrieval"
CAPTIONS_TABLE = "laion_captions"
RETRIEVED_TABLE = "retrieved_embeddings"


def _synonyms(catalog: DatasetCatalog, name: str):
    with library_errors(f"target {name!r}", KeyError):
        spec = catalog.target(name)
        return spec, spec.synonyms()


# --- concept_synonyms ------------------------------------------------------------------------


@asset(
    partitions_def=target,
    group_name=GROUP,
    kinds={"parquet"},
    description="Class → synonyms of one retrieval target, from a REAL/SWAT metrics JSON or plain class names, "
    "with the target's optional prefix (e.g. 'satellite' for EuroSAT).",
)
def concept_synonyms(context: AssetExecutionContext, catalog: DatasetCatalog, files: FileStore) -> MaterializeResult:
    name = context.partition_key
    spec, synonyms = _synonyms(catalog, name)
    with library_errors(f"target {name!r}"):
        frame = synonyms_table(synonyms, spec.prefix)
    files.write_parquet(frame, "concept_synonyms", f"{name}.parquet")
    return MaterializeResult(
        metadata={
            "classes": frame.height,
            "synonyms": int(frame["synonyms"].list.len().sum()),
            "prefix": spec.prefix or "none",
            "source": spec.metrics or "class names",
            "classes_table": markdown_table(frame.with_columns(pl.col("synonyms").list.join("; ")).head(30)),
            "synonyms_per_class": bar_plot(
                frame["class"].head(30).to_list(),
                [float(n) for n in frame["synonyms"].list.len().head(30)],
                f"{name}: synonyms per class" + (" (first 30)" if frame.height > 30 else ""),
                "synonyms",
                files.path("concept_synonyms", f"{name}.png"),
            ),
        },
        data_version=data_version(context, frame_digest(frame)),
    )


def _synonym_map(files: FileStore, name: str) -> tuple[dict, str | None]:
    with library_errors(f"concept_synonyms[{name}]"):
        return synonyms_from_table(files.read_parquet("concept_synonyms", f"{name}.parquet"))


# --- caption_search_index --------------------------------------------------------------------


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_metadata)],
    kinds={"lancedb"},
    description="All parts' captions in one LanceDB table (uid, part, TEXT, the matcher's normalised text) "
    "with a native full-text index (phrase queries); parts are added incrementally.",
)
def caption_search_index(context: AssetExecutionContext, files: FileStore, lance: LanceStore) -> MaterializeResult:
    parts = registered(context, laion_part)
    tables = lance.tables()
    schema = pa.schema(
        [("uid", pa.string()), ("part", pa.string()), ("TEXT", pa.string()), ("normalised", pa.string())]
    )
    indexed = {}
    if tables.exists(CAPTIONS_TABLE):
        counts = pl.from_arrow(tables.open(CAPTIONS_TABLE).search().limit(None).select(["part"]).to_arrow())[
            "part"
        ].value_counts()
        indexed = dict(counts.iter_rows())
    added = []
    progress = Progress("caption_search_index: checking and adding parts", len(parts), log=context.log, unit="parts")
    for part in parts:
        meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
        if indexed.get(part) != meta.height:
            frame = caption_rows(meta, part)
            tables.replace_part(CAPTIONS_TABLE, part, frame.to_arrow().cast(schema).to_batches(), schema)
            added.append(part)
        progress.update()
    progress.close()
    stale = sorted(set(indexed) - set(parts))
    for part in stale:
        tables.delete_part(CAPTIONS_TABLE, part)
    table = tables.open_to_write(CAPTIONS_TABLE)
    if not any(i.index_type == "FTS" for i in table.list_indices()):
        table.create_fts_index("normalised", with_position=True, stem=False, remove_stop_words=False, replace=True)
    elif added or stale:
        table.optimize()  # indexes the new rows into the existing full-text index
    return MaterializeResult(
        metadata={
            "rows": table.count_rows(),
            "parts_seen": ", ".join(parts),
            "parts_added": ", ".join(added) or "none",
            "parts_removed": ", ".join(stale) or "none",
        }
    )


def search_captions(lance: LanceStore, phrase: str, limit: int | None = 100) -> pl.DataFrame:
    """Captions containing ``phrase`` (normalised as the matcher does), via the FTS index."""
    text = normalise([phrase])[0].strip()
    query = (
        lance.tables().open(CAPTIONS_TABLE).search(f'"{text}"', query_type="fts").select(["uid", "TEXT"]).limit(limit)
    )
    return pl.from_arrow(query.to_arrow()).select("uid", "TEXT")


# --- string_matches --------------------------------------------------------------------------


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=[concept_synonyms, every_partition(caption_search_index)],
    kinds={"parquet", "polars"},
    check_specs=[
        AssetCheckSpec(
            "every_part_has_captions",
            asset="string_matches",
            description="every registered part has captions in the caption table (else re-materialise "
            "caption_search_index for it)",
        )
    ],
    description="Captions containing a synonym of a class as whole words (case-insensitive; and the prefix): uid → "
    "classes, all matches kept. Metadata: SWAT's class frequency and its long tail.",
)
def string_matches(context: AssetExecutionContext, files: FileStore, lance: LanceStore) -> MaterializeResult:
    name = context.partition_key
    synonyms, prefix = _synonym_map(files, name)
    matches, empty = _match_parts(context, lance, name, synonyms, prefix)
    files.write_parquet(matches, "string_matches", f"{name}.parquet")
    freq = class_frequency(matches, classes=[str(k) for k in synonyms])
    names = {str(k): s.name for k, s in synonyms.items()}
    frequency = {k: {"name": names[k], "actual_freq": v} for k, v in freq.items()}  # SWAT's class_frequency json
    frequency_json = files.write_json(frequency, "string_matches", f"{name}_class_frequency.json", indent=1)
    counts = sorted(freq.values(), reverse=True)
    table_frame = pl.DataFrame({"class": list(freq), "name": [names[k] for k in freq], "matches": list(freq.values())})
    return MaterializeResult(
        metadata={
            "parts_seen": ", ".join(registered(context, laion_part)),  # what _match_parts read
            "matched_captions": matches.height,
            "multi_class_captions": int((matches["classes"].list.len() > 1).sum()),
            "classes_without_match": sum(v == 0 for v in counts),
            "class_frequency": markdown_table(table_frame.head(30)),
            "class_frequency_json": frequency_json,
            "long_tail": line_plot(
                list(range(1, len(counts) + 1)),
                {"matches": [max(c, 0.5) for c in counts]},
                "class rank",
                f"{name}: matches per class",
                files.path("string_matches", f"{name}_long_tail.png"),
                logx=False,
                ylabel="captions",
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="every_part_has_captions",
                passed=not empty,
                severity=AssetCheckSeverity.WARN,
                metadata={"parts_without_captions": ", ".join(empty) or "none", "table": CAPTIONS_TABLE},
            )
        ],
    )


def _match_parts(
    context: AssetExecutionContext, lance: LanceStore, name: str, synonyms: dict, prefix: str | None
) -> tuple[pl.DataFrame, list[str]]:
    """uid, classes (as strings), synonyms of every caption of every registered part that
    matches a class, one part at a time from the caption table; and the parts that have no
    caption there."""
    parts = registered(context, laion_part)
    if not parts or not lance.tables().exists(CAPTIONS_TABLE):
        raise Failure(
            f"string_matches[{name}]: no captions to match ({len(parts)} laion_part partitions registered, "
            f"{CAPTIONS_TABLE} {'exists' if lance.tables().exists(CAPTIONS_TABLE) else 'missing'}): "
            "add parts and materialise caption_search_index"
        )
    tables = lance.tables()
    frames, empty = [], []
    progress = Progress(f"{name}: matching captions", len(parts), log=context.log, unit="parts")
    for part in parts:
        captions = pl.from_arrow(tables.read_part(CAPTIONS_TABLE, part, ["uid", "TEXT"]))
        if captions.height == 0:
            empty.append(part)
        frames.append(matched_captions(captions, synonyms, prefix))
        progress.update()
    progress.close()
    return pl.concat(frames), empty


# --- retrieved_images ------------------------------------------------------------------------


@profiled("retrieved_images")
class RetrievedImagesConfig(Config):
    max_per_class: int | None = Field(
        None,
        ge=1,
        description="each class draws at most this many of its rows to download (seeded random; the seed's "
        "--sampling random); a row of several classes drawn by one counts for all",
    )
    seed: int = Field(0)
    retry_failed: bool = Field(
        False,
        description="download again rows whose download failed in an earlier run "
        "(img2dataset's `retries` already retries within a run)",
    )


def _embedded_uids(lance: LanceStore, table: str, uids: list[str]) -> set[str]:
    tables = lance.tables()
    if not tables.exists(table) or not uids:
        return set()
    tbl, found = tables.open(table), set()
    for clause in uid_filters(uids):
        found.update(pl.from_arrow(tbl.search().limit(None).select(["uid"]).where(clause).to_arrow())["uid"].to_list())
    return found


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=[string_matches, every_partition(laion_embeddings)],
    kinds={"webdataset", "lancedb"},
    pool="gpu",
    description="Matched rows whose images are not in laion_embeddings (their part was not downloaded): just those "
    "uids downloaded with img2dataset into the target's own shards and embedded (table retrieved_embeddings).",
)
def retrieved_images(
    context: AssetExecutionContext,
    config: RetrievedImagesConfig,
    clip: ClipEncoder,
    downloader: Downloader,
    files: FileStore,
    lance: LanceStore,
) -> MaterializeResult:
    name = context.partition_key
    matches = files.read_parquet("string_matches", f"{name}.parquet")
    embedded = _embedded_uids(lance, EMBEDDINGS_TABLE, matches["uid"].to_list())
    with library_errors(f"retrieved_images[{name}]"):
        wanted = rows_to_retrieve(matches, embedded, config.max_per_class, config.seed)
    failed_before = _failed_table(files, name)
    retrieved = _embedded_uids(lance, RETRIEVED_TABLE, wanted)
    # a row of a part laion_images downloaded was tried there and failed (else it would be embedded)
    ingested = [p for p in uid_parts(wanted) if files.has_version("laion_images", p)]
    plan = plan_retrieval(wanted, retrieved, failed_before["uid"].to_list(), ingested, config.retry_failed)
    counts = plan.counts
    if not plan.todo:
        context.log.info(
            f"{name}: nothing to download ({counts['already_retrieved']} retrieved before, {counts['failed_before']} "
            f"failed before, {counts['failed_in_ingest']} failed in laion_images; retry_failed=True tries those again)"
        )
        return MaterializeResult(metadata={**params_metadata(config), **counts, "downloaded": 0})
    parts = uid_parts(plan.todo)
    meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet") for p in parts])
    meta = meta.filter(pl.col("uid").is_in(plan.todo))
    context.log.info(f"{name}: downloading {meta.height} matched images of parts {parts} that were never downloaded")
    result, rows, version = _download_and_embed(name, meta, clip, downloader, files, lance)
    failures = merge_failures(result.status, failed_before)
    files.write_parquet(failures, "retrieved_images", f"{name}.failed.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **counts,
            "requested": meta.height,
            "downloaded": result.successes,
            "failed": result.status.height - result.successes,
            "embedded": rows,
            "shards": version,
        }
    )


def _failed_table(files: FileStore, name: str) -> pl.DataFrame:
    """uid, error_message of the rows whose download failed in earlier runs for target ``name``."""
    if not files.exists("retrieved_images", f"{name}.failed.parquet"):
        return pl.DataFrame(schema={"uid": pl.String, "error_message": pl.String})
    return files.read_parquet("retrieved_images", f"{name}.failed.parquet")


def _carry_shards(files: FileStore, name: str, version, start: int) -> None:
    """Copy the target's committed shards into the new ``version``, numbered after its ``start``
    new ones: a run downloads only rows never retrieved, and the images of earlier runs must
    stay readable from the current version (retrieval_samples, its gallery, swat_export)."""
    for i, shard in enumerate(retrieved_shards(files, name), start):
        version.copy_in(shard, f"{i:05d}.tar")


def _download_and_embed(
    name: str, meta: pl.DataFrame, clip: ClipEncoder, downloader: Downloader, files: FileStore, lance: LanceStore
) -> tuple["DownloadResult", int, str]:
    """img2dataset the rows of ``meta`` into a new version of the target's shard folder, embed
    them, and merge them into the target's rows of retrieved_embeddings (rows retrieved before
    stay). Returns (img2dataset's result, rows embedded, shard folder)."""
    from laionlab.embed.encode import encode_shards
    from laionlab.io.download import download_part

    try:  # a second writer's commit would delete this one's version mid-download
        with files.new_version("retrieved_images", name, keep_old=1) as version:
            result = download_part(meta, version.uri, downloader.settings())
            _carry_shards(files, name, version, len(result.shards))
    except FolderBusyError as err:
        raise Failure(f"retrieved_images[{name}]: another run is downloading this target: {err}") from None
    loaded = clip.load()
    schema = embeddings_schema(loaded.embed_dim)
    encoded = encode_shards(loaded, result.shards, clip.batch_size, clip.num_workers, **clip.loader_options)
    batches = list(embeddings_batches(encoded, name, loaded.model_id))
    old = []
    if lance.tables().exists(RETRIEVED_TABLE):
        old = lance.tables().part_query(RETRIEVED_TABLE, name).to_arrow().to_batches()
    rows = sum(b.num_rows for b in batches)
    if rows:
        lance.replace_part(RETRIEVED_TABLE, name, [*old, *batches], schema)
    return result, rows, version.uri


# --- retrieval_samples -----------------------------------------------------------------------


@profiled("retrieval_samples")
class RetrievalSamplesConfig(Config):
    methods: list[str] = Field(
        [
            "Random",
            "T2T-rank",
            "T2I-rank",
            "I2T-rank",
            "I2I-rank",
            "T2T-rank-T2I-tshd",
            "T2T-rank-I2T-tshd",
            "T2T-rank-I2I-tshd",
        ],
        description="sampling methods (I2T/I2I ones need the target's fewshot_dataset)",
    )
    n_per_class: int = Field(500, ge=1, description="images per class (seed: 500); classes with fewer keep all")
    templates: Literal["openai", "simple"] = Field(
        "openai", description="prompt templates: openai (80 OpenAI ImageNet templates) or simple ('a photo of a {}.')"
    )
    t2i_threshold: float = Field(0.25, description="T2T-rank-T2I-tshd drops rows with T2I < this (seed: 0.25)")
    i2t_threshold: float = Field(0.25, description="T2T-rank-I2T-tshd drops rows with I2T < this (seed: 0.25)")
    i2i_threshold: float = Field(
        0.5, description="T2T-rank-I2I-tshd drops rows with I2I < this (issue: 0.5; seed code: 0.65)"
    )
    min_rank_score: float | None = Field(
        0.0,
        description="ranked methods never pick a row whose ranking score is below this (seed: 0.0, sampling()'s "
        "threshold); null: fill a class up to N with lower-scored rows",
    )
    export_images: bool = Field(
        True, description="write the picked images as files so the SWAT lists point at real paths"
    )
    seed: int = Field(0)


def _embeddings_of(
    lance: LanceStore, uids: list[str], log: logging.Logger | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """uids with caption and image vectors, from laion_embeddings, else retrieved_embeddings."""
    got, vectors = laion_columns_for(lance, uids, ["text_emb", "image_emb"], log)
    T, I = vectors["text_emb"], vectors["image_emb"]
    rest = sorted(set(uids) - set(got))
    if rest and lance.tables().exists(RETRIEVED_TABLE):
        tbl = lance.tables().open(RETRIEVED_TABLE)
        columns = ["uid", "text_emb", "image_emb"]
        batches = [
            b
            for clause in uid_filters(rest)
            for b in tbl.search().limit(None).select(columns).where(clause).to_batches()
        ]
        table = pa.Table.from_batches(batches).sort_by("uid") if batches else None
        if table is not None and table.num_rows:
            first = (
                pl.from_arrow(table.select(["uid"]))
                .with_row_index("i")
                .unique("uid", keep="first", maintain_order=True)["i"]
            )
            table = table.take(pa.array(first.to_numpy()))  # a uid retrieved for two targets: once
            u2, T2 = read_vectors(table.to_batches(), column="text_emb")
            _, I2 = read_vectors(table.to_batches(), column="image_emb")
            got = got + u2
            T = np.concatenate([T, T2]) if len(T) else T2
            I = np.concatenate([I, I2]) if len(I) else I2
    return got, T, I


def _prompts(clip: ClipEncoder, synonyms: dict, templates: str) -> dict:
    """The text embeddings of the classes' prompts (:func:`prompt_embeddings`): the 80 OpenAI
    ImageNet templates for ``templates == "openai"``, else 'a photo of a {}.'."""
    from laionlab.embed.encode import encode_texts

    loaded = clip.load()
    return prompt_embeddings(
        lambda texts: encode_texts(loaded, texts),
        synonyms,
        None if templates == "openai" else ("a photo of a {}.",),
    )


def _thresholds(config: RetrievalSamplesConfig) -> dict[str, float]:
    """The thresholds of the T2T-rank-…-tshd methods, as sample_all_methods and write_swat_lists take them."""
    return {
        "t2i_threshold": config.t2i_threshold,
        "i2t_threshold": config.i2t_threshold,
        "i2i_threshold": config.i2i_threshold,
    }


def _sampling_options(config: RetrievalSamplesConfig) -> dict:
    """sample_all_methods' keyword arguments from the config: thresholds, seed, min_rank_score."""
    return {**_thresholds(config), "seed": config.seed, "min_rank_score": config.min_rank_score}


def _write_lists(
    context: AssetExecutionContext,
    config: RetrievalSamplesConfig,
    files: FileStore,
    name: str,
    picks: pl.DataFrame,
    picked: pl.DataFrame,
    synonyms: dict,
    out_dir: str,
) -> dict[str, int]:
    """SWAT's list files of every method under ``out_dir``, each row pointing at its exported
    image (``export_images``) or at its uid; returns the images listed per method."""
    paths = (
        _export_paths(files, picked, name, context.log)
        if config.export_images
        else dict(zip(picked["row"], picked["uid"]))
    )
    return write_swat_lists(
        picks,
        paths,
        swat_labels(synonyms),
        out_dir,
        methods=config.methods,
        n_per_class=config.n_per_class,
        **_thresholds(config),
    )


def _per_method_metadata(files: FileStore, name: str, sizes: dict[str, int], n_per_class: int) -> dict:
    """retrieval_samples' images per method, as a table and a bar plot."""
    return {
        "per_method": markdown_table(pl.DataFrame({"method": list(sizes), "images": list(sizes.values())})),
        "per_method_plot": bar_plot(
            list(sizes),
            [float(v) for v in sizes.values()],
            f"{name}: images per method ({n_per_class} per class at most)",
            "images",
            files.path("retrieval_samples", f"{name}.png"),
        ),
    }


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=[string_matches, retrieved_images, every_partition(laion_embeddings), every_partition(reference_embeddings)],
    kinds={"parquet"},
    pool="gpu",
    description="N images per class by each SWAT sampling method (Random, T2T/T2I/I2T/I2I ranking, T2T ranking after "
    "a T2I/I2T/I2I threshold): parquet (uid, class, score, rank, method) and SWAT's list files (e.g. T2T500.txt).",
)
def retrieval_samples(
    context: AssetExecutionContext,
    config: RetrievalSamplesConfig,
    clip: ClipEncoder,
    catalog: DatasetCatalog,
    files: FileStore,
    lance: LanceStore,
) -> MaterializeResult:
    name = context.partition_key
    with library_errors(f"retrieval_samples[{name}]"):
        check_methods(config.methods)
    spec, synonyms = _synonyms(catalog, name)
    matches = files.read_parquet("string_matches", f"{name}.parquet")
    uids, T, I = _embeddings_of(lance, matches["uid"].to_list(), context.log)
    if not uids:
        raise Failure(
            f"no matched row of target {name!r} has embeddings: materialise laion_embeddings or retrieved_images"
        )
    prompts = _prompts(clip, synonyms, config.templates)
    fewshot = _fewshot(lance, spec, synonyms) if needs_fewshot(config.methods) else None
    # InvalidOperationError: e.g. string_matches made before the target's classes changed
    hint = f"; rematerialise string_matches[{name}] if the target's classes changed"
    with library_errors(f"retrieval_samples[{name}]", pl.exceptions.InvalidOperationError, hint=hint):
        frame, candidates = candidate_rows(uids, matches, list(synonyms))
        picks = sample_all_methods(
            config.methods, candidates, T, I, prompts, fewshot, config.n_per_class, **_sampling_options(config)
        )
    picked = picked_rows(frame, picks)  # only these images are exported
    out_dir = files.path("retrieval_samples", name)
    sizes = _write_lists(context, config, files, name, picks, picked, synonyms, out_dir)
    files.write_parquet(samples_table(picks, frame), "retrieval_samples", f"{name}.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "candidates_with_embeddings": len(uids),
            "matched": matches.height,
            "images_picked": picked.height,
            **_per_method_metadata(files, name, sizes, config.n_per_class),
            "lists": out_dir,
        }
    )


def _fewshot(lance: LanceStore, spec, synonyms: dict) -> dict:
    """The target's few-shot image embeddings by class (I2T/I2I methods), from its labelled
    fewshot_dataset in reference_embeddings."""
    if spec.fewshot_dataset is None:
        raise Failure(
            f"I2T/I2I methods need few-shot images: set fewshot_dataset for target {spec.name!r} in the catalog"
        )
    ref = labelled_reference(lance, spec.fewshot_dataset)
    with library_errors(f"target {spec.name!r}, few-shot dataset {spec.fewshot_dataset!r}"):
        return fewshot_embeddings(
            ref["label"].cast(pl.String), stack_vectors(ref["emb"]), synonyms, spec.fewshot_labels
        )


def _sample_shards(files: FileStore, name: str, uids) -> list[str]:
    """The shards holding ``uids``' images: their parts' laion_images downloads and the
    target's retrieved_images shards (rows of parts never downloaded)."""
    return [s for part in uid_parts(uids) for s in downloaded_shards(files, part)] + retrieved_shards(files, name)


def _export_paths(
    files: FileStore, frame: pl.DataFrame, name: str, log: logging.Logger | None = None
) -> dict[int, str]:
    """Write the image of each row of ``frame`` (the rows some method picked: row, uid) once
    under retrieval_samples/<target>/images/ (from the part's shards or the target's retrieved
    shards) and return row → path (a local path or a URI under the data root, as the SWAT lists
    then name them). Images already there from an earlier run are not rewritten."""
    from laionlab.io.shards import iter_shard_images

    wanted = set(frame["uid"].to_list())
    shards = _sample_shards(files, name, wanted)
    path_of = {}
    progress = Progress(f"{name}: exporting picked images", len(wanted), log=log, unit="images")
    for sample in iter_shard_images(shards, wanted):
        if sample.uid in path_of:
            continue
        image = f"{sample.uid.replace(':', '_')}.{(sample.image.format or 'jpg').lower().replace('jpeg', 'jpg')}"
        if not files.exists("retrieval_samples", name, "images", image):
            buf = io.BytesIO()
            sample.image.save(buf, format=sample.image.format or "JPEG")
            files.write_bytes(buf.getvalue(), "retrieval_samples", name, "images", image)
        path_of[sample.uid] = files.path("retrieval_samples", name, "images", image)
        progress.update()
    progress.close()
    return {r: path_of.get(u, f"missing/{u.replace(':', '_')}") for r, u in zip(frame["row"], frame["uid"])}


# --- retrieval_gallery -----------------------------------------------------------------------


@profiled("retrieval_gallery")
class RetrievalGalleryConfig(Config):
    classes: int = Field(3, ge=1, le=8, description="classes shown (a seeded choice, the same for every method)")
    per_class: int = Field(2, ge=1, le=6, description="images of each class and method, a seeded choice")
    seed: int = Field(0, ge=0)


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=[retrieval_samples],
    kinds={"jpeg"},
    description="What each SWAT method retrieves: a contact sheet with one row per method, a seeded few images of "
    "the same few classes with their scores, read from the picked images' shards only.",
)
def retrieval_gallery(
    context: AssetExecutionContext, config: RetrievalGalleryConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.gallery import contact_sheet, fetch_thumbnails, pick_cells, row_uids, sheet_rows

    name = context.partition_key
    samples = files.read_parquet("retrieval_samples", f"{name}.parquet")
    if samples.height == 0:
        raise Failure(f"retrieval_samples[{name}] picked no image: nothing to show")
    methods = samples["method"].unique(maintain_order=True).to_list()
    shown = pick_cells(samples, "method", "class", config.classes, config.per_class, config.seed, order=methods)
    shown = shown.with_columns(label=pl.format("{} {}", pl.col("class"), pl.col("score").round(3)))
    rows = sheet_rows(shown, "method", "label")
    shards = _sample_shards(files, name, shown["uid"].to_list())
    images = fetch_thumbnails(lambda _: shards, row_uids(rows), part_of=lambda _: name)
    classes = ", ".join(sorted(shown["class"].unique().to_list()))
    fig = contact_sheet(rows, images, f"{name}: each method's picks of {classes}")
    table = samples.group_by("method", maintain_order=True).agg(picked=pl.len(), classes=pl.col("class").n_unique())
    table = table.join(shown.group_by("method").len().rename({"len": "shown"}), on="method", maintain_order="left")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("retrieval_gallery", f"{name}.jpg"), rows, images),
            "classes_shown": classes,
            "methods_shown": markdown_table(table),
        }
    )


assets = [
    concept_synonyms,
    caption_search_index,
    string_matches,
    retrieved_images,
    retrieval_samples,
    retrieval_gallery,
]
