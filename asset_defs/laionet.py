"""LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025;
public code alishiraliGit/eval-on-laion): LAION rows whose caption names exactly one ILSVRC
synset and is close to that synset's text in CLIP space, and what they show about ImageNet.

ilsvrc_synsets → lemma_matches[part] → synset_similarity[part] → laionet →
laionet_intra_class_similarity, laionet_accuracy; caption_index → nearest_caption_imagenet.
Defaults are the seed code's (alishiraliGit/eval-on-laion) where it differs from the paper's
text; every threshold is config.
"""

import json
from typing import Literal

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import (
    EMBEDDINGS_TABLE,
    REFERENCE_TABLE,
    image_shards,
    laion_embeddings,
    laion_metadata,
    reference_embeddings,
)
from asset_defs.lineage import data_version, latest_by_partition, parts_seen_of, require_same_params, storage_ids
from asset_defs.metadata import bar_plot, gallery_metadata, histogram, line_plot, markdown_table
from asset_defs.partitions import every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from asset_defs.readers import labelled_reference, laion_vectors_for, stack_vectors
from laionlab.io.digest import frame_digest
from laionlab.io.lance import read_vectors
from laionlab.laionet.queries import QueryKind
from laionlab.laionet.select import DEFAULT_NSFW_KEEP, TEXT_IN_IMAGE_COLUMN
from laionlab.laionet.select import LAIONET_COLUMNS as LAIONET_COLUMNS  # re-exported: the tests read it here
from laionlab.laionet.similarity import (
    caption_synset_similarity,
    similarity_column,
    single_synset_captions,
    synset_queries_for,
)
from laionlab.laionet.stats import LAIONET_THRESHOLD, THRESHOLD_SWEEP
from laionlab.laionet.synsets import SEED_MISSING_WNIDS
from resources import ClipEncoder, DatasetCatalog, FileStore, LanceStore

SampleMode = Literal["random", "seed_compat", "first"]  # laionlab.laionet.stats.SAMPLE_MODES; first = seed_compat

GROUP = "laionet"


def _check_model(lance: LanceStore, table: str, model_id: str, part: str, part_column: str = "part") -> None:
    """Zero-shot text vectors only make sense against image vectors of the same model."""
    models = set(
        pl.from_arrow(lance.tables().read_part(table, part, ["model"], part_column))["model"].unique().to_list()
    )
    if models - {model_id}:
        raise Failure(
            f"{table} holds embeddings of {sorted(models)}, the clip resource is {model_id}: "
            "re-embed or configure the same model"
        )


def _synsets(files: FileStore) -> pl.DataFrame:
    return files.read_parquet("ilsvrc_synsets", "synsets.parquet")


def _lemma_to_wnid(files: FileStore) -> dict[str, str]:
    frame = files.read_parquet("ilsvrc_synsets", "lemma_to_wnid.parquet")
    return dict(zip(frame["lemma"].to_list(), frame["wnid"].to_list()))


# --- ilsvrc_synsets -------------------------------------------------------------------------


@profiled("ilsvrc_synsets")
class SynsetsConfig(Config):
    synsets_file: str | None = Field(
        None,
        description="optional table (parquet, or TSV with a header) with wnid, lemmas (comma-separated or a list) and "
        "definition; default: the 1000 ILSVRC-2012 synsets timm ships",
    )


@asset(
    group_name=GROUP,
    kinds={"parquet"},
    description="The 1000 ILSVRC-2012 synsets (lemmas, name, definition, name_def query) and the seed's lemma "
    "dictionary: lemmas unique across all synsets' lemma lists, synsets left without one dropped.",
)
def ilsvrc_synsets(context: AssetExecutionContext, config: SynsetsConfig, files: FileStore) -> MaterializeResult:
    from laionlab.io.imagenet import ilsvrc_synsets as timm_synsets
    from laionlab.io.imagenet import read_synsets_table
    from laionlab.laionet import seed_dictionary_comparison, synset_tables

    with library_errors("ilsvrc synsets"):
        synsets = read_synsets_table(config.synsets_file) if config.synsets_file else timm_synsets()
        tables = synset_tables(synsets)
        seed = seed_dictionary_comparison(synsets, tables.dictionary, SEED_MISSING_WNIDS)
    files.write_parquet(tables.synsets, "ilsvrc_synsets", "synsets.parquet")
    files.write_parquet(tables.lemmas, "ilsvrc_synsets", "lemma_to_wnid.parquet")
    unique = tables.dictionary
    lemmas_per_synset = synsets["lemmas"].list.len()
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "synsets": synsets.height,
            "unique_lemmas": unique.n_lemmas,
            "wnids_with_a_lemma": unique.n_wnids,
            "dropped_wnids": ", ".join(unique.dropped_wnids),
            "shared_lemmas": len(unique.shared_lemmas),
            "punctuated_lemmas (never match)": len(unique.punctuated),
            "dictionaries": markdown_table(seed.counts),
            "lemmas_per_synset": histogram(
                lemmas_per_synset.to_numpy(),
                "lemmas of the synset",
                "ILSVRC synsets: lemmas per synset",
                files.path("ilsvrc_synsets", "lemmas_per_synset.png"),
                bins=int(lemmas_per_synset.max() or 1),
                ylabel="synsets",
            ),
            "lemmas only in the seed-like dictionary": ", ".join(f"{l}→{w}" for l, w in seed.only_seed_like) or "none",
            "lemmas only in this dictionary": ", ".join(f"{l}→{w}" for l, w in seed.only_this) or "none",
            "known differences from the seed's file": "the seed lists Siberian husky as n02112837 (ImageNet: "
            "n02110185) and lacks n03126707 (crane, the machine), so its 'crane' maps to the bird n02012849",
        },
        data_version=data_version(context, frame_digest(tables.synsets), frame_digest(tables.lemmas)),
    )


# --- lemma_matches[part] --------------------------------------------------------------------


@profiled("lemma_matches")
class LemmaMatchConfig(Config):
    case_sensitive: bool = Field(True, description="the seed matches case-sensitively ('Goldfish' ≠ 'goldfish')")


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[every_partition(ilsvrc_synsets), laion_metadata],
    kinds={"parquet", "polars"},
    description="Captions of the part that contain a unique ILSVRC lemma as whole words (the seed's rule: "
    "punctuation → spaces, space-padded substring), in one Aho-Corasick pass: uid → lemmas, wnids.",
)
def lemma_matches(context: AssetExecutionContext, config: LemmaMatchConfig, files: FileStore) -> MaterializeResult:
    from laionlab.laionet import match_lemmas_frame

    part = context.partition_key
    meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
    matched = match_lemmas_frame(meta["TEXT"], _lemma_to_wnid(files), case_sensitive=config.case_sensitive)
    frame = pl.concat([meta.select("uid"), matched.select("lemmas", "wnids")], how="horizontal").filter(
        pl.col("wnids").list.len() > 0
    )
    files.write_parquet(frame, "lemma_matches", f"{part}.parquet")
    top = (
        frame.explode("wnids")
        .group_by("wnids")
        .len()
        .sort(["len", "wnids"], descending=[True, False])
        .head(15)
        .rename({"wnids": "wnid", "len": "rows"})
        .join(_synsets(files).select("wnid", "name"), on="wnid", how="left")
        .select("name", "wnid", "rows")
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "rows": meta.height,
            "matched_rows": frame.height,
            "matched_fraction": frame.height / max(meta.height, 1),
            "multi_synset_rows": int((frame["wnids"].list.len() > 1).sum()),
            "top_wnids": markdown_table(top),
            "top_wnids_plot": bar_plot(
                top["name"].fill_null(top["wnid"]).to_list(),
                [float(v) for v in top["rows"]],
                f"{part}: most matched synsets",
                "captions",
                files.path("lemma_matches", f"{part}.png"),
            ),
        }
    )


# --- synset_similarity[part] ----------------------------------------------------------------


@profiled("synset_similarity")
class SynsetSimilarityConfig(Config):
    query: QueryKind = Field(
        "name_def",
        description="synset text (the seed's QueryType): name_def ('<name> which is <definition>'), name, lemmas, "
        "a_photo_of_name, a_photo_of_name_def, a_clear_photo_of_name_def, a_photo_of_lemmas",
    )
    batch_size: int = Field(256, ge=1)


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[lemma_matches],
    kinds={"parquet", "pytorch"},
    pool="gpu",
    description="Rows matched to exactly one synset (others dropped and counted): CLIP text cosine between the "
    "caption and the synset text ('<name> which is <definition>'), with the laionet_text_clip resource's model "
    "(the paper: OpenAI CLIP ViT-B/32, open_clip ViT-B-32/openai).",
)
def synset_similarity(
    context: AssetExecutionContext, config: SynsetSimilarityConfig, laionet_text_clip: ClipEncoder, files: FileStore
) -> MaterializeResult:
    from laionlab.embed.encode import encode_texts
    from laionlab.laionet import is_paper_text_model

    part = context.partition_key
    matches = files.read_parquet("lemma_matches", f"{part}.parquet")
    captions = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
    with library_errors("synset_similarity"):
        single, dropped = single_synset_captions(matches, captions)
        synsets = _synsets(files).select("wnid", "lemmas", "definition")
        queries = synset_queries_for(synsets, single["wnid"], kind=config.query)
    loaded = laionet_text_clip.load()
    context.log.info(
        f"{part}: encoding {single.height} captions and {queries.height} synset texts with {loaded.model_id}"
    )
    caption_emb = encode_texts(loaded, single["TEXT"].to_list(), config.batch_size)
    query_emb = encode_texts(loaded, queries["query"].to_list(), config.batch_size)
    with library_errors("synset_similarity"):
        out = caption_synset_similarity(single, queries, caption_emb, query_emb, config.query, loaded.model_id)
    files.write_parquet(out, "synset_similarity", f"{part}.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "matched_rows": matches.height,
            "dropped_multi_synset": dropped,
            "scored_rows": out.height,
            "query": config.query,
            "text_model": loaded.model_id,
            "paper_text_model": is_paper_text_model(loaded.model_id),
            **_similarity_metadata(out, config.query, part, files),
        }
    )


def _similarity_metadata(out: pl.DataFrame, query: str, part: str, files: FileStore) -> dict:
    """synset_similarity's metadata on the scores ``out`` of query kind ``query``: their mean,
    histogram and the most similar captions."""
    column = similarity_column(query)
    sims = out[column].to_numpy()
    return {
        "mean_similarity": float(sims.mean()) if len(sims) else float("nan"),
        "similarity_histogram": histogram(
            sims,
            f"caption-to-synset ({query}) cosine similarity",
            f"{part}: single-synset captions",
            files.path("synset_similarity", f"{part}.png"),
            ylabel="captions",
        ),
        "most_similar": markdown_table(out.sort(column, descending=True).select("uid", "wnid", column).head(10)),
    }


# --- laionet --------------------------------------------------------------------------------


@profiled("laionet_rows")
class LaionetConfig(Config):
    threshold: float = Field(
        LAIONET_THRESHOLD,
        description="keep rows with similarity strictly above this "
        "(seed: 0.82, calibrated on OpenAI CLIP ViT-B/32's text tower)",
    )
    query: QueryKind = Field(
        "name_def", description="which synset_similarity column to threshold (as configured there)"
    )
    nsfw_keep: list[str] | None = Field(
        list(DEFAULT_NSFW_KEEP), description="NSFW values kept (seed since Dec 2024: UNLIKELY only); null keeps all"
    )
    text_in_image_column: str | None = Field(
        TEXT_IN_IMAGE_COLUMN,
        description="metadata column flagging the class name written in the image (the seed's OCR step); "
        "rows True are dropped when it exists",
    )


def _laionet_candidates(files: FileStore, part: str, query: str) -> pl.DataFrame:
    """Every matched caption of the part: lemma_matches (all synsets it names) left-joined
    with its synset_similarity score (single-synset rows only) and its laion_metadata row."""
    scored = files.read_parquet("synset_similarity", f"{part}.parquet")
    if similarity_column(query) not in scored.columns:
        raise Failure(
            f"synset_similarity[{part}] was computed with another query type (no {similarity_column(query)}); "
            f"rematerialise it with query={query!r}"
        )
    matches = files.read_parquet("lemma_matches", f"{part}.parquet").select("uid", "wnids")
    meta = files.read_parquet("laion_metadata", f"{part}.parquet")
    return matches.join(scored, on="uid", how="left").join(meta, on="uid", how="inner")


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[lemma_matches, synset_similarity],
    kinds={"parquet"},
    description="LAIONet rows of one part: single-synset captions with caption-to-synset similarity > 0.82 and NSFW == "
    "UNLIKELY (the seed's rules are row by row, so a new part adds only its own rows).",
)
def laionet_rows(context: AssetExecutionContext, config: LaionetConfig, files: FileStore) -> MaterializeResult:
    from laionlab.laionet import check_threshold, laionet_table, select_laionet

    part = context.partition_key
    column = similarity_column(config.query)
    with library_errors(f"laionet_rows[{part}]"):
        check_threshold(config.threshold)
        sel = select_laionet(
            _laionet_candidates(files, part, config.query),
            config.threshold,
            config.nsfw_keep,
            config.text_in_image_column,
            column,
        )
    selected = laionet_table(sel.rows, config.query, column)  # LAIONet's column names; the query is recorded
    # what the cross-part summary needs besides the rows: the eligible scores (its size-vs-threshold
    # curve) and the counts of each rule
    eligible = sel.eligible.select("wnid", pl.col(column).alias("similarity"), "text_model")
    files.write_parquet(eligible, "laionet_rows", f"{part}.eligible.parquet")
    files.write_json(
        {**sel.counts, "text_in_image_checked": sel.text_in_image_checked}, "laionet_rows", f"{part}.counts.json"
    )
    files.write_parquet(selected, "laionet_rows", f"{part}.parquet")
    per_class = selected.group_by("wnid").len().sort("len", descending=True).rename({"len": "rows"})
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "rows": selected.height,
            **sel.counts,
            "largest_classes": markdown_table(per_class.head(15)),
            "similarity_histogram": histogram(
                eligible["similarity"].to_numpy(),
                "caption-to-synset similarity",
                f"{part}: eligible rows",
                files.path("laionet_rows", f"{part}.png"),
                mark=(config.threshold, f"threshold {config.threshold}"),
                ylabel="rows",
            ),
        }
    )


@profiled("laionet")
class LaionetSummaryConfig(Config):
    sweep: list[float] = Field(
        [round(t, 4) for t in THRESHOLD_SWEEP],
        description="thresholds of the size-vs-threshold curve (the seed's notebook: linspace(0.5, 0.9, 20))",
    )


@asset(
    group_name=GROUP,
    deps=[every_partition(laionet_rows)],
    kinds={"parquet"},
    check_specs=[
        AssetCheckSpec(
            "threshold_calibrated",
            asset="laionet",
            description="the threshold was calibrated on the text model that scored the captions "
            "(the seed: 0.82 on OpenAI CLIP ViT-B/32)",
        )
    ],
    description="LAIONet over all parts: the per-part rows in one table with LAIONet's columns, the wnid → rows label "
    "map (JSON), class sizes and the size-vs-threshold curve.",
)
def laionet(context: AssetExecutionContext, config: LaionetSummaryConfig, files: FileStore) -> MaterializeResult:
    from laionlab.laionet import combine_laionet_parts

    parts = registered(context, laion_part)
    params = require_same_params(context, "laionet_rows", parts)  # one threshold and rule set across parts
    for per_part in ("lemma_matches", "synset_similarity"):
        require_same_params(context, per_part, parts)  # one matching rule and text model across parts
    missing = [p for p in parts if not files.exists("laionet_rows", f"{p}.parquet")]
    if missing:
        raise Failure(f"laionet_rows is missing for parts {missing}: materialise laionet_rows for them first")
    threshold = float(params.get("threshold", LAIONET_THRESHOLD))
    with library_errors("laionet"):
        net = combine_laionet_parts(
            {p: files.read_parquet("laionet_rows", f"{p}.parquet") for p in parts},
            {p: files.read_parquet("laionet_rows", f"{p}.eligible.parquet") for p in parts},
            {p: files.read_json("laionet_rows", f"{p}.counts.json") for p in parts},
            threshold,
            config.sweep,
        )
    if net.warning:
        context.log.warning(net.warning)
    files.write_parquet(net.rows, "laionet", "laionet.parquet")
    files.write_json(net.labels, "laionet", "wnid_to_rows.json", indent=0)
    return MaterializeResult(
        metadata={**params_metadata(config), **_laionet_metadata(net, parts, threshold, files)},
        check_results=[
            AssetCheckResult(
                check_name="threshold_calibrated",
                passed=net.warning is None,
                severity=AssetCheckSeverity.WARN,
                metadata={
                    "threshold": threshold,
                    "text_models": ", ".join(net.text_models) or "unknown",
                    "warning": net.warning or "none",
                },
            )
        ],
    )


def _laionet_metadata(net, parts: list[str], threshold: float, files: FileStore) -> dict:
    """The laionet asset's metadata: sizes, the summed rule counts, text models and plots of
    :func:`laionlab.laionet.combine_laionet_parts`' result ``net``."""
    synsets = _synsets(files).select("wnid", "name")
    largest = net.class_sizes.join(synsets, on="wnid", how="left").head(20).rename({"len": "rows"})
    curve = net.curve
    return {
        "parts_seen": ", ".join(parts),
        "rows": net.rows.height,
        "classes": len(net.labels),
        "threshold": threshold,
        **{k: v for k, v in net.counts.items() if k != "text_in_image_checked"},
        "text_in_image_checked": net.counts.get("text_in_image_checked", 0) > 0,
        "text_models": ", ".join(net.text_models),
        "paper_text_model": net.paper_text_model,
        "threshold_calibration_warning": net.warning is not None,
        "largest_classes": markdown_table(largest),
        "class_size_histogram": histogram(
            net.class_sizes["len"].to_numpy(),
            "rows per class",
            "LAIONet class sizes",
            files.path("laionet", "class_sizes.png"),
        ),
        "size_vs_threshold": line_plot(
            curve["threshold"].to_list(),
            {"rows": curve["rows"].to_list(), "classes": curve["classes"].to_list()},
            "text-to-synset similarity threshold",
            "LAIONet size vs threshold",
            files.path("laionet", "threshold_curve.png"),
            logx=False,
            ylabel="count",
        ),
    }


# --- intra-class similarity -----------------------------------------------------------------


@profiled("laionet_intra_class_similarity")
class IntraClassConfig(Config):
    reference_dataset: str = Field(description="labelled reference dataset (ImageNet-val in the paper; labels = wnids)")
    n_per_class: int = Field(100, ge=2, description="LAIONet images per class (seed: 100)")
    reference_per_class: int | None = Field(
        None, ge=2, description="reference images per class (seed: all 50 of ImageNet-val)"
    )
    sampling: SampleMode = Field(
        "random",
        description="random (seeded per class) or seed_compat "
        "(the seed: the first n of each class list; 'first' is an alias)",
    )
    min_pairs: int = Field(7, ge=2, description="classes with fewer pairs are not compared (seed: 7)")
    hist_pairs_per_class: int = Field(
        100,
        ge=1,
        description="pairs per class resampled for the histogram, from the same per-class sample "
        "(seed: min(#pairs, 100))",
    )
    seed: int = Field(0)


def compare_sets(a_emb: np.ndarray, a_labels: np.ndarray, b_emb: np.ndarray, b_labels: np.ndarray, config):
    """:func:`laionlab.laionet.compare_intra_class_sets` with the sampling settings of
    ``config`` (n_per_class, reference_per_class, sampling, min_pairs, hist_pairs_per_class,
    seed); a Failure naming the bad setting."""
    from laionlab.laionet import compare_intra_class_sets

    with library_errors("intra-class similarity"):
        return compare_intra_class_sets(
            a_emb,
            a_labels,
            b_emb,
            b_labels,
            n_per_class=config.n_per_class,
            reference_per_class=config.reference_per_class,
            mode=config.sampling,
            min_pairs=config.min_pairs,
            hist_pairs_per_class=config.hist_pairs_per_class,
            seed=config.seed,
        )


def _summary_metadata(summary: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in summary.items()}


@asset(
    group_name=GROUP,
    deps=[laionet, every_partition(laion_embeddings), every_partition(reference_embeddings)],
    kinds={"parquet"},
    description="Per-class mean pairwise CLIP image similarity of LAIONet vs a labelled reference set (ImageNet-val), "
    "with 95% intervals and the share of classes significantly lower / higher (the paper: 57.6% / 27.9%).",
)
def laionet_intra_class_similarity(
    context: AssetExecutionContext, config: IntraClassConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    net = files.read_parquet("laionet", "laionet.parquet").select("uid", "wnid")
    uids, emb = laion_vectors_for(lance, net["uid"].to_list(), log=context.log)
    if not uids:
        raise Failure("no LAIONet row has an image embedding: materialise laion_images/laion_embeddings for the parts")
    labels = pl.DataFrame({"uid": uids}).join(net, on="uid", how="left")["wnid"].to_numpy()
    ref = labelled_reference(lance, config.reference_dataset)
    result = compare_sets(emb, labels, stack_vectors(ref["emb"]), ref["label"].to_numpy(), config)
    per_class = result.per_class
    if per_class.height == 0:
        raise Failure(
            f"no class has >= {config.min_pairs} pairs in both LAIONet and {config.reference_dataset!r} "
            f"(LAIONet classes {len(set(labels))}, reference classes {ref['label'].n_unique()}): "
            "are the reference labels wnids?"
        )
    files.write_parquet(per_class, "laionet_intra_class_similarity", "per_class.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "parts_seen": parts_seen_of(context.instance, "laionet"),
            "laionet_rows_with_images": len(uids),
            "laionet_rows": net.height,
            "reference_dataset": config.reference_dataset,
            **_summary_metadata(result.summary),
            "per_class": markdown_table(per_class.sort(per_class.columns[0]).head(50)),
            "distribution": histogram(
                None,
                "pairwise cosine similarity",
                "intra-class similarity",
                files.path("laionet_intra_class_similarity", "hist.png"),
                series={"LAIONet": result.pairs_a, config.reference_dataset: result.pairs_b},
            ),
        }
    )


# --- accuracy -------------------------------------------------------------------------------


class TimmModelConfig(Config):
    name: str = Field(description="timm architecture with a 1000-class ImageNet head, e.g. resnet50")
    checkpoint: str | None = Field(
        None, description="local checkpoint file (state_dict); none = random weights (tests only)"
    )


@profiled("laionet_predictions")
class PredictionConfig(Config):
    clip_zero_shot: bool = Field(
        True, description="evaluate the clip resource's model zero-shot on the stored image embeddings"
    )
    prompts: Literal["openai", "simple", "name_def"] = Field(
        "openai",
        description="openai (open_clip's ImageNet class names × 80 OpenAI templates), simple ('a photo of a {}.'), "
        "or name_def (the seed's notebook: one '<name> which is <definition>' query)",
    )
    timm_models: list[TimmModelConfig] = Field([], description="timm classifiers to evaluate on the images")
    top_k: list[int] = Field([1, 5], description="top-k accuracies")
    min_area: int = Field(100, ge=0, description="images under this many pixels are excluded (seed: 100)")
    require_rgb: bool = Field(
        True,
        description="exclude images whose mode is not RGB (seed's verify_image); "
        "a LAION row's image is the one img2dataset re-encoded",
    )
    batch_size: int = Field(64, ge=1)


def _laionet_images(files: FileStore, net: pl.DataFrame):
    """(uid, image, original area) of the LAIONet rows from the parts' shards (img2dataset's
    re-encoded images); the area is the smaller of the shard's and the metadata's original size."""
    from laionlab.io.shards import iter_shard_images

    original = dict(zip(net["uid"].to_list(), (net["HEIGHT"] * net["WIDTH"]).to_list()))
    for part in sorted({u.rsplit(":", 1)[0] for u in original}):
        for s in iter_shard_images(image_shards(files, part), set(original)):
            yield s.uid, s.image, min(s.original_area, original.get(s.uid) or s.original_area)


def _reference_images(catalog: DatasetCatalog, name: str, wanted: set[str]):
    """(uid, image, area) of the wanted images of a reference dataset, as stored."""
    from PIL import Image

    from laionlab.io.reference import list_items

    spec = catalog.get(name)
    if spec.kind == "hdf5":
        raise Failure(
            f"reference dataset {name!r} is an HDF5 array without labels; LAIONet accuracy needs labelled images"
        )
    items = list_items(spec)
    for i, source in enumerate(items.sources):
        uid = f"{name}:{i:09d}"
        if uid in wanted:
            with Image.open(source) as img:
                img.load()
                yield uid, img, img.width * img.height


def _accuracy_reference(lance: LanceStore, name: str, classes: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The reference set's rows (uid, label, emb) and its labels restricted to LAIONet's classes."""
    from laionlab.laionet import ilsvrc_wnids

    reference = labelled_reference(lance, name)
    unknown = sorted(set(reference["label"].unique().to_list()) - set(ilsvrc_wnids()))
    if unknown:
        raise Failure(f"reference dataset {name!r} has labels that are not ILSVRC wnids, e.g. {unknown[:5]}")
    labels = reference.select("uid", "label").filter(pl.col("label").is_in(classes))
    if labels.height == 0:
        raise Failure(f"reference dataset {name!r} has no image of LAIONet's {len(classes)} classes")
    return reference, labels


def _predict(
    config: PredictionConfig, clip: ClipEncoder, lance: LanceStore, images, label: str, vectors, log
) -> tuple[dict, dict]:
    """Top-k predictions of every configured model on ``images`` ((uid, image, area) stream):
    model -> (kept uids, (n, k) wnids), and the excluded images' counts by problem. timm
    classifiers see the images; CLIP zero-shot classifies the kept images' stored embeddings
    (``vectors(uids) -> (uids, (n, d))``, whose model must be the clip resource's)."""
    from laionlab.laionet import (
        ImageEvaluator,
        ilsvrc_wnids,
        load_timm_classifier,
        zero_shot_classifier,
        zero_shot_predict,
    )

    if not config.clip_zero_shot and not config.timm_models:
        raise Failure("nothing to evaluate: set clip_zero_shot or list timm_models")
    if any(k < 1 for k in config.top_k):
        raise Failure(f"top_k must be positive, got {config.top_k}")
    models = [(m.name, load_timm_classifier(m.name, m.checkpoint)) for m in config.timm_models]
    k = max(config.top_k)
    evaluator = ImageEvaluator(
        models, k=k, batch_size=config.batch_size, min_area=config.min_area, require_rgb=config.require_rgb, log=log
    )
    s = evaluator.run(images, label)
    out = {model: (s.kept, pred) for model, pred in s.predictions.items()}
    if config.clip_zero_shot and s.kept:
        loaded = clip.load()
        uids, emb = vectors(s.kept, loaded.model_id)
        wnids = ilsvrc_wnids()
        out["clip-zero-shot"] = (
            uids,
            zero_shot_predict(emb, zero_shot_classifier(loaded, wnids, config.prompts), wnids, k=k),
        )
    log.info(f"{label}: {len(s.kept)} images usable, excluded {s.problems or 'none'}")
    return out, s.problems


def _prediction_frame(predictions: dict) -> pl.DataFrame:
    """model -> (uids, (n, k) wnids) as one table: model, uid, predicted (list of k wnids)."""
    schema = {"model": pl.String, "uid": pl.String, "predicted": pl.List(pl.String)}
    frames = [
        pl.DataFrame(
            {"model": [model] * len(uids), "uid": list(uids), "predicted": [list(map(str, row)) for row in pred]},
            schema=schema,
        )
        for model, (uids, pred) in predictions.items()
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def _from_frame(frame: pl.DataFrame) -> dict:
    """The inverse of :func:`_prediction_frame`."""
    return {
        model: (group["uid"].to_list(), np.array(group["predicted"].to_list(), dtype=object).reshape(group.height, -1))
        for (model,), group in frame.group_by("model", maintain_order=True)
    }


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[laionet_rows, laion_embeddings],
    kinds={"parquet", "pytorch"},
    pool="gpu",
    description="Top-k ImageNet-class predictions of CLIP zero-shot and the configured timm classifiers on one part's "
    "LAIONet images, after the seed's image filter (a new part classifies only its own images).",
)
def laionet_predictions(
    context: AssetExecutionContext, config: PredictionConfig, clip: ClipEncoder, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.laionet import top_k_hits

    part = context.partition_key
    rows_read = storage_ids(context.instance, laionet_rows.key, [part])
    rows = files.read_parquet("laionet_rows", f"{part}.parquet").select("uid", "wnid", "HEIGHT", "WIDTH")

    def vectors(uids, model_id):
        _check_model(lance, EMBEDDINGS_TABLE, model_id, part)
        return laion_vectors_for(lance, uids, log=context.log)

    predictions, problems = _predict(
        config, clip, lance, _laionet_images(files, rows), f"LAIONet {part}", vectors, context.log
    )
    files.write_parquet(_prediction_frame(predictions), "laionet_predictions", f"{part}.parquet")
    k = min(config.top_k)
    top = top_k_hits(predictions, dict(zip(rows["uid"], rows["wnid"])), k)
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "laionet_rows": rows.height,
            "images_usable": max((len(u) for u, _ in predictions.values()), default=0),
            "excluded": problems,
            "laionet_rows_read": rows_read.get(part, 0),
            "per_model": markdown_table(top),
            "accuracy_plot": bar_plot(
                top["model"].to_list(),
                top[f"top{k}_accuracy_unweighted"].fill_nan(0).to_list(),
                f"{part}: top-{k} accuracy over its LAIONet images",
                "accuracy",
                files.path("laionet_predictions", f"{part}.png"),
            ),
        }
    )


def _parts_predictions(context: AssetExecutionContext, files: FileStore, parts: list[str]) -> tuple[dict, dict]:
    """Every part's laionet_predictions in one model -> (uids, preds) map and the summed
    exclusions, after checking each was made from the part's current laionet_rows."""
    rows_now = storage_ids(context.instance, laionet_rows.key, parts)
    made = latest_by_partition(context.instance, laionet_predictions.key, parts)
    stale = [
        p
        for p in parts
        if p not in made or made[p].asset_materialization.metadata["laionet_rows_read"].value != rows_now.get(p)
    ]
    if stale:
        raise Failure(
            f"laionet_predictions is missing, or older than laionet_rows, for {', '.join(stale)}: "
            "materialise laionet_predictions for them"
        )
    frame = pl.concat([files.read_parquet("laionet_predictions", f"{p}.parquet") for p in parts])
    problems: dict[str, int] = {}
    for p in parts:
        for key, n in made[p].asset_materialization.metadata["excluded"].value.items():
            problems[key] = problems.get(key, 0) + int(n)
    return _from_frame(frame), problems


def _reference_predictions(
    context, config: PredictionConfig, reference_dataset: str, clip, catalog, files, lance, reference, wanted: set[str]
):
    """The reference set's predictions under ``config``, computed once per (config, reference
    embeddings, wanted images) and kept under laionet_accuracy/reference/ for the next summary."""
    import hashlib

    embedded = storage_ids(context.instance, reference_embeddings.key, [reference_dataset]).get(reference_dataset, 0)
    key = json.dumps([config.model_dump(), reference_dataset, embedded, sorted(wanted)], sort_keys=True)
    name = hashlib.sha1(key.encode()).hexdigest()[:16]
    if files.exists("laionet_accuracy", "reference", f"{name}.parquet"):
        context.log.info(f"{reference_dataset}: predictions reused from an earlier run with the same models and images")
        cached = files.read_parquet("laionet_accuracy", "reference", f"{name}.parquet")
        return _from_frame(cached), files.read_json("laionet_accuracy", "reference", f"{name}.excluded.json")

    def vectors(uids, model_id):
        _check_model(lance, REFERENCE_TABLE, model_id, reference_dataset, part_column="dataset")
        ref = reference.filter(pl.col("uid").is_in(uids))
        return ref["uid"].to_list(), stack_vectors(ref["emb"])

    predictions, problems = _predict(
        config,
        clip,
        lance,
        _reference_images(catalog, reference_dataset, wanted),
        reference_dataset,
        vectors,
        context.log,
    )
    # the exclusions first: the predictions file is what says the entry is complete
    files.write_json(problems, "laionet_accuracy", "reference", f"{name}.excluded.json")
    files.write_parquet(_prediction_frame(predictions), "laionet_accuracy", "reference", f"{name}.parquet")
    return predictions, problems


@profiled("laionet_accuracy")
class AccuracyConfig(Config):
    reference_dataset: str = Field(description="labelled reference dataset (ImageNet-val in the paper; labels = wnids)")


@asset(
    group_name=GROUP,
    deps=[laionet, every_partition(laionet_predictions), every_partition(reference_embeddings)],
    kinds={"parquet", "pytorch"},
    pool="gpu",
    description="Top-k accuracy of CLIP zero-shot and configured timm classifiers on LAIONet (the parts' "
    "laionet_predictions) and on a labelled reference set restricted to LAIONet's classes (predicted with the same "
    "models): per-class recall with Wilson intervals, equally weighted and LAION weighted "
    "(each class's share of LAIONet).",
)
def laionet_accuracy(
    context: AssetExecutionContext,
    config: AccuracyConfig,
    clip: ClipEncoder,
    catalog: DatasetCatalog,
    files: FileStore,
    lance: LanceStore,
) -> MaterializeResult:
    from laionlab.laionet import accuracy_tables, keep_uids, laion_weights

    parts = registered(context, laion_part)
    params = require_same_params(context, laionet_predictions.key.to_user_string(), parts)  # one model set and filter
    predict = PredictionConfig(**params) if params else PredictionConfig()
    net = files.read_parquet("laionet", "laionet.parquet").select("uid", "wnid")
    classes = sorted(net["wnid"].unique().to_list())
    reference, ref_labels = _accuracy_reference(lance, config.reference_dataset, classes)
    laion, laion_problems = _parts_predictions(context, files, parts)
    laion = keep_uids(laion, net["uid"].to_list())
    ref, ref_problems = _reference_predictions(
        context,
        predict,
        config.reference_dataset,
        clip,
        catalog,
        files,
        lance,
        reference,
        set(ref_labels["uid"].to_list()),
    )
    predictions = {"LAIONet": laion, config.reference_dataset: ref}
    truth = {
        "LAIONet": dict(zip(net["uid"], net["wnid"])),
        config.reference_dataset: dict(zip(ref_labels["uid"], ref_labels["label"])),
    }
    weights = laion_weights(dict(net.group_by("wnid").len().iter_rows()))
    per_class, table = accuracy_tables(predictions, truth, classes, weights, predict.top_k)
    files.write_parquet(per_class, "laionet_accuracy", "per_class.parquet")
    files.write_parquet(table, "laionet_accuracy", "summary.parquet")
    excluded = {"LAIONet": laion_problems, config.reference_dataset: ref_problems}
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "prediction_params": params,
            "parts_seen": ", ".join(parts),
            **_accuracy_metadata(table, len(classes), excluded, min(predict.top_k), files),
        }
    )


def _accuracy_metadata(table: pl.DataFrame, classes: int, excluded: dict, k: int, files: FileStore) -> dict:
    """laionet_accuracy's metadata on :func:`laionlab.laionet.accuracy_tables`' summary
    ``table``: the table, the number of classes, the excluded images and a plot of the top-k
    accuracies (``k`` the smallest configured)."""
    top1 = table.filter((pl.col("k") == k))
    return {
        "summary": markdown_table(table.with_columns(pl.col("accuracy").round(4), pl.col("se").round(4))),
        "classes": classes,
        "excluded_images": json.dumps(excluded),
        "accuracy_plot": bar_plot(
            [f"{r['model']}\n{r['dataset']}\n{r['weighting']}" for r in top1.iter_rows(named=True)],
            top1["accuracy"].to_list(),
            f"top-{k} accuracy",
            "accuracy",
            files.path("laionet_accuracy", "accuracy.png"),
        ),
    }


# --- caption index and nearest-caption ImageNet (the paper's Section 4.3) -------------------


@profiled("caption_index")
class CaptionIndexConfig(Config):
    max_memory: str = Field(
        "16GB", description="memory budget of the index (the seed: 16 GB for 413,871,335 vectors via autofaiss)"
    )
    flat_max_rows: int = Field(100_000, ge=1, description="exact IndexFlatIP up to this many captions")
    ivf_flat_max_rows: int | None = Field(
        None,
        ge=1,
        description="IVF-Flat only below this many captions (autofaiss: 1000000); default: while it fits max_memory",
    )
    nprobe: int = Field(32, ge=1, description="IVF lists probed per query")
    rebuild: bool = Field(False, description="retrain from scratch instead of appending new parts")
    seed: int = Field(0)


def _text_vectors(lance: LanceStore, part: str) -> tuple[list[str], np.ndarray, set[str]]:
    query = lance.tables().part_query(EMBEDDINGS_TABLE, part, ["uid", "text_emb", "model"])
    uids, blocks, models = [], [], set()
    for batch in query.to_batches(batch_size=65_536):
        got, X = read_vectors([batch], column="text_emb")
        uids.extend(got)
        blocks.append(X)
        models.update(batch.column("model").to_pylist())
    return uids, (np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)), models


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_embeddings)],
    kinds={"faiss"},
    description="A faiss inner-product index over the caption text embeddings of all parts: exact for small "
    "tables, else IVF-PQ chosen under a memory budget (autofaiss's rule, as the seed built its 413M-vector index), "
    "trained once and appended to as parts arrive.",
)
def caption_index(
    context: AssetExecutionContext, config: CaptionIndexConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.neighbours.index_parts import parse_bytes, update_index

    with library_errors():
        budget = parse_bytes(config.max_memory, "max_memory")
    parts = registered(context, laion_part)
    tables = lance.tables()
    counts = {p: tables.count_part(EMBEDDINGS_TABLE, p) for p in parts}
    with library_errors("caption_index"):
        update = update_index(
            files.path("caption_index"),
            counts,
            lambda p: _text_vectors(lance, p),
            budget=budget,
            flat_max_rows=config.flat_max_rows,
            ivf_flat_max_rows=config.ivf_flat_max_rows,
            nprobe=config.nprobe,
            seed=config.seed,
            rebuild=config.rebuild,
            log=context.log,
        )
    if update.state is None:
        raise Failure(f"laion_embeddings has no rows for parts {parts}: nothing to index")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            "parts_seen": ", ".join(parts),
            "index": update.state["key"],
            "vectors": update.state["next_id"],
            "parts_added": ", ".join(update.added) or "none (up to date)",
            "rebuilt": update.reason if update.rebuilt else "no",
            "text_model": update.state["model"],
            "budget_bytes": budget,
        }
    )


@profiled("nearest_caption_imagenet")
class NearestCaptionConfig(Config):
    captions_dataset: str = Field(
        description="ImageNet-Captions-style catalog dataset (image path, caption, wnid label)"
    )
    nprobe: int | None = Field(None, ge=1, description="IVF lists probed (default: the index's)")
    n_per_class: int = Field(100, ge=2, description="recreated-dataset images per class")
    reference_per_class: int | None = Field(None, ge=2, description="original images per class (default all)")
    sampling: SampleMode = Field(
        "random",
        description="random (seeded per class) or seed_compat (the first n of each class; 'first' is an alias)",
    )
    min_pairs: int = Field(7, ge=2)
    hist_pairs_per_class: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    seed: int = Field(0)


def _captioned_items(catalog: DatasetCatalog, name: str):
    """The items (:func:`laionlab.io.reference.list_items`) of catalog dataset ``name``; a
    Failure when it has no captions or no labels."""
    from laionlab.io.reference import list_items

    items = list_items(catalog.get(name))
    if all(c is None for c in items.captions) or all(l is None for l in items.labels):
        raise Failure(
            f"dataset {name!r} needs captions and labels (a parquet entry with caption_column and label_column)"
        )
    return items


def _index_clip(clip: ClipEncoder, files: FileStore):
    """The clip resource's loaded model; a Failure unless caption_index holds its text embeddings."""
    loaded, index_model = clip.load(), files.read_json("caption_index", "state.json")["model"]
    if loaded.model_id != index_model:
        raise Failure(
            f"caption_index holds text embeddings of {index_model}, the clip resource is {loaded.model_id}: "
            "same model needed"
        )
    return loaded


def _neighbour_check(no_neighbour: int, captions: int, nprobe: int | None) -> AssetCheckResult:
    """WARN when some captions found no neighbour (faiss id -1: the probed IVF lists were empty
    of them); they are left out of the recreated dataset and counted."""
    return AssetCheckResult(
        check_name="every_caption_has_a_neighbour",
        passed=no_neighbour == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "no_neighbour": no_neighbour,
            "captions": captions,
            "nprobe": nprobe if nprobe is not None else "the index's",
            "advice": "raise nprobe" if no_neighbour else "none",
        },
    )


def _nearest_captions(
    loaded, files: FileStore, name: str, items, config: NearestCaptionConfig
) -> tuple[pl.DataFrame, int]:
    """The nearest LAION caption of each captioned, labelled item (rows without a neighbour
    dropped and counted)."""
    from laionlab.embed.encode import encode_texts
    from laionlab.laionet import nearest_caption_rows
    from laionlab.neighbours.index_parts import load_index, read_id_map

    keep = [i for i, (c, l) in enumerate(zip(items.captions, items.labels)) if c and l]
    captions = [items.captions[i] for i in keep]
    queries = encode_texts(loaded, captions, config.batch_size)
    index, state = load_index(files.path("caption_index"))
    scores, ids = index.search(queries, 1, nprobe=config.nprobe)
    id_map = read_id_map(files.path("caption_index"), state)
    with library_errors("nearest_caption_imagenet"):
        return nearest_caption_rows(
            [f"{name}:{i:09d}" for i in keep], captions, [items.labels[i] for i in keep], scores, ids, id_map
        )


@asset(
    group_name=GROUP,
    deps=[caption_index, every_partition(reference_embeddings)],
    kinds={"parquet", "faiss"},
    pool="gpu",
    check_specs=[
        AssetCheckSpec(
            "every_caption_has_a_neighbour",
            asset="nearest_caption_imagenet",
            description="every caption found a LAION caption in caption_index's probed lists (else: raise nprobe)",
        )
    ],
    description="For each caption of an ImageNet-Captions-style dataset, the most similar LAION caption: a "
    "LAION-recreated ImageNet, and its intra-class image similarity vs the original images (the paper's Section 4.3).",
)
def nearest_caption_imagenet(
    context: AssetExecutionContext,
    config: NearestCaptionConfig,
    clip: ClipEncoder,
    catalog: DatasetCatalog,
    files: FileStore,
    lance: LanceStore,
) -> MaterializeResult:
    from laionlab.laionet import pairs_with_vectors, recreated_pairs

    name = config.captions_dataset
    items = _captioned_items(catalog, name)
    loaded = _index_clip(clip, files)
    found, no_neighbour = _nearest_captions(loaded, files, name, items, config)
    files.write_parquet(found, "nearest_caption_imagenet", "recreated.parquet")
    recreated = recreated_pairs(found)
    recreated, laion_emb = pairs_with_vectors(
        recreated, *laion_vectors_for(lance, recreated["uid"].to_list(), log=context.log)
    )
    original = labelled_reference(lance, name)
    result = compare_sets(
        laion_emb, recreated["wnid"].to_numpy(), stack_vectors(original["emb"]), original["label"].to_numpy(), config
    )
    files.write_parquet(result.per_class, "nearest_caption_imagenet", "per_class.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "parts_seen": parts_seen_of(context.instance, "caption_index"),
            "captions": found.height + no_neighbour,
            "no_neighbour": no_neighbour,
            "distinct_laion_rows": recreated.height,
            "mean_caption_similarity": float(found["caption_similarity"].mean()) if found.height else float("nan"),
            **_summary_metadata(result.summary),
            "per_class": markdown_table(result.per_class.head(50)),
            "distribution": histogram(
                None,
                "pairwise cosine similarity",
                "intra-class similarity: recreated vs original",
                files.path("nearest_caption_imagenet", "hist.png"),
                series={"LAION (nearest captions)": result.pairs_a, name: result.pairs_b},
            ),
        },
        check_results=[_neighbour_check(no_neighbour, found.height + no_neighbour, config.nprobe)],
    )


# --- laionet_gallery ------------------------------------------------------------------------


@profiled("laionet_gallery")
class GalleryConfig(Config):
    classes: int = Field(8, ge=1, le=40, description="classes shown (the largest LAIONet classes)")
    per_class: int = Field(6, ge=1, le=16, description="images per class, a seeded choice among its rows")
    seed: int = Field(0, ge=0)


@asset(
    group_name=GROUP,
    deps=[laionet],
    kinds={"jpeg"},
    description="What LAIONet looks like: a contact sheet of the largest classes, a seeded few images each with "
    "their captions, read back from the parts' shards (only the shown images are read).",
)
def laionet_gallery(context: AssetExecutionContext, config: GalleryConfig, files: FileStore) -> MaterializeResult:
    from laionlab.gallery import contact_sheet, fetch_thumbnails, pick, sheet_rows

    net = files.read_parquet("laionet", "laionet.parquet").select("uid", "wnid", "TEXT")
    if net.height == 0:
        raise Failure("laionet has no rows: nothing to show (lower laionet_rows.threshold or add parts)")
    synsets = _synsets(files).select("wnid", "name")
    shown = pick(net, "wnid", config.classes, config.per_class, config.seed)
    images = fetch_thumbnails(lambda part: image_shards(files, part), shown["uid"].to_list())
    rows = sheet_rows(shown, "wnid", "TEXT", dict(synsets.iter_rows()))
    fig = contact_sheet(rows, images, f"LAIONet: {len(rows)} largest classes, {config.per_class} images each")
    table = (
        shown.group_by("wnid", maintain_order=True)
        .len()
        .rename({"len": "shown"})
        .join(net.group_by("wnid").len().rename({"len": "rows"}), on="wnid")
        .join(synsets, on="wnid", how="left")
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("laionet_gallery", "laionet.jpg"), rows, images),
            "classes_shown": markdown_table(table),
        }
    )


assets = [
    ilsvrc_synsets,
    lemma_matches,
    synset_similarity,
    laionet_rows,
    laionet,
    laionet_gallery,
    laionet_intra_class_similarity,
    laionet_predictions,
    laionet_accuracy,
    caption_index,
    nearest_caption_imagenet,
]
