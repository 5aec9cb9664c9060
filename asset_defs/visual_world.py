"""Visual world (seed 000, Roth & Hebart, "How to sample the world for understanding the
visual system", CCN 2025): reference datasets, the photo classifier, LAION-natural and its
k-means clusters.
"""

from pathlib import Path

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from asset_defs.ingest import EMBEDDINGS_TABLE, laion_embeddings
from asset_defs.metadata import markdown_table
from asset_defs.partitions import dataset, laion_part
from laionlab.embed.encode import EncodeStats, encode_dataset
from laionlab.filter.photo import (
    NON_PHOTO_PROMPTS,
    PHOTO_PROMPTS,
    LinearClassifier,
    import_classifier,
    keep_natural,
    train_photo_classifier,
    zero_shot_classifier,
)
from laionlab.io.lance import read_vectors, reference_batch, reference_schema
from laionlab.io.reference import ReferenceImages, list_items
from resources import ClipEncoder, DatasetCatalog, FileStore, LanceStore

REFERENCE_TABLE = "reference_embeddings"
GROUP = "visual_world"


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    kinds={"lancedb", "pytorch"},
    pool="gpu",
    description="Image embeddings of one catalog reference dataset (THINGS, NSD, demo sets...) "
    "with the same ClipEncoder as LAION, in the LanceDB table reference_embeddings.",
)
def reference_embeddings(
    context: AssetExecutionContext, catalog: DatasetCatalog, clip: ClipEncoder, lance: LanceStore
) -> MaterializeResult:
    name = context.partition_key
    spec = catalog.get(name)
    items = list_items(spec)
    if not items.sources:
        raise Failure(f"reference dataset {name!r} ({spec.path}) has no images")
    loaded = clip.load()
    schema = reference_schema(loaded.embed_dim)
    lance.tables().ensure(REFERENCE_TABLE, schema)
    stats = EncodeStats()
    index = {f"{name}:{i:09d}": i for i in range(len(items.sources))}

    def batches():
        for b in encode_dataset(loaded, ReferenceImages(spec, loaded.preprocess), clip.batch_size, clip.num_workers, stats):
            rows = [index[u] for u in b.uid]
            labels = [items.labels[i] for i in rows]
            sources = [items.sources[i] for i in rows]
            yield reference_batch(b.uid, name, loaded.model_id, labels, sources, b.image_emb, b.image_norm)

    written = lance.tables().replace_part(REFERENCE_TABLE, name, batches(), schema, part_column="dataset")
    labels = pl.DataFrame({"label": items.labels}).group_by("label").agg(pl.len().alias("images")).sort("images", descending=True)
    return MaterializeResult(
        metadata={
            "rows": written.rows,
            "kind": spec.kind,
            "source": spec.path,
            "model_id": loaded.model_id,
            "images_per_second": round(stats.images_per_second, 1),
            "labels": markdown_table(labels, max_rows=20),
        }
    )


class PhotoClassifierConfig(Config):
    labels_path: str | None = Field(
        None, description="parquet with URL or uid and is_photo to train the seed's LogisticRegression on"
    )
    import_path: str | None = Field(None, description="an existing linear classifier (.npz/.json or .skops)")
    import_input: str = Field("raw", description="feature space of the imported classifier: raw or unit")
    C: float = Field(1.0, gt=0, description="inverse L2 strength (seed: 1.0)")
    cv_folds: int = Field(5, ge=2)


def _laion_features(lance: LanceStore, where: str | None = None, raw: bool = True) -> tuple[list[str], np.ndarray]:
    table = lance.tables().open(EMBEDDINGS_TABLE)
    query = table.search().limit(None).select(["uid", "image_emb", "image_norm"])
    if where:
        query = query.where(where)
    return read_vectors(query.to_batches(batch_size=65_536), norm_column="image_norm" if raw else None)


@asset(
    group_name=GROUP,
    deps=[laion_embeddings],
    kinds={"scikit-learn", "numpy"},
    description="The LAION-natural photo classifier as plain arrays (coef, intercept; never a pickle): "
    "trained like the seed's LogisticRegression when labels are configured, else zero-shot from text prompts.",
)
def photo_classifier(
    context: AssetExecutionContext, config: PhotoClassifierConfig, clip: ClipEncoder, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    if config.import_path:
        clf = import_classifier(config.import_path, input=config.import_input)
    elif config.labels_path:
        labels = pl.read_parquet(config.labels_path)
        key = "uid" if "uid" in labels.columns else "URL"
        if key not in labels.columns or "is_photo" not in labels.columns:
            raise Failure(f"{config.labels_path} needs columns (uid or URL) and is_photo; has {labels.columns}")
        uids, X = _laion_features(lance, raw=True)
        frame = pl.DataFrame({"uid": uids, "row": np.arange(len(uids))})
        if key == "URL":
            meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet").select("uid", "URL") for p in _parts(frame)])
            frame = frame.join(meta, on="uid")
        joined = frame.join(labels.select(key, "is_photo"), on=key, how="inner")
        if joined.height < 10:
            raise Failure(f"only {joined.height} labelled rows of {config.labels_path} have embeddings; need >= 10")
        clf = train_photo_classifier(X[joined["row"].to_numpy()], joined["is_photo"].to_numpy(), C=config.C, cv=config.cv_folds)
    else:
        loaded = clip.load()
        import torch

        with torch.no_grad():
            enc = lambda prompts: torch.nn.functional.normalize(  # noqa: E731
                loaded.model.encode_text(loaded.tokenizer(list(prompts)).to(loaded.device)).float(), dim=-1
            ).cpu().numpy()
            clf = zero_shot_classifier(enc(PHOTO_PROMPTS), enc(NON_PHOTO_PROMPTS))
        clf.info["model_id"] = loaded.model_id
    npz, meta = clf.save(files.path("photo_classifier", "classifier"))
    return MaterializeResult(
        metadata={
            "source": clf.source,
            "input": clf.input,
            "dim": clf.dim,
            "path": str(npz),
            **{k: v for k, v in clf.info.items() if isinstance(v, (int, float, str))},
        }
    )


def _parts(frame: pl.DataFrame) -> list[str]:
    return sorted({u.split(":")[0] for u in frame["uid"].to_list()})


def load_photo_classifier(files: FileStore) -> LinearClassifier:
    return LinearClassifier.load(files.path("photo_classifier", "classifier"))


class LaionNaturalConfig(Config):
    threshold: float = Field(0.75, ge=0, le=1, description="keep P(photo) > threshold (seed analyses: 0.75; code default 0.65)")
    remove_nsfw: bool = Field(True, description="drop rows whose NSFW column says NSFW")


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[photo_classifier, laion_embeddings],
    kinds={"parquet"},
    description="LAION-natural: the uids of a part whose photo probability is above the threshold (0.75), NSFW removed.",
)
def laion_natural(
    context: AssetExecutionContext, config: LaionNaturalConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    part = context.partition_key
    clf = load_photo_classifier(files)
    uids, X = _laion_features(lance, where=f"part = '{part}'", raw=clf.input == "raw")
    if not uids:
        raise Failure(f"laion_embeddings has no rows for part {part!r}; materialise it first")
    proba = clf.predict_proba(X)
    frame = pl.DataFrame({"uid": uids, "photo_proba": proba.astype(np.float32)})
    nsfw = 0
    if config.remove_nsfw:
        meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "NSFW")
        frame = frame.join(meta, on="uid", how="left")
        flagged = frame["NSFW"].fill_null("").str.to_uppercase() == "NSFW"
        nsfw = int(flagged.sum())
        frame = frame.filter(~flagged).drop("NSFW")
    kept = frame.filter(pl.Series(keep_natural(frame["photo_proba"].to_numpy(), config.threshold)))
    files.write_parquet(kept.sort("uid"), "laion_natural", f"{part}.parquet")
    return MaterializeResult(
        metadata={
            "rows_in": len(uids),
            "kept": kept.height,
            "fraction_kept": round(kept.height / len(uids), 4),
            "nsfw_removed": nsfw,
            "threshold": config.threshold,
            "classifier": clf.source,
        }
    )


assets = [reference_embeddings, photo_classifier, laion_natural]
