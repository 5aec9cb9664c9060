"""LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025;
public code alishiraliGit/eval-on-laion): LAION rows whose caption names exactly one ILSVRC
synset and is close to that synset's text in CLIP space, and what they show about ImageNet.

ilsvrc_synsets → lemma_matches[part] → synset_similarity[part] → laionet →
laionet_intra_class_similarity, laionet_accuracy; caption_index → nearest_caption_imagenet.
Defaults are the seed code's (see ../shared/research/seeds_000_001.md where it differs from
the paper's text); every threshold is config.
"""

import io
import json
import logging

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset
from pydantic import Field

from asset_defs.ingest import EMBEDDINGS_TABLE, laion_embeddings, laion_metadata
from asset_defs.metadata import bar_plot, histogram, line_plot, markdown_table
from asset_defs.partitions import laion_part, registered
from asset_defs.visual_world import REFERENCE_TABLE, reference_embeddings
from laionlab.io.lance import read_vectors, uid_filters
from laionlab.progress import Progress
from resources import ClipEncoder, DatasetCatalog, FileStore, LanceStore

GROUP = "laionet"
# The seed's ILSVRC2012_synsets.txt has 999 synsets: it lacks n03126707 (crane, the machine).
SEED_MISSING_WNIDS = ["n03126707"]
LAIONET_COLUMNS = [
    "SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity",
    "name_def_wnid", "text_to_name_def_wnid_similarity", "wnid", "uid",
]  # fmt: skip


# --- shared readers -------------------------------------------------------------------------


def _check_threshold(name: str, value: float) -> None:
    if not -1.0 <= value <= 1.0:
        raise Failure(f"{name}={value} is not a cosine similarity: expected a value in [-1, 1]")


def _load_clip(clip: ClipEncoder, model_name: str | None, pretrained: str | None, checkpoint: str | None):
    """The clip resource's model, or another open_clip model for the text tower (the paper:
    OpenAI CLIP ViT-B/32 text embeddings whatever model embedded the images)."""
    if model_name is None:
        return clip.load()
    from laionlab.embed.model import ClipSpec, load_clip

    return load_clip(ClipSpec(model_name, pretrained, checkpoint, clip.device, clip.precision, clip.seed))


def laion_vectors_for(
    lance: LanceStore, uids: list[str], column: str = "image_emb", log: logging.Logger | None = None
) -> tuple[list[str], np.ndarray]:
    """Unit ``column`` vectors of the given LAION uids that have a row in laion_embeddings (a
    uid whose image failed to download has none), in uid order. Progress over the parts goes
    to ``log`` (the step's ``context.log``)."""
    found, vectors = laion_columns_for(lance, uids, [column], log)
    return found, vectors[column]


def laion_columns_for(
    lance: LanceStore, uids: list[str], columns: list[str], log: logging.Logger | None = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """:func:`laion_vectors_for` for several vector columns in one read: uids and, per column,
    the ``(n, d)`` unit vectors in the same row order."""
    empty = ([], {c: np.zeros((0, 0), np.float32) for c in columns})
    if not lance.tables().exists(EMBEDDINGS_TABLE):
        return empty
    table = lance.tables().open(EMBEDDINGS_TABLE)
    by_part: dict[str, list[str]] = {}
    for uid in uids:
        by_part.setdefault(uid.rsplit(":", 1)[0], []).append(uid)
    found, blocks = [], {c: [] for c in columns}
    progress = Progress(f"reading {', '.join(columns)} of {len(uids):,} uids", len(by_part), log=log, unit="parts")
    for part, members in sorted(by_part.items()):
        for clause in uid_filters(members):
            query = table.search().limit(None).select(["uid", *columns]).where(f"part = '{part}' AND {clause}")
            batches = list(query.to_batches(batch_size=65_536))
            got = [u for b in batches for u in b.column("uid").to_pylist()]
            if got:
                found.extend(got)
                for c in columns:
                    blocks[c].append(read_vectors(batches, column=c)[1])
        progress.update()
    progress.close()
    if not found:
        return empty
    # uid order, not LanceDB's storage order (a merge does not keep it): seeded samplers downstream
    # then draw the same rows from the same data
    order = pl.Series(found, dtype=pl.String).arg_sort().to_numpy()
    return [found[i] for i in order], {c: np.concatenate(blocks[c])[order] for c in columns}


def labelled_reference(lance: LanceStore, name: str) -> pl.DataFrame:
    """uid, label and unit image vector (``emb``) of a reference dataset, in dataset order;
    refuses a dataset without labels."""
    query = lance.tables().part_query(REFERENCE_TABLE, name, ["uid", "label", "source", "image_emb"], part_column="dataset")
    table = query.to_arrow()
    if table.num_rows == 0:
        raise Failure(f"reference_embeddings has no rows for dataset {name!r}; materialise reference_embeddings[{name}] first")
    frame = pl.from_arrow(table).sort("uid")
    if frame["label"].null_count() == frame.height:
        raise Failure(
            f"reference dataset {name!r} has no labels: LAIONet comparisons need a labelled set (an image_folder whose "
            "folders are wnids, or a parquet entry with label_column)"
        )
    return frame.filter(pl.col("label").is_not_null()).rename({"image_emb": "emb"})


def _check_model(lance: LanceStore, table: str, model_id: str, where: str | None = None) -> None:
    """Zero-shot text vectors only make sense against image vectors of the same model."""
    query = lance.tables().open(table).search().limit(None).select(["model"])
    models = set(pl.from_arrow((query.where(where) if where else query).to_arrow())["model"].unique().to_list())
    if models - {model_id}:
        raise Failure(f"{table} holds embeddings of {sorted(models)}, the clip resource is {model_id}: re-embed or configure the same model")


def _stack(column: pl.Series) -> np.ndarray:
    return np.asarray(column.to_list(), np.float32)


def _synsets(files: FileStore) -> pl.DataFrame:
    return files.read_parquet("ilsvrc_synsets", "synsets.parquet")


def _lemma_to_wnid(files: FileStore) -> dict[str, str]:
    frame = files.read_parquet("ilsvrc_synsets", "lemma_to_wnid.parquet")
    return dict(zip(frame["lemma"].to_list(), frame["wnid"].to_list()))


# --- ilsvrc_synsets -------------------------------------------------------------------------


class SynsetsConfig(Config):
    synsets_file: str | None = Field(
        None,
        description="optional table (parquet, or TSV with a header) with wnid, lemmas (comma-separated or a list) and "
        "definition; default: the 1000 ILSVRC-2012 synsets timm ships",
    )


def _read_synsets(path: str) -> pl.DataFrame:
    from laionlab.io.files import exists, read_bytes

    if not exists(path):  # a local path or an fsspec URI
        raise Failure(f"synsets_file not found: {path}")
    data = io.BytesIO(read_bytes(path))
    frame = pl.read_parquet(data) if path.endswith(".parquet") else pl.read_csv(data, separator="\t")
    missing = {"wnid", "lemmas", "definition"} - set(frame.columns)
    if missing:
        raise Failure(f"synsets_file {path} lacks columns {sorted(missing)} (has {frame.columns})")
    if frame.schema["lemmas"] == pl.String:
        frame = frame.with_columns(pl.col("lemmas").str.split(",").list.eval(pl.element().str.strip_chars()))
    empty = frame.filter(pl.col("definition").is_null() | (pl.col("definition").str.strip_chars() == ""))["wnid"]
    if empty.len():
        raise Failure(f"synsets_file {path}: {empty.len()} synsets have no definition (e.g. {empty.head(5).to_list()})")
    return frame.with_columns(pl.col("lemmas").list.first().alias("name")).with_row_index("class_index")


@asset(
    group_name=GROUP,
    kinds={"parquet"},
    description="The 1000 ILSVRC-2012 synsets (lemmas, name, definition, name_def query) and the seed's lemma "
    "dictionary: lemmas unique across all synsets' lemma lists, synsets left without one dropped.",
)
def ilsvrc_synsets(context: AssetExecutionContext, config: SynsetsConfig, files: FileStore) -> MaterializeResult:
    from laionlab.io.imagenet import ilsvrc_synsets as timm_synsets
    from laionlab.laionet import synset_queries, unique_lemma_map

    synsets = _read_synsets(config.synsets_file) if config.synsets_file else timm_synsets()
    try:
        queries = synset_queries(synsets, kind="name_def")
        unique = unique_lemma_map(synsets)
    except ValueError as err:
        raise Failure(f"ilsvrc synsets: {err}") from None
    frame = synsets.select("class_index", "wnid", "lemmas", "definition").join(
        queries.rename({"query": "name_def"}), on="wnid"
    ).sort("class_index")
    files.write_parquet(frame, "ilsvrc_synsets", "synsets.parquet")
    lemmas = pl.DataFrame({"lemma": list(unique.lemma_to_wnid), "wnid": list(unique.lemma_to_wnid.values())})
    files.write_parquet(lemmas, "ilsvrc_synsets", "lemma_to_wnid.parquet")
    # The seed's dictionary came from a 999-synset file without crane-the-machine: rebuild it
    # that way to show what the full 1000 change.
    seed_like = unique_lemma_map(synsets.filter(~pl.col("wnid").is_in(SEED_MISSING_WNIDS)))
    only_seed = sorted(set(seed_like.lemma_to_wnid.items()) - set(unique.lemma_to_wnid.items()))
    only_ours = sorted(set(unique.lemma_to_wnid.items()) - set(seed_like.lemma_to_wnid.items()))
    counts = pl.DataFrame(
        {
            "dictionary": ["this run", "without n03126707 (the seed's 999-synset file)", "seed 001 as published"],
            "synsets": [unique.n_synsets, seed_like.n_synsets, 999],
            "lemmas": [unique.n_lemmas, seed_like.n_lemmas, 1825],
            "wnids": [unique.n_wnids, seed_like.n_wnids, 995],
        }
    )
    return MaterializeResult(
        metadata={
            "synsets": synsets.height,
            "unique_lemmas": unique.n_lemmas,
            "wnids_with_a_lemma": unique.n_wnids,
            "dropped_wnids": ", ".join(unique.dropped_wnids),
            "shared_lemmas": len(unique.shared_lemmas),
            "punctuated_lemmas (never match)": len(unique.punctuated),
            "dictionaries": markdown_table(counts),
            "lemmas_per_synset": histogram(
                synsets["lemmas"].list.len().to_numpy(), "lemmas of the synset", "ILSVRC synsets: lemmas per synset",
                files.path("ilsvrc_synsets", "lemmas_per_synset.png"), bins=int(synsets["lemmas"].list.len().max() or 1), ylabel="synsets",
            ),
            "lemmas only in the seed-like dictionary": ", ".join(f"{l}→{w}" for l, w in only_seed) or "none",
            "lemmas only in this dictionary": ", ".join(f"{l}→{w}" for l, w in only_ours) or "none",
            "known differences from the seed's file": "the seed lists Siberian husky as n02112837 (ImageNet: "
            "n02110185) and lacks n03126707 (crane, the machine), so its 'crane' maps to the bird n02012849",
        }
    )


# --- lemma_matches[part] --------------------------------------------------------------------


class LemmaMatchConfig(Config):
    case_sensitive: bool = Field(True, description="the seed matches case-sensitively ('Goldfish' ≠ 'goldfish')")


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[ilsvrc_synsets, laion_metadata],
    kinds={"parquet", "polars"},
    description="Captions of the part that contain a unique ILSVRC lemma as whole words (the seed's rule: "
    "punctuation → spaces, space-padded substring), in one Aho-Corasick pass: uid → lemmas, wnids.",
)
def lemma_matches(context: AssetExecutionContext, config: LemmaMatchConfig, files: FileStore) -> MaterializeResult:
    from laionlab.laionet import match_lemmas_frame

    part = context.partition_key
    meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
    matched = match_lemmas_frame(meta["TEXT"], _lemma_to_wnid(files), case_sensitive=config.case_sensitive)
    frame = pl.concat([meta.select("uid"), matched.select("lemmas", "wnids")], how="horizontal").filter(pl.col("wnids").list.len() > 0)
    files.write_parquet(frame, "lemma_matches", f"{part}.parquet")
    top = frame.explode("wnids").group_by("wnids").len().sort("len", descending=True).head(15).rename({"wnids": "wnid", "len": "rows"})
    return MaterializeResult(
        metadata={
            "rows": meta.height,
            "matched_rows": frame.height,
            "matched_fraction": frame.height / max(meta.height, 1),
            "multi_synset_rows": int((frame["wnids"].list.len() > 1).sum()),
            "top_wnids": markdown_table(top),
            "top_wnids_plot": bar_plot(
                top["wnid"].to_list(), [float(v) for v in top["rows"]], f"{part}: most matched synsets", "captions",
                files.path("lemma_matches", f"{part}.png"),
            ),
        }
    )


# --- synset_similarity[part] ----------------------------------------------------------------


class SynsetSimilarityConfig(Config):
    query: str = Field("name_def", description="synset text (the seed's QueryType): name_def ('<name> which is <definition>'), name, lemmas, "
        "a_photo_of_name, a_photo_of_name_def, a_clear_photo_of_name_def, a_photo_of_lemmas")
    model_name: str | None = Field(None, description="text model (the paper: ViT-B-32 with pretrained openai); default: the clip resource")
    pretrained: str | None = Field(None)
    checkpoint: str | None = Field(None)
    batch_size: int = Field(256, ge=1)


def similarity_column(query: str) -> str:
    return f"text_to_{query}_wnid_similarity"


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[lemma_matches],
    kinds={"parquet", "pytorch"},
    pool="gpu",
    description="Rows matched to exactly one synset (others dropped and counted): CLIP text cosine between the "
    "caption and the synset text ('<name> which is <definition>').",
)
def synset_similarity(context: AssetExecutionContext, config: SynsetSimilarityConfig, clip: ClipEncoder, files: FileStore) -> MaterializeResult:
    from laionlab.embed.encode import encode_texts
    from laionlab.laionet import synset_queries

    part = context.partition_key
    matches = files.read_parquet("lemma_matches", f"{part}.parquet")
    single = matches.filter(pl.col("wnids").list.len() == 1).with_columns(wnid=pl.col("wnids").list.first())
    meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
    single = single.join(meta, on="uid").sort("uid")
    try:
        queries = synset_queries(_synsets(files).select("wnid", "lemmas", "definition"), kind=config.query)
    except ValueError as err:
        raise Failure(f"synset_similarity: {err}") from None
    queries = queries.filter(pl.col("wnid").is_in(single["wnid"].unique().implode()))
    loaded = _load_clip(clip, config.model_name, config.pretrained, config.checkpoint)
    context.log.info(f"{part}: encoding {single.height} captions and {queries.height} synset texts with {loaded.model_id}")
    captions = encode_texts(loaded, single["TEXT"].to_list(), config.batch_size)
    query_emb = encode_texts(loaded, queries["query"].to_list(), config.batch_size)
    row_of = {w: i for i, w in enumerate(queries["wnid"].to_list())}
    idx = np.array([row_of[w] for w in single["wnid"].to_list()], np.int64)
    sims = np.einsum("nd,nd->n", captions, query_emb[idx]) if len(idx) else np.zeros(0, np.float32)
    out = single.select("uid", "wnid", "lemmas").with_columns(
        pl.Series(f"{config.query}_wnid", queries["query"].to_numpy()[idx] if len(idx) else [], dtype=pl.String),
        pl.Series(similarity_column(config.query), sims.astype(np.float32)),
        pl.lit(loaded.model_id).alias("text_model"),
    )
    files.write_parquet(out, "synset_similarity", f"{part}.parquet")
    return MaterializeResult(
        metadata={
            "matched_rows": matches.height,
            "dropped_multi_synset": matches.height - int((matches["wnids"].list.len() == 1).sum()),
            "scored_rows": out.height,
            "query": config.query,
            "text_model": loaded.model_id,
            "mean_similarity": float(sims.mean()) if len(sims) else float("nan"),
            "similarity_histogram": histogram(
                sims, f"caption-to-synset ({config.query}) cosine similarity", f"{part}: single-synset captions",
                files.path("synset_similarity", f"{part}.png"), ylabel="captions",
            ),
            "most_similar": markdown_table(out.sort(similarity_column(config.query), descending=True).select("uid", "wnid", similarity_column(config.query)).head(10)),
        }
    )


# --- laionet --------------------------------------------------------------------------------


class LaionetConfig(Config):
    threshold: float = Field(0.82, description="keep rows with similarity strictly above this (seed: 0.82 for CLIP)")
    query: str = Field("name_def", description="which synset_similarity column to threshold (as configured there)")
    nsfw_keep: list[str] | None = Field(["UNLIKELY"], description="NSFW values kept (seed since Dec 2024: UNLIKELY only); null keeps all")
    text_in_image_column: str | None = Field(
        "wnid_is_in_recognized_text", description="metadata column flagging the class name written in the image (the seed's OCR step); rows True are dropped when it exists"
    )
    sweep: list[float] = Field([round(float(t), 4) for t in np.linspace(0.5, 0.9, 20)], description="thresholds of the size-vs-threshold curve")


@asset(
    group_name=GROUP,
    deps=[synset_similarity],
    kinds={"parquet"},
    description="LAIONet over all parts: single-synset rows with caption-to-synset similarity > 0.82 and NSFW == "
    "UNLIKELY, with LAIONet's columns and the wnid → rows label map (JSON).",
)
def laionet(context: AssetExecutionContext, config: LaionetConfig, files: FileStore) -> MaterializeResult:
    from laionlab.laionet import threshold_curve

    _check_threshold("threshold", config.threshold)
    column = similarity_column(config.query)
    parts = registered(context, laion_part)
    frames = []
    progress = Progress("reading synset_similarity", len(parts), log=context.log, unit="parts")
    for part in parts:
        scored = files.read_parquet("synset_similarity", f"{part}.parquet")
        if column not in scored.columns:
            raise Failure(f"synset_similarity[{part}] was computed with another query type (no {column}); rematerialise it with query={config.query!r}")
        meta = files.read_parquet("laion_metadata", f"{part}.parquet")
        frames.append(scored.join(meta, on="uid", how="inner"))
        progress.update()
    progress.close()
    rows = pl.concat(frames, how="diagonal_relaxed")
    if rows.height == 0:
        raise Failure(f"no caption of parts {parts} matched exactly one synset: LAIONet would be empty")
    counts = {"matched_single_synset": rows.height}
    if config.nsfw_keep is not None:
        rows = rows.filter(pl.col("NSFW").is_in(config.nsfw_keep))
        counts["after_nsfw"] = rows.height
    if config.text_in_image_column and config.text_in_image_column in rows.columns:
        rows = rows.filter(~pl.col(config.text_in_image_column).fill_null(False))
        counts["after_text_in_image"] = rows.height
    curve = threshold_curve(rows[column].to_numpy(), rows["wnid"].to_numpy(), config.sweep)
    selected = rows.filter(pl.col(column) > config.threshold).sort("wnid", "uid")
    if config.query != "name_def":  # LAIONet's column names; the query actually used is recorded
        selected = selected.with_columns(
            pl.col(f"{config.query}_wnid").alias("name_def_wnid"), pl.col(column).alias("text_to_name_def_wnid_similarity")
        )
    selected = selected.select(LAIONET_COLUMNS + [c for c in ("lemmas", "text_model") if c in selected.columns])
    files.write_parquet(selected, "laionet", "laionet.parquet")
    labels = selected.with_row_index("index").group_by("wnid", maintain_order=True).agg(pl.col("index"))
    label_map = {w: [int(i) for i in idx] for w, idx in zip(labels["wnid"].to_list(), labels["index"].to_list())}
    files.write_json(label_map, "laionet", "wnid_to_rows.json", indent=0)
    per_class = selected.group_by("wnid").len().sort("len", descending=True)
    synsets = _synsets(files).select("wnid", "name")
    return MaterializeResult(
        metadata={
            "rows": selected.height,
            "classes": len(label_map),
            "threshold": config.threshold,
            **counts,
            "largest_classes": markdown_table(per_class.join(synsets, on="wnid", how="left").head(20).rename({"len": "rows"})),
            "class_size_histogram": histogram(per_class["len"].to_numpy(), "rows per class", "LAIONet class sizes", files.path("laionet", "class_sizes.png")),
            "size_vs_threshold": line_plot(
                curve["threshold"].to_list(), {"rows": curve["rows"].to_list(), "classes": curve["classes"].to_list()},
                "text-to-synset similarity threshold", "LAIONet size vs threshold", files.path("laionet", "threshold_curve.png"),
                logx=False, ylabel="count",
            ),
        }
    )


# --- intra-class similarity -----------------------------------------------------------------


class IntraClassConfig(Config):
    reference_dataset: str = Field(description="labelled reference dataset (ImageNet-val in the paper; labels = wnids)")
    n_per_class: int = Field(100, ge=2, description="LAIONet images per class (seed: 100)")
    reference_per_class: int | None = Field(None, ge=2, description="reference images per class (seed: all 50 of ImageNet-val)")
    sampling: str = Field("random", description="random (seeded) or first (seed_compat: the seed takes the first n of each class list)")
    min_pairs: int = Field(7, ge=2, description="classes with fewer pairs are not compared (seed: 7)")
    hist_pairs_per_class: int = Field(100, ge=1, description="pairs per class resampled for the histogram (seed: min(#pairs, 100))")
    seed: int = Field(0)


def _intra(emb: np.ndarray, labels: np.ndarray, n: int | None, mode: str, seed: int) -> pl.DataFrame:
    from laionlab.laionet import intra_class_similarity

    return intra_class_similarity(emb, labels, n_per_class=n if n is not None else len(labels), mode=mode, seed=seed)


def _pair_sample(emb: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's histogram: each class contributes min(#pairs, per_class) pair similarities
    resampled with replacement."""
    from laionlab.laionet import lower_triangle_similarities

    out = []
    for label in np.unique(labels):
        sims = lower_triangle_similarities(emb[labels == label])
        if len(sims):
            out.append(rng.choice(sims, size=min(len(sims), per_class), replace=True))
    return np.concatenate(out) if out else np.zeros(0)


def compare_sets(
    a_emb: np.ndarray, a_labels: np.ndarray, b_emb: np.ndarray, b_labels: np.ndarray, config
) -> tuple[pl.DataFrame, dict, np.ndarray, np.ndarray]:
    """Per-class intra-class similarity of set a (LAIONet) minus set b (the reference) with the
    seed's interval test, and the pair samples of the histogram. ``config`` carries
    n_per_class, reference_per_class, sampling, min_pairs, hist_pairs_per_class and seed."""
    from laionlab.laionet import compare_intra_class

    if config.sampling not in ("random", "first"):
        raise Failure(f"sampling must be 'random' or 'first', got {config.sampling!r}")
    a = _intra(a_emb, a_labels, config.n_per_class, config.sampling, config.seed)
    b = _intra(b_emb, b_labels, config.reference_per_class, config.sampling, config.seed)
    per_class, summary = compare_intra_class(a, b, min_pairs=config.min_pairs)
    rng = np.random.default_rng(config.seed)
    pairs = [_pair_sample(e, l, config.hist_pairs_per_class, rng) for e, l in ((a_emb, a_labels), (b_emb, b_labels))]
    return per_class, summary, pairs[0], pairs[1]


@asset(
    group_name=GROUP,
    deps=[laionet, laion_embeddings, reference_embeddings],
    kinds={"parquet"},
    description="Per-class mean pairwise CLIP image similarity of LAIONet vs a labelled reference set (ImageNet-val), "
    "with 95% intervals and the share of classes significantly lower / higher (the paper: 57.6% / 27.9%).",
)
def laionet_intra_class_similarity(context: AssetExecutionContext, config: IntraClassConfig, files: FileStore, lance: LanceStore) -> MaterializeResult:
    net = files.read_parquet("laionet", "laionet.parquet").select("uid", "wnid")
    uids, emb = laion_vectors_for(lance, net["uid"].to_list(), log=context.log)
    if not uids:
        raise Failure("no LAIONet row has an image embedding: materialise laion_images/laion_embeddings for the parts")
    labels = pl.DataFrame({"uid": uids}).join(net, on="uid", how="left")["wnid"].to_numpy()
    ref = labelled_reference(lance, config.reference_dataset)
    per_class, summary, laion_pairs, ref_pairs = compare_sets(emb, labels, _stack(ref["emb"]), ref["label"].to_numpy(), config)
    if per_class.height == 0:
        raise Failure(
            f"no class has >= {config.min_pairs} pairs in both LAIONet and {config.reference_dataset!r} "
            f"(LAIONet classes {len(set(labels))}, reference classes {ref['label'].n_unique()}): are the reference labels wnids?"
        )
    files.write_parquet(per_class, "laionet_intra_class_similarity", "per_class.parquet")
    return MaterializeResult(
        metadata={
            "laionet_rows_with_images": len(uids),
            "laionet_rows": net.height,
            "reference_dataset": config.reference_dataset,
            **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in summary.items()},
            "per_class": markdown_table(per_class.sort(per_class.columns[0]).head(50)),
            "distribution": histogram(
                None, "pairwise cosine similarity", "intra-class similarity", files.path("laionet_intra_class_similarity", "hist.png"),
                series={"LAIONet": laion_pairs, config.reference_dataset: ref_pairs},
            ),
        }
    )


# --- accuracy -------------------------------------------------------------------------------


class TimmModelConfig(Config):
    name: str = Field(description="timm architecture with a 1000-class ImageNet head, e.g. resnet50")
    checkpoint: str | None = Field(None, description="local checkpoint file (state_dict); none = random weights (tests only)")


class AccuracyConfig(Config):
    reference_dataset: str = Field(description="labelled reference dataset (ImageNet-val in the paper; labels = wnids)")
    clip_zero_shot: bool = Field(True, description="evaluate the clip resource's model zero-shot on the stored image embeddings")
    prompts: str = Field("openai", description="openai (open_clip's ImageNet class names × 80 OpenAI templates), simple ('a photo of a {}.'), or name_def (the seed's notebook: one '<name> which is <definition>' query)")
    timm_models: list[TimmModelConfig] = Field([], description="timm classifiers to evaluate on the images")
    top_k: list[int] = Field([1, 5], description="top-k accuracies")
    min_area: int = Field(100, ge=0, description="images under this many pixels are excluded (seed: 100)")
    require_rgb: bool = Field(True, description="exclude images whose mode is not RGB (seed's verify_image)")
    batch_size: int = Field(64, ge=1)


def _laionet_images(files: FileStore, uids: set[str]):
    """LAIONet images from the parts' shards, as stored by img2dataset."""
    from asset_defs.ingest import image_shards
    from laionlab.io.shards import iter_shard_images

    for part in sorted({u.rsplit(":", 1)[0] for u in uids}):
        yield from iter_shard_images(image_shards(files, part), uids)


def _reference_images(catalog: DatasetCatalog, name: str):
    from PIL import Image

    from laionlab.io.reference import list_items

    spec = catalog.get(name)
    if spec.kind == "hdf5":
        raise Failure(f"reference dataset {name!r} is an HDF5 array without labels; LAIONet accuracy needs labelled images")
    items = list_items(spec)
    for i, (source, label) in enumerate(zip(items.sources, items.labels)):
        with Image.open(source) as img:
            img.load()
            yield f"{name}:{i:09d}", img, label, img.width * img.height


class _Evaluator:
    """Runs the configured timm models on a stream of images, batch by batch, after the seed's
    image filter; remembers which uids passed."""

    def __init__(self, config: AccuracyConfig, context: AssetExecutionContext):
        from laionlab.laionet import load_timm_classifier

        self.config, self.context = config, context
        self.models = [(m.name, load_timm_classifier(m.name, m.checkpoint)) for m in config.timm_models]
        self.k = max(config.top_k)  # the evaluator's predictions hold the top max(top_k) classes

    def run(self, samples, label: str) -> tuple[list[str], dict[str, list[np.ndarray]], dict[str, int]]:
        from laionlab.laionet import image_problem, timm_predict

        kept, preds, problems, batch = [], {name: [] for name, _ in self.models}, {}, []
        progress = Progress(f"{label}: reading and classifying", log=self.context.log, unit="images")

        def flush():
            for name, model in self.models:
                preds[name].append(timm_predict(model, [img for _, img in batch], k=self.k, batch_size=self.config.batch_size))
            batch.clear()

        for uid, img, area in samples:
            progress.update()
            problem = image_problem(img, min_area=self.config.min_area, require_rgb=self.config.require_rgb)
            if problem is None and area < self.config.min_area:
                problem = f"original area {area} < {self.config.min_area} px"
            if problem is not None:
                key = problem.split(" ")[0]
                problems[key] = problems.get(key, 0) + 1
                continue
            kept.append(uid)
            if self.models:
                batch.append((uid, img.copy()))
                if len(batch) >= self.config.batch_size:
                    flush()
        if batch:
            flush()
        progress.close()
        self.context.log.info(f"{label}: {len(kept)} of {progress.done} images usable")
        return kept, preds, problems


@asset(
    group_name=GROUP,
    deps=[laionet, laion_embeddings, reference_embeddings],
    kinds={"parquet", "pytorch"},
    pool="gpu",
    description="Top-k accuracy of CLIP zero-shot and configured timm classifiers on LAIONet and on a labelled "
    "reference set restricted to LAIONet's classes: per-class recall with Wilson intervals, equally weighted and "
    "LAION weighted (each class's share of LAIONet).",
)
def laionet_accuracy(
    context: AssetExecutionContext, config: AccuracyConfig, clip: ClipEncoder, catalog: DatasetCatalog, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.laionet import ilsvrc_wnids, laion_weights, name_def_queries, per_class_recall, weighted_accuracy, zero_shot_predict, zero_shot_weights

    if not config.clip_zero_shot and not config.timm_models:
        raise Failure("nothing to evaluate: set clip_zero_shot or list timm_models")
    if any(k < 1 for k in config.top_k):
        raise Failure(f"top_k must be positive, got {config.top_k}")
    net = files.read_parquet("laionet", "laionet.parquet").select("uid", "wnid", "HEIGHT", "WIDTH")
    classes = sorted(net["wnid"].unique().to_list())
    weights = laion_weights(dict(net.group_by("wnid").len().iter_rows()))
    reference = labelled_reference(lance, config.reference_dataset)
    ref_labels = reference.select("uid", "label")
    unknown = sorted(set(ref_labels["label"].unique().to_list()) - set(ilsvrc_wnids()))
    if unknown:
        raise Failure(f"reference dataset {config.reference_dataset!r} has labels that are not ILSVRC wnids, e.g. {unknown[:5]}")
    ref_labels = ref_labels.filter(pl.col("label").is_in(classes))
    if ref_labels.height == 0:
        raise Failure(f"reference dataset {config.reference_dataset!r} has no image of LAIONet's {len(classes)} classes")
    evaluator = _Evaluator(config, context)
    original = dict(zip(net["uid"].to_list(), (net["HEIGHT"] * net["WIDTH"]).to_list()))
    laion_stream = ((s.uid, s.image, min(s.original_area, original.get(s.uid) or s.original_area)) for s in _laionet_images(files, set(net["uid"])))
    ref_wanted = set(ref_labels["uid"].to_list())
    ref_stream = ((uid, img, area) for uid, img, _, area in _reference_images(catalog, config.reference_dataset) if uid in ref_wanted)
    sets = {"LAIONet": evaluator.run(laion_stream, "LAIONet"), config.reference_dataset: evaluator.run(ref_stream, config.reference_dataset)}
    truth = {"LAIONet": dict(zip(net["uid"], net["wnid"])), config.reference_dataset: dict(zip(ref_labels["uid"], ref_labels["label"]))}
    if config.clip_zero_shot:
        loaded = clip.load()
        _check_model(lance, EMBEDDINGS_TABLE, loaded.model_id)
        _check_model(lance, REFERENCE_TABLE, loaded.model_id, f"dataset = '{config.reference_dataset}'")
        wnids = ilsvrc_wnids()
        if config.prompts == "name_def":
            text = zero_shot_weights(loaded, wnids, classnames=name_def_queries(wnids), templates=("{}",))
        elif config.prompts in ("openai", "simple"):
            text = zero_shot_weights(loaded, wnids, templates=None if config.prompts == "openai" else ("a photo of a {}.",))
        else:
            raise Failure(f"prompts must be openai, simple or name_def, got {config.prompts!r}")
    results = {}  # set → model → (uids, (n, k) predicted wnids)
    for set_name, (kept, preds, problems) in sets.items():
        results[set_name] = {model: (kept, np.concatenate(chunks) if chunks else np.zeros((0, evaluator.k), object)) for model, chunks in preds.items()}
        if config.clip_zero_shot and kept:
            if set_name == "LAIONet":
                uids, emb = laion_vectors_for(lance, kept, log=context.log)
            else:
                ref = reference.filter(pl.col("uid").is_in(kept))
                uids, emb = ref["uid"].to_list(), _stack(ref["emb"])
            results[set_name]["clip-zero-shot"] = (uids, zero_shot_predict(emb, text, wnids, k=evaluator.k))
    rows, summary = [], []
    for set_name, models in results.items():
        for model, (uids, pred) in models.items():
            true = np.array([truth[set_name][u] for u in uids])
            for k in config.top_k:
                frame = per_class_recall(true, pred[:, :k], classes=classes)
                rows.append(frame.with_columns(model=pl.lit(model), dataset=pl.lit(set_name), k=pl.lit(k)))
                for weighting, w in (("equal", None), ("laion", weights)):
                    acc, se = weighted_accuracy(frame, w)
                    summary.append({"model": model, "dataset": set_name, "k": k, "weighting": weighting, "accuracy": acc, "se": se, "images": len(uids)})
        context.log.info(f"{set_name}: {len(sets[set_name][0])} images usable, excluded {sets[set_name][2] or 'none'}")
    per_class = pl.concat(rows, how="diagonal_relaxed")
    table = pl.DataFrame(summary)
    files.write_parquet(per_class, "laionet_accuracy", "per_class.parquet")
    files.write_parquet(table, "laionet_accuracy", "summary.parquet")
    top1 = table.filter((pl.col("k") == min(config.top_k)))
    return MaterializeResult(
        metadata={
            "summary": markdown_table(table.with_columns(pl.col("accuracy").round(4), pl.col("se").round(4))),
            "classes": len(classes),
            "excluded_images": json.dumps({n: p for n, (_, _, p) in sets.items()}),
            "accuracy_plot": bar_plot(
                [f"{r['model']}\n{r['dataset']}\n{r['weighting']}" for r in top1.iter_rows(named=True)], top1["accuracy"].to_list(),
                f"top-{min(config.top_k)} accuracy", "accuracy", files.path("laionet_accuracy", "accuracy.png"),
            ),
        }
    )



# --- caption index and nearest-caption ImageNet (the paper's Section 4.3) -------------------


class CaptionIndexConfig(Config):
    max_memory: str = Field("16GB", description="memory budget of the index (the seed: 16 GB for 413,871,335 vectors via autofaiss)")
    flat_max_rows: int = Field(100_000, ge=1, description="exact IndexFlatIP up to this many captions")
    nprobe: int = Field(32, ge=1, description="IVF lists probed per query")
    rebuild: bool = Field(False, description="retrain from scratch instead of appending new parts")
    seed: int = Field(0)


def parse_bytes(text: str) -> int:
    """'16GB', '40MB', '512KiB', '1000' → bytes (decimal units for kB/MB/GB/TB, binary for KiB...)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKMGT]i?B|B)?\s*", text)
    if not m:
        raise Failure(f"max_memory: cannot read {text!r} as a size (e.g. 16GB, 512MiB)")
    unit = m.group(2) or "B"
    scale = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
    if unit not in scale:
        raise Failure(f"max_memory: unknown unit {unit!r} in {text!r}")
    return int(float(m.group(1)) * scale[unit])


def _text_vectors(lance: LanceStore, part: str) -> tuple[list[str], np.ndarray, set[str]]:
    table = lance.tables().open(EMBEDDINGS_TABLE)
    query = table.search().limit(None).select(["uid", "text_emb", "model"]).where(f"part = '{part}'")
    uids, blocks, models = [], [], set()
    for batch in query.to_batches(batch_size=65_536):
        got, X = read_vectors([batch], column="text_emb")
        uids.extend(got)
        blocks.append(X)
        models.update(batch.column("model").to_pylist())
    return uids, (np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)), models


@asset(
    group_name=GROUP,
    deps=[laion_embeddings],
    kinds={"faiss"},
    description="A faiss inner-product index over the caption text embeddings of all parts: exact for small "
    "tables, else IVF-PQ chosen under a memory budget (autofaiss's rule, as the seed built its 413M-vector index), "
    "trained once and appended to as parts arrive.",
)
def caption_index(context: AssetExecutionContext, config: CaptionIndexConfig, files: FileStore, lance: LanceStore) -> MaterializeResult:
    from laionlab.retrieval.caption_index import CaptionIndex, choose_index_key, estimate_index_memory, train_size

    budget = parse_bytes(config.max_memory)
    parts = registered(context, laion_part)
    tables = lance.tables()
    counts = {p: tables.count(EMBEDDINGS_TABLE, f"part = '{p}'") for p in parts}
    index_path = files.path("caption_index", "index.faiss")
    built = files.exists("caption_index", "state.json") and files.exists("caption_index", "index.faiss")
    state = files.read_json("caption_index", "state.json") if built else None
    stale = state is not None and any(counts.get(p) != info["rows"] for p, info in state["parts"].items())
    if state is None or config.rebuild or stale:
        if stale:
            context.log.info("a part was re-embedded or removed since the index was built: rebuilding it")
        state, index = {"parts": {}, "next_id": 0, "model": None, "key": None}, None
    else:
        index = CaptionIndex.load(index_path)
    todo = [p for p in parts if p not in state["parts"] and counts[p] > 0]
    pending: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, vectors) held until the index is trained
    progress = Progress("caption_index: adding parts", sum(counts[p] for p in todo), log=context.log, unit="captions")
    for part in todo:
        uids, X, models = _text_vectors(lance, part)
        if state["model"] is None:
            state["model"] = next(iter(models))
        if models != {state["model"]}:
            raise Failure(f"laion_embeddings[{part}] holds text embeddings of {sorted(models)}, the index {state['model']}: rebuild")
        ids = np.arange(state["next_id"], state["next_id"] + len(uids), dtype=np.int64)
        files.write_parquet(pl.DataFrame({"id": ids, "uid": uids}), "caption_index", "ids", f"{part}.parquet")
        state["parts"][part] = {"rows": len(uids), "first_id": int(ids[0])}
        state["next_id"] += len(uids)
        if index is not None:
            index.append(X, ids)
            progress.update(len(uids))
            continue
        # train once enough rows are in hand (the seed: on its first ~1M-vector chunk)
        pending.append((ids, X))
        total = sum(counts.values())
        key = choose_index_key(total, X.shape[1], budget, flat_max_rows=config.flat_max_rows)
        if sum(len(i) for i, _ in pending) >= train_size(total, key, X.shape[1]) or part == todo[-1]:
            all_ids = np.concatenate([i for i, _ in pending])
            index = CaptionIndex.build(np.concatenate([x for _, x in pending]), all_ids, key, seed=config.seed, nprobe=config.nprobe)
            state["key"] = key
            context.log.info(f"caption_index: trained {key} on {len(all_ids)} captions (estimated {estimate_index_memory(key, total, X.shape[1]) / 1e9:.2f} GB for {total})")
            pending = []
        progress.update(len(uids))
    progress.close()
    if index is None:
        raise Failure(f"laion_embeddings has no rows for parts {parts}: nothing to index")
    if todo:
        index.save(index_path)  # the index first, then the state that says which parts it holds
        files.write_json(state, "caption_index", "state.json", indent=1)
    return MaterializeResult(
        metadata={
            "index": state["key"],
            "vectors": index.ntotal,
            "parts_added": ", ".join(todo) or "none (up to date)",
            "text_model": state["model"],
            "budget_bytes": budget,
        }
    )


class NearestCaptionConfig(Config):
    captions_dataset: str = Field(description="ImageNet-Captions-style catalog dataset (image path, caption, wnid label)")
    nprobe: int | None = Field(None, ge=1, description="IVF lists probed (default: the index's)")
    n_per_class: int = Field(100, ge=2, description="recreated-dataset images per class")
    reference_per_class: int | None = Field(None, ge=2, description="original images per class (default all)")
    sampling: str = Field("random", description="random (seeded) or first")
    min_pairs: int = Field(7, ge=2)
    hist_pairs_per_class: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    seed: int = Field(0)


@asset(
    group_name=GROUP,
    deps=[caption_index, reference_embeddings],
    kinds={"parquet", "faiss"},
    pool="gpu",
    description="For each caption of an ImageNet-Captions-style dataset, the most similar LAION caption: a "
    "LAION-recreated ImageNet, and its intra-class image similarity vs the original images (the paper's Section 4.3).",
)
def nearest_caption_imagenet(
    context: AssetExecutionContext, config: NearestCaptionConfig, clip: ClipEncoder, catalog: DatasetCatalog, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.embed.encode import encode_texts
    from laionlab.io.reference import list_items
    from laionlab.retrieval.caption_index import CaptionIndex

    name = config.captions_dataset
    items = list_items(catalog.get(name))
    if all(c is None for c in items.captions) or all(l is None for l in items.labels):
        raise Failure(f"dataset {name!r} needs captions and labels (a parquet entry with caption_column and label_column)")
    state = files.read_json("caption_index", "state.json")
    loaded = clip.load()
    if loaded.model_id != state["model"]:
        raise Failure(f"caption_index holds text embeddings of {state['model']}, the clip resource is {loaded.model_id}: same model needed")
    keep = [i for i, (c, l) in enumerate(zip(items.captions, items.labels)) if c and l]
    queries = encode_texts(loaded, [items.captions[i] for i in keep], config.batch_size)
    index = CaptionIndex.load(files.path("caption_index", "index.faiss"))
    scores, ids = index.search(queries, 1, nprobe=config.nprobe)
    id_map = pl.concat([files.read_parquet("caption_index", "ids", f"{p}.parquet") for p in state["parts"]])
    found = pl.DataFrame(
        {
            "caption_uid": [f"{name}:{i:09d}" for i in keep],
            "caption": [items.captions[i] for i in keep],
            "wnid": [items.labels[i] for i in keep],
            "id": ids[:, 0],
            "caption_similarity": scores[:, 0],
        }
    ).join(id_map, on="id", how="left")
    files.write_parquet(found, "nearest_caption_imagenet", "recreated.parquet")
    # the recreated dataset: distinct (LAION row, class) pairs
    recreated = found.select("uid", "wnid").unique(maintain_order=True)
    uids, emb = laion_vectors_for(lance, recreated["uid"].to_list(), log=context.log)
    vec = dict(zip(uids, emb))
    recreated = recreated.filter(pl.col("uid").is_in(uids))
    laion_emb = np.stack([vec[u] for u in recreated["uid"]]) if recreated.height else np.zeros((0, 1), np.float32)
    original = labelled_reference(lance, name)
    per_class, summary, a_pairs, b_pairs = compare_sets(laion_emb, recreated["wnid"].to_numpy(), _stack(original["emb"]), original["label"].to_numpy(), config)
    files.write_parquet(per_class, "nearest_caption_imagenet", "per_class.parquet")
    return MaterializeResult(
        metadata={
            "captions": len(keep),
            "distinct_laion_rows": recreated.height,
            "mean_caption_similarity": float(scores[:, 0].mean()) if len(keep) else float("nan"),
            **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in summary.items()},
            "per_class": markdown_table(per_class.head(50)),
            "distribution": histogram(
                None, "pairwise cosine similarity", "intra-class similarity: recreated vs original",
                files.path("nearest_caption_imagenet", "hist.png"), series={"LAION (nearest captions)": a_pairs, name: b_pairs},
            ),
        }
    )


assets = [
    ilsvrc_synsets,
    lemma_matches,
    synset_similarity,
    laionet,
    laionet_intra_class_similarity,
    laionet_accuracy,
    caption_index,
    nearest_caption_imagenet,
]
