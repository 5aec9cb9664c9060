"""Querying the corpus: nearest LAION images to a caption, an image or a vector (issue 20).

``build_image_index`` puts a LanceDB ANN index on ``laion_embeddings.image_emb`` (cosine),
its kind and parameters chosen from the row count (:func:`index_plan`); ``query`` embeds a
text or an image with the open_clip model the table was written with and returns the top-k
rows (uid, part, row, cosine, caption and URL from the part's ``laion_metadata``);
``evaluate_index`` measures recall@k against exact search and the query latency. The command
line (``python -m laionlab.query "a red bird" -k 20``) takes its defaults from the same
LAIONLAB_* variables as the code location (:mod:`laionlab.settings`). No Dagster import.

The index rule (LanceDB's documentation, docs.lancedb.com "Vector Indexing" and the
``lancedb.index.IvfPq`` docstring of lancedb 0.40):

* fewer than ``EXACT_MAX_ROWS`` (100,000) rows: no index. "For datasets around 100K rows or
  fewer ... a vector index is usually unnecessary overhead": LanceDB's flat scan answers
  exactly (recall 1) in milliseconds there.
* from 100,000 rows: ``IVF_PQ`` (LanceDB's default, disk-based) with ``num_partitions =
  round(sqrt(n))`` and ``num_sub_vectors = d / 16`` (``d / 8`` when 16 does not divide ``d``),
  8-bit codes: the documented defaults. PQ codes alone rank coarsely (recall@10 0.38 on a
  LAION-shaped 1M x 512 table, ``benchmarks/query_index.py``), so queries re-rank
  ``refine_factor × k`` candidates on the stored float vectors (there: refine 10 → 0.91,
  20 → 0.96, 30 → 0.98 at ~11 ms median on 2 CPU cores) and probe ``nprobes`` of the
  partitions (recall was the same at 20, 32 and 64: the re-rank, not the probes, limits it).
  ``kind="IVF_HNSW_SQ"`` (an HNSW graph per IVF partition over 8-bit scalar-quantised
  vectors; LanceDB recommends few partitions) is the alternative when memory allows; its
  partitions follow the same sqrt rule.

On a host where torch sees CUDA the IVF (and PQ) training runs there (``accelerator="cuda"``,
LanceDB dispatches it to pylance, which must then be installed; without it the build stays on
the CPU, logged); the index is the same kind either way.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.io.lance import LanceTables, equals

if TYPE_CHECKING:
    from PIL import Image

    from laionlab.embed.model import LoadedClip

log = logging.getLogger(__name__)

__all__ = [
    "EXACT_MAX_ROWS",
    "IndexPlan",
    "IndexReport",
    "build_image_index",
    "evaluate_index",
    "index_plan",
    "query",
    "search_vectors",
    "table_model",
]

TABLE = "laion_embeddings"
COLUMN = "image_emb"
EXACT_MAX_ROWS = 100_000  # LanceDB: no index needed for ~100k rows or fewer
# new rows up to this share of the indexed ones are folded in, not retrained; 0 (default):
# always retrain. Folding 100k rows into a 500k-row IVF_PQ index (LanceDB's optimize()) took
# 15 s instead of 48 s but cut recall@10 from 0.99 to 0.94 (retrained: 0.986); 40k into 200k
# kept 1.0 (benchmarks/query_index.py --grow-parts, README)
RETRAIN_GROWTH = 0.0
# query defaults (benchmarks/query_index.py: recall@10 0.98 at 1M x 512, see README)
NPROBES = 32
REFINE_FACTOR = 30
IndexKind = Literal["auto", "none", "IVF_PQ", "IVF_HNSW_SQ"]
# metadata: part -> its laion_metadata parquet (path or URI), or the rows themselves, or None
MetadataSource = Callable[[str], "str | pl.DataFrame | None"]


@dataclass(frozen=True)
class IndexPlan:
    """Which index ``n`` rows of dimension ``d`` get: ``kind`` ``"none"`` (exact flat search),
    ``"IVF_PQ"`` or ``"IVF_HNSW_SQ"``, with its parameters (None where not used)."""

    kind: str
    rows: int
    dim: int
    num_partitions: int | None = None
    num_sub_vectors: int | None = None
    num_bits: int | None = None
    accelerator: str | None = None

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class IndexReport:
    """What :func:`build_image_index` did: the plan and the build's seconds."""

    plan: IndexPlan
    seconds: float
    dropped: bool = False  # an index from a larger table was removed (exact search now)
    indices: list[str] = field(default_factory=list)
    updated: bool = False  # new rows folded into the existing index (no retraining)
    rows_added: int = 0  # rows the update folded in


def index_plan(rows: int, dim: int, kind: IndexKind = "auto", accelerator: str | None = None) -> IndexPlan:
    """The index rule (module docstring): no index below ``EXACT_MAX_ROWS`` rows, else IVF_PQ
    with ``round(sqrt(rows))`` partitions and ``dim / 16`` sub-vectors (``dim / 8`` when 16
    does not divide it). ``kind`` forces a kind; an index needs at least 256 rows (PQ's
    codebook)."""
    rows = validate.int_at_least("rows", rows, 0)
    dim = validate.int_at_least("dim", dim, 1)
    if kind not in ("auto", "none", "IVF_PQ", "IVF_HNSW_SQ"):
        raise ValueError(f"kind: expected 'auto', 'none', 'IVF_PQ' or 'IVF_HNSW_SQ', got {kind!r}")
    if kind == "none" or (kind == "auto" and rows < EXACT_MAX_ROWS):
        return IndexPlan("none", rows, dim)
    if rows < 256:
        raise ValueError(f"kind={kind!r}: an ANN index needs at least 256 rows, the table has {rows}")
    partitions = max(1, round(math.sqrt(rows)))
    if kind == "IVF_HNSW_SQ":
        return IndexPlan("IVF_HNSW_SQ", rows, dim, num_partitions=partitions, accelerator=accelerator)
    sub_vectors = dim // 16 if dim % 16 == 0 else dim // 8 if dim % 8 == 0 else 1
    return IndexPlan("IVF_PQ", rows, dim, partitions, sub_vectors, 8, accelerator)


def _tables(uri: str | LanceTables, storage_options: dict | None = None) -> LanceTables:
    return uri if isinstance(uri, LanceTables) else LanceTables(uri, storage_options=storage_options or None)


def _dim(tbl) -> int:
    return tbl.schema.field(COLUMN).type.list_size


def _cuda() -> str | None:
    """``"cuda"`` when torch sees a GPU and pylance is installed (LanceDB hands a GPU build to
    pylance, ``pip install pylance``), else None (CPU build, logged when a GPU goes unused)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return None
    if importlib.util.find_spec("lance") is None:
        log.warning("torch sees a GPU but pylance is not installed: building the index on the CPU")
        return None
    return "cuda"


def build_image_index(
    uri: str | LanceTables,
    *,
    kind: IndexKind = "auto",
    accelerator: str | None | Literal["auto"] = "auto",
    table: str = TABLE,
    storage_options: dict | None = None,
    retrain_growth: float = RETRAIN_GROWTH,
) -> IndexReport:
    """Build (or rebuild, replacing it) the cosine ANN index on ``table.image_emb`` by
    :func:`index_plan`. Below the threshold no index is built and one left from a larger table
    is dropped, so every query is exact. ``accelerator``: ``"auto"`` (``"cuda"`` when torch
    sees a GPU), ``"cuda"`` or None (CPU). Raises ValueError on an empty table.

    With ``retrain_growth > 0``, when an index of the planned kind exists and the rows it has
    not seen (new parts) are at most ``retrain_growth`` × the rows it holds, they are folded
    into it without retraining (LanceDB's incremental indexing, ``optimize()``: also compacts
    the table's small files): the cost is the new rows', not the table's, but recall can drop
    (``RETRAIN_GROWTH``'s note), so the default, 0, always retrains."""
    tables = _tables(uri, storage_options)
    tbl = tables.open_to_write(table)
    rows = tbl.count_rows()
    if rows == 0:
        raise ValueError(f"table {table!r} at {tables.uri} has no rows: nothing to index")
    device = _cuda() if accelerator == "auto" else accelerator
    plan = index_plan(rows, _dim(tbl), kind, device)
    start = time.perf_counter()
    existing = [i.name for i in tbl.list_indices() if COLUMN in i.columns]
    if plan.kind == "none":
        for name in existing:
            tbl.drop_index(name)
        return IndexReport(plan, time.perf_counter() - start, dropped=bool(existing))
    update = _fold_in(tbl, plan.kind, retrain_growth)
    if update is not None:
        return IndexReport(plan, time.perf_counter() - start, indices=existing, updated=True, rows_added=update)
    from lancedb.index import HnswSq, IvfPq

    if plan.kind == "IVF_PQ":
        config = IvfPq(
            distance_type="cosine",
            num_partitions=plan.num_partitions,
            num_sub_vectors=plan.num_sub_vectors,
            num_bits=plan.num_bits,
            accelerator=plan.accelerator,
        )
    else:
        config = HnswSq(distance_type="cosine", num_partitions=plan.num_partitions, accelerator=plan.accelerator)
    log.info(f"building {plan.kind} on {table}.{COLUMN}: {plan.params()}")
    tbl.create_index(COLUMN, config=config, replace=True)
    indices = [i.name for i in tbl.list_indices() if COLUMN in i.columns]
    return IndexReport(plan, time.perf_counter() - start, indices=indices)


def _fold_in(tbl, kind: str, retrain_growth: float) -> int | None:
    """Fold the unindexed rows into the existing ``kind`` index when they are few enough
    (:func:`build_image_index`); the rows folded in, or None when the index must be built."""
    if retrain_growth < 0:
        raise ValueError(f"retrain_growth must be >= 0, got {retrain_growth}")
    index = next((i for i in tbl.list_indices() if COLUMN in i.columns), None)
    stats = None if index is None or retrain_growth == 0 else tbl.index_stats(index.name)
    if stats is None or str(stats.index_type) != kind:
        return None
    if stats.num_unindexed_rows > retrain_growth * stats.num_indexed_rows:
        return None
    if stats.num_unindexed_rows:
        log.info(f"folding {stats.num_unindexed_rows} new rows into the {kind} index (no retraining)")
        tbl.optimize()
    return stats.num_unindexed_rows


def index_kind(tbl) -> str:
    """The kind of the vector index on ``image_emb`` (``"none"`` when there is none)."""
    for index in tbl.list_indices():
        if COLUMN in index.columns:
            return str(index.index_type)
    return "none"


def table_model(tbl, table: str = TABLE) -> str:
    """The one model id of the table's rows; ValueError for an empty table or two models."""
    first = tbl.search().select(["model"]).limit(1).to_arrow()
    if first.num_rows == 0:
        raise ValueError(f"table {table!r} has no rows: nothing to query (materialise laion_embeddings first)")
    model = first["model"][0].as_py()
    other = tbl.search().where(equals("model", model, negate=True)).select(["model", "part"]).limit(1).to_arrow()
    if other.num_rows:
        raise ValueError(
            f"table {table!r} holds two models: {model!r} and {other['model'][0].as_py()!r} "
            f"(part {other['part'][0].as_py()!r}); re-embed so one model wrote every part"
        )
    return model


def _unit_rows(name: str, x) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    x = validate.matrix(name, x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name}: a zero vector has no direction to search by cosine")
    return x / norms


def search_vectors(
    tbl,
    queries: np.ndarray,
    k: int,
    *,
    nprobes: int = NPROBES,
    refine_factor: int | None = REFINE_FACTOR,
    columns: Sequence[str] = ("uid", "part", "model"),
) -> tuple[list[pl.DataFrame], np.ndarray]:
    """Top-``k`` rows of the open table ``tbl`` for each of ``queries`` (``(q, d)``), one
    LanceDB query each: the frames (``columns`` + ``score``, the cosine, best first) and each
    query's seconds ``(q,)``. Uses the table's index when it has one (``nprobes`` IVF
    partitions probed, ``refine_factor × k`` candidates re-ranked on the stored vectors), else
    LanceDB's exact flat scan."""
    k = validate.int_at_least("k", k, 1)
    queries = _unit_rows("queries", queries)
    dim = _dim(tbl)
    if queries.shape[1] != dim:
        raise ValueError(f"queries: dimension {queries.shape[1]}, the table's {COLUMN} has dimension {dim}")
    frames, seconds = [], np.empty(len(queries), np.float64)
    for i, q in enumerate(queries):
        start = time.perf_counter()
        search = (
            tbl.search(q, vector_column_name=COLUMN).distance_type("cosine").limit(k).select([*columns, "_distance"])
        )
        search = search.nprobes(nprobes)
        if refine_factor:
            search = search.refine_factor(refine_factor)
        found = search.to_arrow()
        seconds[i] = time.perf_counter() - start
        frame = pl.from_arrow(found)
        frames.append(frame.with_columns((1.0 - pl.col("_distance")).cast(pl.Float32).alias("score")).drop("_distance"))
    return frames, seconds


def exact_topk(tables: LanceTables, queries: np.ndarray, k: int, table: str = TABLE) -> list[list[str]]:
    """Each query's exact top-``k`` uids by cosine over the whole table, read part by part
    (:func:`laionlab.neighbours.search_parts`, brute force)."""
    from laionlab.io.lance import read_vectors
    from laionlab.neighbours import search_parts

    tbl = tables.open(table)
    parts = sorted(tbl.search().select(["part"]).limit(None).to_arrow()["part"].unique().to_pylist())
    uids_of: list[Sequence[str]] = []

    def read(part: str):
        uids, X = read_vectors(tables.iter_part(table, part, ["uid", COLUMN]), column=COLUMN)
        uids_of.append(uids)
        return uids, X

    found = search_parts(queries, (read(p) for p in parts), k, device="cpu")
    flat = np.concatenate([np.asarray(u, dtype=object) for u in uids_of])
    return [list(flat[row]) for row in found.top.ids]


def evaluate_index(
    uri: str | LanceTables,
    *,
    sample: int = 200,
    k: int = 10,
    seed: int = 0,
    nprobes: int = NPROBES,
    refine_factor: int | None = REFINE_FACTOR,
    queries: np.ndarray | None = None,
    table: str = TABLE,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """recall@``k`` of the table's search (its index, or exact flat search without one)
    against exact brute force, and its latency: ``sample`` query vectors (seeded sample of the
    table's own image vectors, or ``queries``), each searched alone. Returns ``recall`` (mean
    over queries of |found ∩ exact| / k), ``recall_per_query``, ``latency_ms`` (per query),
    ``median_latency_ms``, ``queries`` and ``kind``."""
    tables = _tables(uri, storage_options)
    tbl = tables.open(table)
    if queries is None:
        rows = tbl.count_rows()
        if rows == 0:
            raise ValueError(f"table {table!r} at {tables.uri} has no rows: nothing to evaluate")
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(rows, size=min(sample, rows), replace=False))
        got = tbl.take_offsets([int(i) for i in picks]).select([COLUMN]).to_arrow()
        col = got.column(COLUMN).combine_chunks()
        queries = col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)
    queries = _unit_rows("queries", queries)
    k = min(validate.int_at_least("k", k, 1), tbl.count_rows())
    frames, seconds = search_vectors(tbl, queries, k, nprobes=nprobes, refine_factor=refine_factor, columns=["uid"])
    truth = exact_topk(tables, queries, k, table)
    per_query = np.array([len(set(f["uid"].to_list()) & set(t)) / k for f, t in zip(frames, truth)])
    return {
        "kind": index_kind(tbl),
        "queries": len(queries),
        "k": k,
        "recall": float(per_query.mean()),
        "recall_per_query": per_query,
        "latency_ms": seconds * 1000,
        "median_latency_ms": float(statistics.median(seconds * 1000)),
        "nprobes": nprobes,
        "refine_factor": refine_factor,
    }


def _embed_text(clip: LoadedClip, text: str) -> np.ndarray:
    from laionlab.embed.encode import encode_texts

    return encode_texts(clip, [text])


def _embed_image(clip: LoadedClip, image: str | Path | Image.Image) -> np.ndarray:
    import torch
    from PIL import Image

    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"image: no file {str(image)!r}")
        with Image.open(image) as img:
            pixels = clip.preprocess(img.convert("RGB"))
    elif isinstance(image, Image.Image):
        pixels = clip.preprocess(image.convert("RGB"))
    else:
        raise TypeError(f"image: expected a path or a PIL image, got {type(image).__name__}")
    with torch.inference_mode():
        emb = clip.model.encode_image(pixels.unsqueeze(0).to(clip.device, clip.dtype)).float()
    return _unit_rows("image embedding", emb.cpu().numpy())


def _attach_metadata(frame: pl.DataFrame, metadata: MetadataSource | None) -> pl.DataFrame:
    """caption (TEXT) and url (URL) of the found rows from each part's laion_metadata."""
    if metadata is None or frame.is_empty():
        return frame
    found = []
    for part in frame["part"].unique(maintain_order=True).to_list():
        source = metadata(part)
        uids = frame.filter(pl.col("part") == part)["uid"]
        if source is None:
            continue
        if isinstance(source, pl.DataFrame):
            rows = source
        else:
            from laionlab.io import files

            if not files.exists(source):
                log.warning(f"no laion_metadata for part {part!r} at {source}: no captions or URLs")
                continue
            rows = (
                pl.scan_parquet(source).filter(pl.col("uid").is_in(uids.implode())).collect()
                if files.is_local(source)
                else files.read_parquet(source)
            )
        found.append(
            rows.filter(pl.col("uid").is_in(uids.implode())).select(
                "uid", pl.col("TEXT").cast(pl.String).alias("caption"), pl.col("URL").cast(pl.String).alias("url")
            )
        )
    if not found:
        return frame.with_columns(pl.lit(None, pl.String).alias("caption"), pl.lit(None, pl.String).alias("url"))
    return frame.join(pl.concat(found), on="uid", how="left")


def query(
    uri: str | LanceTables,
    text: str | None = None,
    image: str | Path | Image.Image | None = None,
    vector: np.ndarray | None = None,
    k: int = 10,
    clip: LoadedClip | None = None,
    *,
    nprobes: int = NPROBES,
    refine_factor: int | None = REFINE_FACTOR,
    metadata: MetadataSource | None = None,
    table: str = TABLE,
    storage_options: dict | None = None,
) -> pl.DataFrame:
    """The ``k`` LAION images nearest (cosine) to one ``text``, ``image`` (a path or a PIL
    image) or ``vector`` (``(d,)``), exactly one of them.

    Text and image queries are embedded by ``clip`` (:func:`laionlab.embed.model.load_clip`),
    which must be the model the table was written with (its ``model`` column): another model
    is refused naming both. ``metadata`` maps a part to its ``laion_metadata`` parquet (path
    or URI) or frame, for the caption and URL of each hit.

    Returns a frame with ``rank`` (1..k), ``uid``, ``part``, ``row`` (from the uid
    ``<part>:<row:09d>``), ``score`` (cosine), ``model``, and ``caption``, ``url`` when
    ``metadata`` is given. Raises ValueError for k < 1, an empty table, a dimension mismatch, a
    different or unknown model; FileNotFoundError for a missing table or image file.
    """
    k = validate.int_at_least("k", k, 1)
    given = [name for name, value in (("text", text), ("image", image), ("vector", vector)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of text, image, vector; got {given or 'none'}")
    tables = _tables(uri, storage_options)
    tbl = tables.open(table)
    model = table_model(tbl, table)
    if vector is None:
        if clip is None:
            raise ValueError(f"{given[0]}: a text or image query needs clip=, the model {model!r} the table holds")
        if clip.model_id != model:
            raise ValueError(
                f"clip: the table {table!r} was written with model {model!r}, the query model is {clip.model_id!r}; "
                "load the table's model (e.g. LAIONLAB_CLIP_MODEL / LAIONLAB_CLIP_PRETRAINED)"
            )
        vector = _embed_text(clip, text) if text is not None else _embed_image(clip, image)
    vector = _unit_rows("vector", vector)
    if len(vector) != 1:
        raise ValueError(f"vector: expected one (d,) vector, got shape {vector.shape}")
    (frame,), _ = search_vectors(tbl, vector, k, nprobes=nprobes, refine_factor=refine_factor)
    frame = frame.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"),
        pl.col("uid").str.split(":").list.last().cast(pl.Int64).alias("row"),
    ).select("rank", "uid", "part", "row", "score", "model")
    return _attach_metadata(frame, metadata)


def clip_for(model_id: str, fields: dict) -> LoadedClip:
    """The CLIP model to embed queries for a table written by ``model_id``: the model the
    ``fields`` (:func:`laionlab.settings.clip_model`) name, or, when they name none
    (no LAIONLAB_CLIP_MODEL), the table's own model read from its id (``name/pretrained-tag``
    or ``name/random-seedN``; a checkpoint id needs LAIONLAB_CLIP_CHECKPOINT)."""
    import os

    from laionlab.embed.model import ClipSpec, load_clip

    fields = dict(fields)
    if not os.environ.get("LAIONLAB_CLIP_MODEL") and "/" in model_id:
        name, weights = model_id.split("/", 1)
        if weights.startswith("random-seed"):
            fields.update(
                model_name=name, pretrained=None, checkpoint=None, seed=int(weights.removeprefix("random-seed"))
            )
        elif not weights.startswith("ckpt:"):
            fields.update(model_name=name, pretrained=weights, checkpoint=None)
    return load_clip(ClipSpec(**fields))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m laionlab.query "a red bird" -k 20 [--image path]``: print the top-k table."""
    from laionlab import settings
    from laionlab.io.files import join

    parser = argparse.ArgumentParser(prog="python -m laionlab.query", description=main.__doc__)
    parser.add_argument("text", nargs="?", help="caption to search by (or --image)")
    parser.add_argument("-k", type=int, default=10, help="rows to return (default 10)")
    parser.add_argument("--image", help="image file to search by instead of a text")
    parser.add_argument("--data-root", help="LAIONLAB_DATA_ROOT (captions and URLs from its laion_metadata)")
    parser.add_argument("--lance-uri", help="LAIONLAB_LANCE_URI (default <data root>/lance)")
    parser.add_argument("--nprobes", type=int, default=NPROBES, help=f"IVF partitions probed (default {NPROBES})")
    parser.add_argument("--refine-factor", type=int, default=REFINE_FACTOR, help="re-rank factor (0: none)")
    args = parser.parse_args(argv)
    if (args.text is None) == (args.image is None):
        parser.error("give a text or --image (one of them)")
    root = args.data_root or settings.data_root()
    tables = LanceTables(
        args.lance_uri or settings.lance_uri(root), storage_options=settings.lance_storage_options() or None
    )
    try:
        model = table_model(tables.open(TABLE))
        found = query(
            tables,
            text=args.text,
            image=args.image,
            k=args.k,
            clip=clip_for(model, settings.clip_model()),
            nprobes=args.nprobes,
            refine_factor=args.refine_factor or None,
            metadata=lambda part: join(root, "laion_metadata", f"{part}.parquet"),
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    columns = [c for c in ("rank", "uid", "score", "caption", "url") if c in found.columns]
    with pl.Config(tbl_rows=len(found), fmt_str_lengths=80, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(f"{model}, {index_kind(tables.open(TABLE))} index, top {len(found)}:")
        print(found.select(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
