"""Readers shared by the pipelines: of the LanceDB tables (LAION vectors: all of a part, a
sample across parts, by uid; reference-dataset vectors; the one-model guard every LAION
reader runs first), of the per-part keep flags the curation steps write (``KEEP_FLAGS``,
``part_flags``) and of a retrieval target's own shards (``retrieved_shards``). Pipelines
import these, never each other."""

import logging

import numpy as np
import polars as pl
from dagster import Failure

from asset_defs.ingest import EMBEDDINGS_TABLE, REFERENCE_TABLE
from laionlab.io.lance import equals, read_vectors, uid_filters
from laionlab.progress import Progress
from resources import FileStore, LanceStore

# The per-part keep decisions of the curation steps, read as files (their modules are not
# imported): method -> (asset folder holding <part>.parquet, its keep-flag column; None: the
# file lists the rows the method drops). curation_agreement compares them; subset_export
# exports the kept rows of some.
KEEP_FLAGS: dict[str, tuple[str, str | None]] = {
    "datacomp_basic": ("datacomp_flags", "basic"),
    "datacomp_clip_threshold": ("datacomp_flags", "clip_score_threshold"),
    "datacomp_laion2b": ("datacomp_flags", "laion2b"),
    "datacomp_text": ("datacomp_flags", "text_based"),
    "seed004_dedup": ("laion_dedup", "keep"),
    "dbp": ("dbp_selection", "kept"),
    "metaclip_cap": ("concept_balanced", "keep"),
    "exact_dedup": ("exact_duplicates", None),
}


def retrieved_shards(files: FileStore, target: str) -> list[str]:
    """The tar shards of retrieved_images[target] (the target's rows of parts never
    downloaded), or none before its first download."""
    if not files.has_version("retrieved_images", target):
        return []
    return files.current_version("retrieved_images", target).glob("*.tar")


def part_flags(files: FileStore, source: tuple[str, str | None], part: str) -> pl.DataFrame | None:
    """uid, keep of one ``KEEP_FLAGS`` source on ``part`` from its stored file; None when the
    part has none. A source listing dropped rows (column None) gives just those, keep False:
    every other row of the part is kept."""
    folder, column = source
    if not files.exists(folder, f"{part}.parquet"):
        return None
    if column is None:
        return files.read_parquet(folder, f"{part}.parquet", columns=["uid"]).with_columns(pl.lit(False).alias("keep"))
    return files.read_parquet(folder, f"{part}.parquet", columns=["uid", column]).rename({column: "keep"})


def require_one_model(lance: LanceStore) -> str | None:
    """The one model whose vectors laion_embeddings holds (None for an empty table). Readers
    call it first: vectors of two models side by side (a part re-embedded with another model of
    the same dimension) are not comparable, so a mixed table is refused, naming the models and
    their parts. Two index lookups on the model column, whatever the table's size."""
    tables = lance.tables()
    if not tables.exists(EMBEDDINGS_TABLE):
        return None
    table = tables.open(EMBEDDINGS_TABLE)
    head = table.search().limit(1).select(["model"]).to_arrow()
    if head.num_rows == 0:
        return None
    model = head["model"][0].as_py()
    if not tables.count(EMBEDDINGS_TABLE, equals("model", model, negate=True)):
        return model
    others = pl.from_arrow(
        table.search().limit(None).select(["model", "part"]).where(equals("model", model, negate=True)).to_arrow()
    )
    mine = tables.count(EMBEDDINGS_TABLE, equals("model", model))
    summary = (
        others.group_by("model")
        .agg(pl.len().alias("rows"), pl.col("part").unique().sort().alias("parts"))
        .sort("model")
    )
    listed = "; ".join(
        f"{m}: {n:,} rows in {', '.join(p[:5])}{' ...' if len(p) > 5 else ''}" for m, n, p in summary.iter_rows()
    )
    raise Failure(
        f"{EMBEDDINGS_TABLE} mixes models: {model}: {mine:,} rows; {listed}. Vectors of different models are not "
        "comparable: re-embed those parts with one model (laion_embeddings), "
        "or use a separate LAIONLAB_LANCE_URI per model."
    )


def laion_vectors(lance: LanceStore, part: str | None = None, raw: bool = True) -> tuple[list[str], np.ndarray]:
    """uids and (n, d) image vectors of one part's laion_embeddings rows (every part's without
    ``part``; raw features by default, unit vectors with raw=False), streamed, in uid order."""
    require_one_model(lance)
    return _laion_vectors(lance, part, raw)


def _laion_vectors(lance: LanceStore, part: str | None, raw: bool) -> tuple[list[str], np.ndarray]:
    """:func:`laion_vectors` for a caller that has run ``require_one_model`` already."""
    columns = ["uid", "image_emb", "image_norm"]
    tables = lance.tables()
    query = (
        tables.part_query(EMBEDDINGS_TABLE, part, columns)
        if part
        else tables.open(EMBEDDINGS_TABLE).search().limit(None).select(columns)
    )
    uids, X = read_vectors(query.to_batches(batch_size=65_536), norm_column="image_norm" if raw else None)
    # LanceDB scans in storage order, which a merge does not keep (two writes of the same part
    # came back in different orders): uid order gives k-means & co the same input for the same rows
    order = pl.Series(uids, dtype=pl.String).arg_sort().to_numpy()
    return [uids[i] for i in order], X[order]


def sampled_part_vectors(lance: LanceStore, part: str, n_rows: int, rows: np.ndarray, raw: bool = False) -> np.ndarray:
    """Vectors of the part's rows at positions ``rows`` of its uid order, in that order (unit,
    or ``raw`` features). Only the part's uids are scanned (the part index picks them); the
    chosen rows' vectors are fetched by row id, so an unsampled row's vector is never read."""
    tables = lance.tables()
    index = tables.part_query(EMBEDDINGS_TABLE, part, ["uid"]).with_row_id(True).to_polars().sort("uid")
    if index.height != n_rows:
        raise Failure(
            f"laion_embeddings[{part}] changed while it was being sampled "
            f"({index.height} rows, {n_rows} before): run again"
        )
    want = index[rows]
    taken = (
        tables.open(EMBEDDINGS_TABLE).take_row_ids(want["_rowid"].to_list()).select(["uid", "image_emb", "image_norm"])
    )
    uids, X = read_vectors(taken.to_batches(), norm_column="image_norm" if raw else None)
    order = pl.Series(uids, dtype=pl.String).arg_sort().to_numpy()
    if [uids[i] for i in order] != want["uid"].to_list():
        raise Failure(f"laion_embeddings[{part}] changed while it was being sampled: run again")
    return X[order]


def sample_laion_vectors(
    context, lance: LanceStore, parts: list[str], size: int, seed: int, raw: bool = False
) -> tuple[np.ndarray, list[int]]:
    """A ``size``-row sample of laion_embeddings over ``parts``, each part contributing in
    proportion to its rows (:func:`laionlab.cluster.sample_across_parts`), reading only the
    sampled rows' vectors: memory and reads are set by ``size``, not by the table. Returns
    the sample and the parts' row counts."""
    from laionlab.cluster import sample_across_parts

    require_one_model(lance)
    counts = [lance.tables().count_part(EMBEDDINGS_TABLE, p) for p in parts]
    if not sum(counts):
        raise Failure(
            "laion_embeddings has no rows in the registered laion_part partitions: materialise laion_embeddings"
        )
    blocks, progress = [], Progress("sampling LAION vectors", len(parts), log=context.log, unit="parts")
    for part, n, rows in zip(parts, counts, sample_across_parts(counts, size, seed)):
        if len(rows):
            blocks.append(
                _laion_vectors(lance, part, raw)[1]
                if len(rows) == n
                else sampled_part_vectors(lance, part, n, rows, raw)
            )
        progress.update()
    progress.close()
    return np.concatenate(blocks), counts


def laion_vectors_for(
    lance: LanceStore, uids: list[str], column: str = "image_emb", log: logging.Logger | None = None, raw: bool = False
) -> tuple[list[str], np.ndarray]:
    """Unit ``column`` vectors of the given LAION uids that have a row in laion_embeddings (a
    uid whose image failed to download has none), in uid order; ``raw`` scales image vectors
    back by their stored norms (the photo classifier's features). Only those uids' rows are
    read (the uid index answers the lookups). Progress over the parts goes to ``log``."""
    found, vectors = laion_columns_for(lance, uids, [column], log, raw=raw)
    return found, vectors[column]


def laion_columns_for(
    lance: LanceStore, uids: list[str], columns: list[str], log: logging.Logger | None = None, raw: bool = False
) -> tuple[list[str], dict[str, np.ndarray]]:
    """:func:`laion_vectors_for` for several vector columns in one read: uids and, per column,
    the ``(n, d)`` vectors (unit, or ``raw`` for image_emb) in the same row order."""
    empty = ([], {c: np.zeros((0, 0), np.float32) for c in columns})
    if require_one_model(lance) is None:
        return empty
    table = lance.tables().open(EMBEDDINGS_TABLE)
    by_part: dict[str, list[str]] = {}
    for uid in uids:
        by_part.setdefault(uid.rsplit(":", 1)[0], []).append(uid)
    found, blocks = [], {c: [] for c in columns}
    progress = Progress(f"reading {', '.join(columns)} of {len(uids):,} uids", len(by_part), log=log, unit="parts")
    for part, members in sorted(by_part.items()):
        for clause in uid_filters(members):
            norms = ["image_norm"] if raw and "image_emb" in columns else []
            query = (
                table.search()
                .limit(None)
                .select(["uid", *columns, *norms])
                .where(f"{equals('part', part)} AND {clause}")
            )
            batches = list(query.to_batches(batch_size=65_536))
            got = [u for b in batches for u in b.column("uid").to_pylist()]
            if got:
                found.extend(got)
                for c in columns:
                    blocks[c].append(
                        read_vectors(batches, column=c, norm_column="image_norm" if raw and c == "image_emb" else None)[
                            1
                        ]
                    )
        progress.update()
    progress.close()
    if not found:
        return empty
    # uid order, not LanceDB's storage order (a merge does not keep it): seeded samplers downstream
    # then draw the same rows from the same data
    order = pl.Series(found, dtype=pl.String).arg_sort().to_numpy()
    return [found[i] for i in order], {c: np.concatenate(blocks[c])[order] for c in columns}


def reference_vectors(lance: LanceStore, name: str, raw: bool = True) -> np.ndarray:
    """(n, d) image vectors of a reference dataset in the dataset's own order (uid order, so row
    i is image i of the catalog listing); raw features by default, unit vectors with raw=False."""
    query = lance.tables().part_query(REFERENCE_TABLE, name, ["uid", "image_emb", "image_norm"], part_column="dataset")
    uids, X = read_vectors(query.to_batches(batch_size=65_536), norm_column="image_norm" if raw else None)
    if not uids:
        raise Failure(f"reference_embeddings has no rows for dataset {name!r}; materialise it first")
    return X[np.argsort(np.array(uids))]


def labelled_reference(lance: LanceStore, name: str) -> pl.DataFrame:
    """uid, label and unit image vector (``emb``) of a reference dataset, in dataset order;
    refuses a dataset without labels."""
    query = lance.tables().part_query(
        REFERENCE_TABLE, name, ["uid", "label", "source", "image_emb"], part_column="dataset"
    )
    table = query.to_arrow()
    if table.num_rows == 0:
        raise Failure(
            f"reference_embeddings has no rows for dataset {name!r}; materialise reference_embeddings[{name}] first"
        )
    frame = pl.from_arrow(table).sort("uid")
    if frame["label"].null_count() == frame.height:
        raise Failure(
            f"reference dataset {name!r} has no labels: LAIONet comparisons need a labelled set (an image_folder whose "
            "folders are wnids, or a parquet entry with label_column)"
        )
    return frame.filter(pl.col("label").is_not_null()).rename({"image_emb": "emb"})


def stack_vectors(column: pl.Series) -> np.ndarray:
    return np.asarray(column.to_list(), np.float32)
