"""MetaCLIP's per-concept cap (issue 19; Xu et al., "Demystifying CLIP Data", ICLR 2024; public
code facebookresearch/MetaCLIP): captions matched against a concept list, the pool's captions
per concept counted, and each caption kept with MetaCLIP's probability ``1 - prod(1 - t /
max(count, t))`` over its concepts (unmatched captions dropped). The science is in
:mod:`laionlab.curation.concept_cap`.

concept_matches[part] → concept_counts (the parts' counts summed) → concept_balanced[part].
A part is matched once; its keep flags depend on its own rows, the global counts, ``t`` and
``seed`` only (hash-based draws per uid and concept), never on the other parts' order.
"""

from typing import Literal

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetKey, Config, Failure, MaterializeResult, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import laion_metadata
from asset_defs.lineage import require_same_params
from asset_defs.metadata import bar_plot, histogram, markdown_table
from asset_defs.partitions import every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from laionlab.curation.concept_cap import METACLIP_T, MatchRule
from resources import FileStore

GROUP = "concept_balance"
MATCHES = "concept_matches"
COUNTS = "concept_counts"
BALANCED = "concept_balanced"
ILSVRC_SYNSETS = AssetKey("ilsvrc_synsets")  # seed 001's synsets (group laionet), read as a file


def _concepts(files: FileStore, digest: str) -> list[str]:
    return files.read_parquet(MATCHES, "concepts", f"{digest}.parquet")["concept"].to_list()


def _top(frame: pl.DataFrame, n: int, by: str) -> pl.DataFrame:
    return frame.filter(pl.col(by) > 0).sort([by, "concept_id"], descending=[True, False]).head(n)


# --- concept_matches[part] --------------------------------------------------------------------


@profiled("concept_matches")
class ConceptMatchConfig(Config):
    concept_source: Literal["ilsvrc", "file"] = Field(
        "ilsvrc",
        description="ilsvrc: the unique ILSVRC lemmas of ilsvrc_synsets (seed 001's dictionary); file: concepts_file",
    )
    concepts_file: str | None = Field(
        None,
        description="with concept_source: file, a text file with one concept per line (# comments) or a JSON list "
        "(MetaCLIP's metadata.json)",
    )
    rule: MatchRule = Field(
        "metaclip",
        description="metaclip: MetaCLIP's substr_matching (case-sensitive, ,.;:?!` spaced out); laionet: seed 001's "
        "lemma rule; swat: seed 003's case-insensitive whole words",
    )
    top_concepts: int = Field(15, ge=1, description="most matched concepts listed in the metadata")


def _concept_list(config: ConceptMatchConfig, files: FileStore) -> list[str]:
    from laionlab.curation import read_concepts_file

    if config.concept_source == "file":
        if not config.concepts_file:
            raise Failure("concept_matches: concept_source is 'file' but concepts_file is not set")
        with library_errors("concept_matches"):
            return read_concepts_file(config.concepts_file)
    if not files.exists("ilsvrc_synsets", "lemma_to_wnid.parquet"):
        raise Failure("concept_matches: ilsvrc_synsets has not been materialised (concept_source: ilsvrc)")
    return files.read_parquet("ilsvrc_synsets", "lemma_to_wnid.parquet")["lemma"].to_list()


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[laion_metadata, every_partition(ILSVRC_SYNSETS)],
    kinds={"parquet", "polars"},
    description="MetaCLIP's substring matching of the part's captions against the concept list (ILSVRC lemmas or a "
    "file), in one Aho-Corasick pass: uid → concept ids, and the part's captions per concept.",
)
def concept_matches(context: AssetExecutionContext, config: ConceptMatchConfig, files: FileStore) -> MaterializeResult:
    from laionlab.curation import concept_counts, concept_table, concepts_digest, match_concepts

    part = context.partition_key
    concepts = _concept_list(config, files)
    digest = concepts_digest(concepts)
    meta = files.read_parquet("laion_metadata", f"{part}.parquet", columns=["uid", "TEXT"])
    with library_errors(f"concept_matches[{part}]"):
        matched = match_concepts(meta["TEXT"], concepts, config.rule)
        counts = concept_counts(matched["concept_ids"], len(concepts))
        table = concept_table(concepts)
    files.write_parquet(table, MATCHES, "concepts", f"{digest}.parquet")  # content-addressed: parts share it
    files.write_parquet(table.select("concept_id").with_columns(count=counts), MATCHES, f"{part}.counts.parquet")
    frame = pl.concat([meta.select("uid"), matched.select("concept_ids")], how="horizontal")
    files.write_parquet(frame, MATCHES, f"{part}.parquet")
    n_matched = int((frame["concept_ids"].list.len() > 0).sum())
    info = {"concepts_digest": digest, "n_concepts": len(concepts), "rows": frame.height, "matched_rows": n_matched}
    files.write_json(info, MATCHES, f"{part}.json")
    top = _top(table.with_columns(captions=counts), config.top_concepts, "captions")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **info,
            "matched_share": round(n_matched / max(frame.height, 1), 4),
            "top_concepts": markdown_table(top),
            "top_concepts_plot": bar_plot(
                top["concept"].to_list(),
                [float(v) for v in top["captions"]],
                f"{part}: most matched concepts",
                "captions",
                files.path(MATCHES, f"{part}.png"),
            ),
        }
    )


# --- concept_counts ---------------------------------------------------------------------------


@profiled("concept_counts")
class ConceptCountsConfig(Config):
    top_concepts: int = Field(30, ge=1, description="most frequent concepts listed in the metadata")


def _parts_info(files: FileStore, parts: list[str]) -> dict[str, dict]:
    missing = [p for p in parts if not files.exists(MATCHES, f"{p}.json")]
    if missing:
        raise Failure(f"concept_matches is missing for parts {missing}: materialise concept_matches for them first")
    info = {p: files.read_json(MATCHES, f"{p}.json") for p in parts}
    digests: dict[str, list[str]] = {}
    for p, i in info.items():
        digests.setdefault(i["concepts_digest"], []).append(p)
    if len(digests) > 1:
        lines = "; ".join(f"{', '.join(ps)}: concept list {d}" for d, ps in digests.items())
        raise Failure(f"concept_matches was built with different concept lists across parts ({lines}): re-match them")
    return info


@asset(
    group_name=GROUP,
    deps=[every_partition(concept_matches)],
    kinds={"parquet"},
    description="Captions per concept over the pool: every part's concept_matches counts summed (MetaCLIP's "
    "entry_count), with the long tail's histogram.",
)
def concept_counts(context: AssetExecutionContext, config: ConceptCountsConfig, files: FileStore) -> MaterializeResult:
    from laionlab.curation import sum_counts

    parts = registered(context, laion_part)
    if not parts:
        raise Failure("concept_counts: no laion_part is registered")
    require_same_params(context, MATCHES, parts)  # one concept source and rule across parts
    info = _parts_info(files, parts)
    digest = info[parts[0]]["concepts_digest"]
    concepts = _concepts(files, digest)
    with library_errors("concept_counts"):
        total = sum_counts(files.read_parquet(MATCHES, f"{p}.counts.parquet")["count"].to_numpy() for p in parts)
    table = pl.DataFrame({"concept_id": np.arange(len(concepts), dtype=np.uint32), "concept": concepts, "count": total})
    files.write_parquet(table, COUNTS, "counts.parquet")
    summary = {"concepts_digest": digest, "parts": parts, "rows": sum(i["rows"] for i in info.values())}
    files.write_json(summary, COUNTS, "counts.json")
    matched = total[total > 0]
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "parts_seen": ", ".join(parts),
            "rows": summary["rows"],
            "matched_rows": sum(i["matched_rows"] for i in info.values()),
            "concepts": len(concepts),
            "concepts_matched": int(len(matched)),
            f"concepts_over_{METACLIP_T}": int((total > METACLIP_T).sum()),
            "top_concepts": markdown_table(_top(table, config.top_concepts, "count")),
            "count_histogram": histogram(
                np.log10(matched.astype(np.float64)) if len(matched) else np.zeros(0),
                "log10(captions per concept), matched concepts",
                "concept counts (long tail)",
                files.path(COUNTS, "counts.png"),
                ylabel="concepts",
            ),
        }
    )


# --- concept_balanced[part] -------------------------------------------------------------------


@profiled("concept_balanced")
class ConceptBalanceConfig(Config):
    t: int = Field(METACLIP_T, ge=1, description="the per-concept cap: a concept keeps ~t captions (MetaCLIP: 20,000)")
    seed: int = Field(0, ge=0, lt=2**64, description="seed of the per-(uid, concept) hash draws")
    top_concepts: int = Field(15, ge=1, description="most frequent concepts in the kept-vs-matched table")


def _global_counts(files: FileStore, part: str) -> tuple[pl.DataFrame, dict]:
    if not files.exists(COUNTS, "counts.json"):
        raise Failure("concept_counts has not been materialised: materialise it (after every part's concept_matches)")
    summary = files.read_json(COUNTS, "counts.json")
    own = files.read_json(MATCHES, f"{part}.json")
    if part not in summary["parts"] or own["concepts_digest"] != summary["concepts_digest"]:
        raise Failure(
            f"concept_counts does not include concept_matches[{part}] (its parts: {', '.join(summary['parts'])}; "
            f"concept lists {summary['concepts_digest']} vs {own['concepts_digest']}): re-materialise concept_counts"
        )
    return files.read_parquet(COUNTS, "counts.parquet"), summary


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[every_partition(concept_counts), concept_matches],
    kinds={"parquet"},
    description="MetaCLIP's balanced sample of the part: a caption is kept if any of its concepts' draws (hash of "
    "seed, uid, concept) falls under t / max(count, t); keep flag and probability per row.",
)
def concept_balanced(
    context: AssetExecutionContext, config: ConceptBalanceConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.curation import keep_rows, per_concept_kept

    part = context.partition_key
    counts, summary = _global_counts(files, part)
    matches = files.read_parquet(MATCHES, f"{part}.parquet")
    with library_errors(f"concept_balanced[{part}]"):
        flags = keep_rows(matches, counts["count"].to_numpy(), counts["concept"].to_list(), config.t, config.seed)
        per_concept = per_concept_kept(matches["concept_ids"], flags["keep"].to_numpy(), counts.height)
    path = files.write_parquet(flags, BALANCED, f"{part}.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "path": path,
            **_balance_metadata(flags, per_concept, counts, config, part, files),
        }
    )


def _balance_metadata(
    flags: pl.DataFrame, per_concept: pl.DataFrame, counts: pl.DataFrame, config: ConceptBalanceConfig, part: str, files
) -> dict:
    """Kept share and, for the pool's most frequent concepts, the part's kept vs matched rows next
    to MetaCLIP's per-entry probability."""
    kept, matched = int(flags["keep"].sum()), int((flags["n_concepts"] > 0).sum())
    top = (
        _top(counts.join(per_concept, on="concept_id"), config.top_concepts, "count")
        .with_columns(entry_probability=(config.t / pl.max_horizontal(pl.col("count"), config.t)).round(4))
        .with_columns(kept_share=(pl.col("kept") / pl.col("matched")).fill_nan(None).round(4))
        .select("concept", "count", "entry_probability", "matched", "kept", "kept_share")
    )
    return {
        "rows": flags.height,
        "matched_rows": matched,
        "kept_rows": kept,
        "kept_share": round(kept / max(flags.height, 1), 4),
        "kept_share_of_matched": round(kept / max(matched, 1), 4),
        "expected_kept_rows": round(float(flags["keep_probability"].sum()), 2),
        "capped_concepts": int((counts["count"] > config.t).sum()),
        "kept_vs_matched": markdown_table(top),
        "kept_share_plot": bar_plot(
            top["concept"].to_list(),
            [float(v or 0.0) for v in top["kept_share"]],
            f"{part}: kept share of the pool's most frequent concepts (t={config.t})",
            "kept / matched",
            files.path(BALANCED, f"{part}.png"),
        ),
    }


assets = [concept_matches, concept_counts, concept_balanced]
