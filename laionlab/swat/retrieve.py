"""Which matched rows a target still has to download, and the tables of one retrieval (seed
003: SWAT's stage 1 downloads the string-matched images it lacks): rows of parts that were
never downloaded are fetched for the target itself; rows that failed before, in an earlier
retrieval or in the part's own download, are not fetched again unless asked. Then the
candidate rows every sampling method ranks, and the samples table of what they picked.

A LAION uid is ``<part>:<row>``; everything here works on uids, sets of them and polars frames.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import polars as pl

from laionlab.io.metadata import uid_part
from laionlab.swat.sample import cap_per_class


def rows_to_retrieve(
    matches: pl.DataFrame, embedded: Collection[str], max_per_class: int | None = None, seed: int = 0
) -> list[str]:
    """uids of the matched rows without an embedding (not in ``embedded``), in ``matches``'
    order; with ``max_per_class`` each class draws at most that many of them
    (:func:`~laionlab.swat.sample.cap_per_class`, seeded). ``matches``: uid, classes."""
    if not isinstance(matches, pl.DataFrame) or {"uid", "classes"} - set(matches.columns):
        raise ValueError("matches: expected string_matches' frame with columns 'uid' and 'classes'")
    missing = matches.filter(~pl.col("uid").is_in(list(embedded)))
    if max_per_class is not None:
        missing = cap_per_class(missing, max_per_class, seed=seed)
    return missing["uid"].to_list()


@dataclass(frozen=True)
class RetrievalPlan:
    """``todo``: the uids to download now, in the order wanted; ``counts``: why the others are
    not (matched_without_embedding, already_retrieved, failed_before, failed_in_ingest)."""

    todo: list[str]
    counts: dict[str, int]


def plan_retrieval(
    wanted: Sequence[str],
    retrieved: Collection[str],
    failed_before: Collection[str],
    ingested_parts: Collection[str],
    retry_failed: bool = False,
) -> RetrievalPlan:
    """Which of the ``wanted`` uids (:func:`rows_to_retrieve`) to download: not those already
    ``retrieved`` for the target; unless ``retry_failed``, not those whose download failed in
    an earlier retrieval (``failed_before``) nor those of a part its own download covered
    (``ingested_parts``: the row was tried there and failed, else it would be embedded)."""
    if isinstance(wanted, str):
        raise ValueError(f"wanted: expected a list of uids, got the string {wanted!r}")
    wanted_set = set(wanted)
    already = set(retrieved) & wanted_set
    failed = set(failed_before)
    ingested = set(ingested_parts)
    failed_in_ingest = {u for u in wanted_set if uid_part(u) in ingested}
    skip = set() if retry_failed else failed | failed_in_ingest
    todo = [u for u in wanted if u not in already and u not in skip]
    counts = {
        "matched_without_embedding": len(wanted),
        "already_retrieved": len(already),
        "failed_before": len(failed),
        "failed_in_ingest": len(failed_in_ingest - already),
    }
    return RetrievalPlan(todo, counts)


def merge_failures(status: pl.DataFrame, failed_before: pl.DataFrame) -> pl.DataFrame:
    """The target's failed rows after a download (uid, error_message; sorted by uid): this
    download's failures (``status``: the download's status table) and the earlier ones
    (``failed_before``) of rows not tried this time; a row tried again takes this outcome."""
    if not isinstance(status, pl.DataFrame) or {"uid", "status", "error_message"} - set(status.columns):
        raise ValueError("status: expected a download status table with columns 'uid', 'status' and 'error_message'")
    if not isinstance(failed_before, pl.DataFrame) or {"uid", "error_message"} - set(failed_before.columns):
        raise ValueError("failed_before: expected a frame with columns 'uid' and 'error_message'")
    failures = status.filter(pl.col("status") != "success").select(pl.col("uid", "error_message").cast(pl.String))
    kept = failed_before.filter(~pl.col("uid").is_in(status["uid"].implode()))
    return pl.concat([failures, kept]).sort("uid")


def candidate_rows(
    uids: Sequence[str], matches: pl.DataFrame, class_keys: Collection
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows every sampling method ranks: ``uids`` are the matched rows with embeddings, in
    the order of the embedding matrices (row i of T and I). Returns ``(frame, candidates)``:
    frame (row, uid, classes as string_matches stores them) and candidates (row, classes as
    the target's keys: Int64 when every key of ``class_keys`` is an int, else String).
    A stored class that is no key of that type raises polars' InvalidOperationError (the
    matches were made before the target's classes changed)."""
    if not isinstance(matches, pl.DataFrame) or {"uid", "classes"} - set(matches.columns):
        raise ValueError("matches: expected string_matches' frame with columns 'uid' and 'classes'")
    key_type = pl.Int64 if all(isinstance(k, int) for k in class_keys) else pl.String  # string_matches stores str(key)
    frame = pl.DataFrame({"uid": list(uids)}, schema={"uid": pl.String}).with_row_index("row")
    frame = frame.join(matches.select("uid", "classes"), on="uid")
    return frame, frame.select("row", pl.col("classes").cast(pl.List(key_type)))


def picked_rows(frame: pl.DataFrame, picks: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``frame`` (:func:`candidate_rows`' first frame) that any method picked
    (``picks``: sample_all_methods' frame), each once, by row."""
    return frame.join(picks.select("row").unique(), on="row").sort("row")


def samples_table(picks: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """``picks`` (row, class, score, rank, method) with each row's uid: uid, class (as a
    string), score, rank, method; the parquet retrieval_samples keeps."""
    if not isinstance(picks, pl.DataFrame) or {"row", "class", "score", "rank", "method"} - set(picks.columns):
        raise ValueError("picks: expected sample_all_methods' frame (row, class, score, rank, method)")
    with_uid = picks.join(frame.select("row", "uid"), on="row")
    return with_uid.select("uid", pl.col("class").cast(pl.String), "score", "rank", "method")
