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

import numpy as np
import polars as pl
import pyarrow as pa
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset
from pydantic import Field

from asset_defs.ingest import EMBEDDINGS_TABLE, image_shards, laion_embeddings, laion_metadata
from asset_defs.metadata import bar_plot, line_plot, markdown_table
from asset_defs.partitions import laion_part, registered, target
from asset_defs.visual_world import reference_embeddings
from laionlab.io.lance import embeddings_batch, embeddings_schema, read_vectors, uid_filters
from laionlab.progress import Progress
from resources import ClipEncoder, DatasetCatalog, Downloader, FileStore, LanceStore

GROUP = "retrieval"
CAPTIONS_TABLE = "laion_captions"
RETRIEVED_TABLE = "retrieved_embeddings"


def _synonyms(catalog: DatasetCatalog, name: str):
    try:
        spec = catalog.target(name)
        return spec, spec.synonyms()
    except (KeyError, ValueError) as err:
        raise Failure(f"target {name!r}: {err}") from None


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
    frame = pl.DataFrame(
        {
            "class": [str(k) for k in synonyms],
            "name": [s.name for s in synonyms.values()],
            "synonyms": [list(s.synonyms) for s in synonyms.values()],
            "most_common_name": [s.most_common_name or s.name for s in synonyms.values()],
        }
    ).with_columns(prefix=pl.lit(spec.prefix, dtype=pl.String))
    files.write_parquet(frame, "concept_synonyms", f"{name}.parquet")
    return MaterializeResult(
        metadata={
            "classes": frame.height,
            "synonyms": int(frame["synonyms"].list.len().sum()),
            "prefix": spec.prefix or "none",
            "source": spec.metrics or "class names",
            "classes_table": markdown_table(frame.with_columns(pl.col("synonyms").list.join("; ")).head(30)),
            "synonyms_per_class": bar_plot(
                frame["class"].head(30).to_list(), [float(n) for n in frame["synonyms"].list.len().head(30)],
                f"{name}: synonyms per class" + (" (first 30)" if frame.height > 30 else ""), "synonyms",
                files.path("concept_synonyms", f"{name}.png"),
            ),
        }
    )


def _synonym_map(files: FileStore, name: str) -> tuple[dict, str | None]:
    from laionlab.swat import from_class_names

    frame = files.read_parquet("concept_synonyms", f"{name}.parquet")
    keys = [int(k) if k.lstrip("-").isdigit() else k for k in frame["class"]]
    return from_class_names(dict(zip(keys, frame["synonyms"].to_list()))), frame["prefix"][0]


# --- caption_search_index --------------------------------------------------------------------


@asset(
    group_name=GROUP,
    deps=[laion_metadata],
    kinds={"lancedb"},
    description="All parts' captions in one LanceDB table (uid, part, TEXT, the matcher's normalised text) "
    "with a native full-text index (phrase queries); parts are added incrementally.",
)
def caption_search_index(context: AssetExecutionContext, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.swat import normalise

    parts = registered(context, laion_part)
    tables = lance.tables()
    schema = pa.schema([("uid", pa.string()), ("part", pa.string()), ("TEXT", pa.string()), ("normalised", pa.string())])
    indexed = {}
    if tables.exists(CAPTIONS_TABLE):
        counts = pl.from_arrow(tables.open(CAPTIONS_TABLE).search().limit(None).select(["part"]).to_arrow())["part"].value_counts()
        indexed = dict(counts.iter_rows())
    added = []
    progress = Progress("caption_search_index: checking and adding parts", len(parts), log=context.log, unit="parts")
    for part in parts:
        meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
        if indexed.get(part) != meta.height:
            frame = meta.with_columns(part=pl.lit(part), normalised=normalise(meta["TEXT"]).str.strip_chars()).select("uid", "part", "TEXT", "normalised")
            tables.replace_part(CAPTIONS_TABLE, part, frame.to_arrow().cast(schema).to_batches(), schema)
            added.append(part)
        progress.update()
    progress.close()
    stale = sorted(set(indexed) - set(parts))
    table = tables.open(CAPTIONS_TABLE)
    for part in stale:
        table.delete(f"part = '{part}'")
    if not any(i.index_type == "FTS" for i in table.list_indices()):
        table.create_fts_index("normalised", with_position=True, stem=False, remove_stop_words=False, replace=True)
    elif added or stale:
        table.optimize()  # indexes the new rows into the existing full-text index
    return MaterializeResult(
        metadata={"rows": table.count_rows(), "parts_added": ", ".join(added) or "none", "parts_removed": ", ".join(stale) or "none"}
    )


def search_captions(lance: LanceStore, phrase: str, limit: int | None = 100) -> pl.DataFrame:
    """Captions containing ``phrase`` (normalised as the matcher does), via the FTS index."""
    from laionlab.swat import normalise

    text = normalise([phrase])[0].strip()
    query = lance.tables().open(CAPTIONS_TABLE).search(f'"{text}"', query_type="fts").select(["uid", "TEXT"]).limit(limit)
    return pl.from_arrow(query.to_arrow()).select("uid", "TEXT")


# --- string_matches --------------------------------------------------------------------------


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=[concept_synonyms, caption_search_index],
    kinds={"parquet", "polars"},
    description="Captions containing a synonym of a class as whole words (case-insensitive; and the prefix): uid → "
    "classes, all matches kept. Metadata: SWAT's class frequency and its long tail.",
)
def string_matches(context: AssetExecutionContext, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.swat import class_frequency, match_synonyms

    name = context.partition_key
    synonyms, prefix = _synonym_map(files, name)
    table = lance.tables().open(CAPTIONS_TABLE)
    parts = registered(context, laion_part)
    frames = []
    progress = Progress(f"{name}: matching captions", len(parts), log=context.log, unit="parts")
    for part in parts:
        captions = pl.from_arrow(table.search().limit(None).select(["uid", "TEXT"]).where(f"part = '{part}'").to_arrow())
        matched = match_synonyms(captions["TEXT"], synonyms, prefix=prefix)
        frames.append(pl.concat([captions.select("uid"), matched.select("classes", "synonyms")], how="horizontal").filter(pl.col("classes").list.len() > 0))
        progress.update()
    progress.close()
    matches = pl.concat(frames).with_columns(pl.col("classes").cast(pl.List(pl.String)))
    files.write_parquet(matches, "string_matches", f"{name}.parquet")
    freq = class_frequency(matches.with_columns(pl.col("classes").cast(pl.List(pl.String))), classes=[str(k) for k in synonyms])
    names = {str(k): s.name for k, s in synonyms.items()}
    frequency = {k: {"name": names[k], "actual_freq": v} for k, v in freq.items()}  # SWAT's class_frequency json
    files.write_json(frequency, "string_matches", f"{name}_class_frequency.json", indent=1)
    counts = sorted(freq.values(), reverse=True)
    table_frame = pl.DataFrame({"class": list(freq), "name": [names[k] for k in freq], "matches": list(freq.values())})
    return MaterializeResult(
        metadata={
            "matched_captions": matches.height,
            "multi_class_captions": int((matches["classes"].list.len() > 1).sum()),
            "classes_without_match": sum(v == 0 for v in counts),
            "class_frequency": markdown_table(table_frame.head(30)),
            "long_tail": line_plot(
                list(range(1, len(counts) + 1)), {"matches": [max(c, 0.5) for c in counts]}, "class rank", f"{name}: matches per class",
                files.path("string_matches", f"{name}_long_tail.png"), logx=False, ylabel="captions",
            ),
        }
    )


# --- retrieved_images ------------------------------------------------------------------------


class RetrievedImagesConfig(Config):
    max_per_class: int | None = Field(None, ge=1, description="download at most this many rows per class (seeded random; the seed's --sampling random)")
    seed: int = Field(0)


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
    deps=[string_matches, laion_embeddings],
    kinds={"webdataset", "lancedb"},
    pool="gpu",
    description="Matched rows whose images are not in laion_embeddings (their part was not downloaded): just those "
    "uids downloaded with img2dataset into the target's own shards and embedded (table retrieved_embeddings).",
)
def retrieved_images(
    context: AssetExecutionContext, config: RetrievedImagesConfig, clip: ClipEncoder, downloader: Downloader, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.embed.encode import encode_shards
    from laionlab.io.download import download_part
    from laionlab.io.files import commit_version_dir, new_version_dir

    name = context.partition_key
    matches = files.read_parquet("string_matches", f"{name}.parquet")
    missing = matches.filter(~pl.col("uid").is_in(list(_embedded_uids(lance, EMBEDDINGS_TABLE, matches["uid"].to_list()))))
    if config.max_per_class is not None:
        missing = (
            missing.explode("classes").sample(fraction=1.0, shuffle=True, seed=config.seed)
            .group_by("classes", maintain_order=True).head(config.max_per_class).select("uid").unique().join(missing, on="uid")
        )
    wanted = missing["uid"].to_list()
    already = _embedded_uids(lance, RETRIEVED_TABLE, wanted)
    todo = [u for u in wanted if u not in already]
    if not todo:
        return MaterializeResult(metadata={"matched_without_embedding": len(wanted), "downloaded": 0, "already_retrieved": len(already)})
    parts = sorted({u.rsplit(":", 1)[0] for u in todo})
    meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet") for p in parts]).filter(pl.col("uid").is_in(todo))
    folder = files.path("retrieved_images", name)
    version = new_version_dir(folder)
    context.log.info(f"{name}: downloading {meta.height} matched images of parts {parts} that were never downloaded")
    result = download_part(meta, version, downloader.settings())
    commit_version_dir(folder, version, keep_old=1)
    loaded = clip.load()
    schema = embeddings_schema(loaded.embed_dim)
    batches = [
        embeddings_batch(b.uid, name, loaded.model_id, b.image_emb, b.text_emb, b.image_norm, b.text_norm)
        for b in encode_shards(loaded, result.shards, clip.batch_size, clip.num_workers)
    ]
    # rows retrieved before for this target stay; the new ones are merged in
    old = []
    if lance.tables().exists(RETRIEVED_TABLE):
        old = lance.tables().part_query(RETRIEVED_TABLE, name).to_arrow().to_batches()
    rows = sum(b.num_rows for b in batches)
    if rows:
        lance.replace_part(RETRIEVED_TABLE, name, [*old, *batches], schema)
    return MaterializeResult(
        metadata={
            "matched_without_embedding": len(wanted),
            "requested": meta.height,
            "downloaded": result.successes,
            "embedded": rows,
            "shards": version,
        }
    )


# --- retrieval_samples -----------------------------------------------------------------------


class RetrievalSamplesConfig(Config):
    methods: list[str] = Field(
        ["Random", "T2T-rank", "T2I-rank", "I2T-rank", "I2I-rank", "T2T-rank-T2I-tshd", "T2T-rank-I2T-tshd", "T2T-rank-I2I-tshd"],
        description="sampling methods (I2T/I2I ones need the target's fewshot_dataset)",
    )
    n_per_class: int = Field(500, ge=1, description="images per class (seed: 500); classes with fewer keep all")
    templates: str = Field("openai", description="prompt templates: openai (80 OpenAI ImageNet templates) or simple ('a photo of a {}.')")
    t2i_threshold: float = Field(0.25, description="T2T-rank-T2I-tshd drops rows with T2I < this (seed: 0.25)")
    i2t_threshold: float = Field(0.25, description="T2T-rank-I2T-tshd drops rows with I2T < this (seed: 0.25)")
    i2i_threshold: float = Field(0.5, description="T2T-rank-I2I-tshd drops rows with I2I < this (issue: 0.5; seed code: 0.65)")
    export_images: bool = Field(True, description="write the picked images as files so the SWAT lists point at real paths")
    seed: int = Field(0)


def _embeddings_of(lance: LanceStore, uids: list[str], log: logging.Logger | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """uids with caption and image vectors, from laion_embeddings, else retrieved_embeddings."""
    from asset_defs.laionet import laion_columns_for

    got, vectors = laion_columns_for(lance, uids, ["text_emb", "image_emb"], log)
    T, I = vectors["text_emb"], vectors["image_emb"]
    rest = sorted(set(uids) - set(got))
    if rest and lance.tables().exists(RETRIEVED_TABLE):
        tbl = lance.tables().open(RETRIEVED_TABLE)
        columns = ["uid", "text_emb", "image_emb"]
        batches = [b for clause in uid_filters(rest) for b in tbl.search().limit(None).select(columns).where(clause).to_batches()]
        table = pa.Table.from_batches(batches).sort_by("uid") if batches else None
        if table is not None and table.num_rows:
            first = pl.from_arrow(table.select(["uid"])).with_row_index("i").unique("uid", keep="first", maintain_order=True)["i"]
            table = table.take(pa.array(first.to_numpy()))  # a uid retrieved for two targets: once
            u2, T2 = read_vectors(table.to_batches(), column="text_emb")
            _, I2 = read_vectors(table.to_batches(), column="image_emb")
            got = got + u2
            T = np.concatenate([T, T2]) if len(T) else T2
            I = np.concatenate([I, I2]) if len(I) else I2
    return got, T, I


@asset(
    partitions_def=target,
    group_name=GROUP,
    deps=[string_matches, retrieved_images, laion_embeddings, reference_embeddings],
    kinds={"parquet"},
    pool="gpu",
    description="N images per class by each SWAT sampling method (Random, T2T/T2I/I2T/I2I ranking, T2T ranking after "
    "a T2I/I2T/I2I threshold): parquet (uid, class, score, rank, method) and SWAT's list files (e.g. T2T500.txt).",
)
def retrieval_samples(
    context: AssetExecutionContext, config: RetrievalSamplesConfig, clip: ClipEncoder, catalog: DatasetCatalog, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.embed.encode import encode_texts
    from laionlab.swat import METHODS, prompt_embeddings, rank_samples, swat_txt_name, write_swat_txt

    name = context.partition_key
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise Failure(f"unknown methods {unknown}; choose from {list(METHODS)}")
    spec, synonyms = _synonyms(catalog, name)
    matches = files.read_parquet("string_matches", f"{name}.parquet")
    uids, T, I = _embeddings_of(lance, matches["uid"].to_list(), context.log)
    if not uids:
        raise Failure(f"no matched row of target {name!r} has embeddings: materialise laion_embeddings or retrieved_images")
    keys = {str(k): k for k in synonyms}
    frame = pl.DataFrame({"uid": uids}).with_row_index("row").join(matches.select("uid", "classes"), on="uid")
    classes_of_rows = [[keys[c] for c in cs] for cs in frame.sort("row")["classes"].to_list()]
    loaded = clip.load()
    templates = None if config.templates == "openai" else ("a photo of a {}.",)
    prompts = prompt_embeddings(lambda texts: encode_texts(loaded, texts), synonyms, templates)
    fewshot = None
    if any(m.startswith("I2") or m.endswith(("I2T-tshd", "I2I-tshd")) for m in config.methods):
        if spec.fewshot_dataset is None:
            raise Failure(f"methods {config.methods} need few-shot images: set fewshot_dataset for target {name!r} in the catalog")
        from asset_defs.laionet import _stack, labelled_reference

        ref = labelled_reference(lance, spec.fewshot_dataset)
        ref = ref.with_columns(cls=pl.col("label").map_elements(lambda l: str(spec.class_of_label(l, synonyms)), return_dtype=pl.String))
        fewshot = {keys[c]: _stack(g["emb"]) for (c,), g in ref.filter(pl.col("cls") != "None").group_by("cls")}
        if not fewshot:
            raise Failure(f"no image of {spec.fewshot_dataset!r} has a label of target {name!r} (map them with fewshot_labels)")
    out_dir = files.path("retrieval_samples", name)
    paths = _export_paths(files, frame, name, context.log) if config.export_images else {r: u for r, u in zip(frame["row"], frame["uid"])}
    labels = {k: i for i, k in enumerate(synonyms)}
    results, sizes = [], {}
    for method in config.methods:
        picked = rank_samples(
            method, classes_of_rows, T, I, prompts, fewshot, config.n_per_class,
            t2i_threshold=config.t2i_threshold, i2t_threshold=config.i2t_threshold, i2i_threshold=config.i2i_threshold, seed=config.seed,
        )
        threshold = {"T2T-rank-T2I-tshd": config.t2i_threshold, "T2T-rank-I2T-tshd": config.i2t_threshold, "T2T-rank-I2I-tshd": config.i2i_threshold}.get(method)
        sizes[method] = write_swat_txt(picked, paths, labels, f"{out_dir}/{swat_txt_name(method, config.n_per_class, threshold)}")
        results.append(picked.with_columns(pl.col("class").cast(pl.String)))
    samples = pl.concat(results).join(frame.select("row", "uid"), on="row").select("uid", "class", "score", "rank", "method")
    files.write_parquet(samples, "retrieval_samples", f"{name}.parquet")
    return MaterializeResult(
        metadata={
            "candidates_with_embeddings": len(uids),
            "matched": matches.height,
            "per_method": markdown_table(pl.DataFrame({"method": list(sizes), "images": list(sizes.values())})),
            "per_method_plot": bar_plot(
                list(sizes), [float(v) for v in sizes.values()], f"{name}: images per method ({config.n_per_class} per class at most)",
                "images", files.path("retrieval_samples", f"{name}.png"),
            ),
            "lists": out_dir,
        }
    )


def _export_paths(files: FileStore, frame: pl.DataFrame, name: str, log: logging.Logger | None = None) -> dict[int, str]:
    """Write every candidate's image once under retrieval_samples/<target>/images/ (from the
    part's shards or the target's retrieved shards) and return row → path (a local path or a
    URI under the data root, as the SWAT lists then name them)."""
    from laionlab.io.files import current_version_dir, list_files
    from laionlab.io.shards import iter_shard_images

    wanted = set(frame["uid"].to_list())
    shards = []
    for part in sorted({u.rsplit(":", 1)[0] for u in wanted}):
        try:
            shards += image_shards(files, part)
        except FileNotFoundError:
            pass
    try:
        shards += list_files(current_version_dir(files.path("retrieved_images", name)), "*.tar")
    except FileNotFoundError:
        pass
    path_of = {}
    progress = Progress(f"{name}: exporting candidate images", len(wanted), log=log, unit="images")
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


assets = [concept_synonyms, caption_search_index, string_matches, retrieved_images, retrieval_samples]
