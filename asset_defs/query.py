"""Querying the corpus (issue 20): the ANN index over every part's image vectors that
``laionlab.query.query`` and ``python -m laionlab.query`` search, with its measured quality.

laion_embeddings (every part) → image_index. The index kind and parameters follow the row
count (``laionlab.query.index_plan``: exact search below 100k rows, IVF_PQ above, LanceDB's
documented defaults); the asset rebuilds it on each materialisation and records recall@k against
exact search on a seeded sample of the table's vectors, the query latency and an example query.
"""

import json
from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import laion_embeddings
from asset_defs.metadata import histogram, markdown_table
from asset_defs.partitions import every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from laionlab.query import NPROBES, REFINE_FACTOR, RETRAIN_GROWTH
from resources import ClipEncoder, FileStore, LanceStore

GROUP = "query"


@profiled("image_index")
class ImageIndexConfig(Config):
    kind: Literal["auto", "none", "IVF_PQ", "IVF_HNSW_SQ"] = Field(
        "auto",
        description="auto: no index below 100,000 rows (exact search), IVF_PQ above (laionlab.query.index_plan)",
    )
    nprobes: int = Field(NPROBES, ge=1, description="IVF partitions probed per query in the evaluation")
    refine_factor: int = Field(REFINE_FACTOR, ge=0, description="refine_factor x k candidates re-ranked (0: none)")
    sample: int = Field(200, ge=1, description="query vectors (a seeded sample of the table's rows) for recall")
    k: int = Field(10, ge=1, description="recall@k and the example query's rows")
    retrain_growth: float = Field(
        RETRAIN_GROWTH,
        ge=0,
        description="new rows up to this share of the indexed ones are folded into the existing index "
        "(LanceDB's incremental indexing, no retraining: faster, but recall@10 fell from 0.99 to 0.94 folding "
        "100k rows into 500k); more, or 0 (default), retrains it",
    )
    seed: int = Field(0)
    example_text: str = Field("a photo of a dog", description="the example query shown in the metadata")


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_embeddings)],
    kinds={"lancedb"},
    description="A cosine ANN index on laion_embeddings.image_emb (none below 100k rows, IVF_PQ above) for text, "
    "image and vector queries (laionlab.query), with its recall@k against exact search and its query latency.",
)
def image_index(
    context: AssetExecutionContext, config: ImageIndexConfig, lance: LanceStore, files: FileStore, clip: ClipEncoder
) -> MaterializeResult:
    from laionlab.query import build_image_index, evaluate_index, query

    parts, tables = registered(context, laion_part), lance.tables()
    refine = config.refine_factor or None
    with library_errors("image_index"):
        report = build_image_index(tables, kind=config.kind, retrain_growth=config.retrain_growth)
        quality = evaluate_index(
            tables, sample=config.sample, k=config.k, seed=config.seed, nprobes=config.nprobes, refine_factor=refine
        )
        example = query(
            tables,
            text=config.example_text,
            k=config.k,
            clip=clip.load(),
            nprobes=config.nprobes,
            refine_factor=refine,
            metadata=lambda part: files.path("laion_metadata", f"{part}.parquet"),
        )
    context.log.info(f"image_index: {report.plan.params()}, recall@{config.k} {quality['recall']:.3f}")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            "parts_seen": ", ".join(parts),
            "rows": report.plan.rows,
            "index_kind": report.plan.kind,
            "index_params": MetadataValue.json(report.plan.params()),
            "build_seconds": round(report.seconds, 2),
            "build": f"{report.rows_added} new rows folded in" if report.updated else "trained",
            f"recall_at_{config.k}": round(quality["recall"], 4),
            "recall_queries": quality["queries"],
            "median_latency_ms": round(quality["median_latency_ms"], 2),
            "latency_plot": histogram(
                quality["latency_ms"], "ms", f"query latency ({quality['queries']} queries, k={config.k})"
            ),
            "example_query": config.example_text,
            "example": markdown_table(example.drop("model").with_columns(example["score"].round(4))),
            "model": json.dumps(example["model"][0]) if example.height else "none",
        }
    )


assets = [image_index]
