"""Exact (and near-exact) duplicate images, as img2dataset and NeMo Curator users detect them:
the same downloaded bytes (the ``sha256`` img2dataset records for every success,
``compute_hash="sha256"``), and optionally the same or a close 64-bit perceptual hash
(pHash: the sign of the 8 x 8 lowest DCT frequencies of a 32 x 32 greyscale thumbnail
against their median; Zauner 2010, the definition of the ``imagehash`` package).

Keep rule: rows in (part, row) order, parts sorted; the first occurrence is kept, every later
row with the same sha256 (or a pHash within ``phash_distance`` bits) of an earlier row is a
duplicate, pointing at the earliest such row (``duplicate_of``). For sha256 and an identical
pHash (distance 0) that row is the kept first copy. For distance > 0 closeness is not
transitive: the pointer is the earliest close row whether it was kept or not (seed 004's rule
in :mod:`laionlab.dedup.semantic`), so a part's result depends only on the parts before it.

Cross-part work reads little: each part keeps a row table (uid, row, sha256, phash) and two
small sorted indexes (each distinct hash with its first uid in the part, :func:`hash_index`);
:func:`find_duplicates` compares a part's rows with the earlier parts' indexes one part at a
time, and only the rows still unmatched. pHash distances > 0 are searched by the pigeonhole
principle (two 64-bit hashes within d bits agree exactly on one of d + 1 blocks): a join on
each block, then the exact Hamming distance of the candidates.
Numpy, PIL and polars; nothing here imports Dagster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import polars as pl
from PIL import Image

from laionlab.progress import Progress

PHASH_BITS = 64
PHASH_SIZE = 8  # 8 x 8 low frequencies -> 64 bits
PHASH_THUMB = 32  # imagehash's highfreq_factor 4: a 32 x 32 thumbnail
SHA256_HEX = 64

ROW_SCHEMA = {"uid": pl.String, "row": pl.Int64, "sha256": pl.String, "phash": pl.UInt64}
DUPLICATE_SCHEMA = {
    "uid": pl.String,
    "part": pl.String,
    "duplicate_of": pl.String,
    "duplicate_of_part": pl.String,
    "match": pl.String,
    "distance": pl.Int64,
}


def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the (unnormalised) DCT-II of length ``n_in``: (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))


_DCT = _dct_matrix(PHASH_SIZE, PHASH_THUMB)
_WEIGHTS = (np.uint64(1) << np.arange(PHASH_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


def thumbnail(image: Image.Image) -> np.ndarray:
    """(32, 32) float64 greyscale of ``image`` (Lanczos), the pHash input."""
    grey = image.convert("L").resize((PHASH_THUMB, PHASH_THUMB), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def phash_thumbnails(thumbs: np.ndarray) -> np.ndarray:
    """pHash of each (32, 32) thumbnail of ``thumbs`` (n, 32, 32): (n,) uint64, the first
    low-frequency coefficient (row-major) in the most significant bit (imagehash's hex order)."""
    thumbs = np.asarray(thumbs, dtype=np.float64)
    if thumbs.ndim != 3 or thumbs.shape[1:] != (PHASH_THUMB, PHASH_THUMB):
        raise ValueError(f"thumbs: expected shape (n, {PHASH_THUMB}, {PHASH_THUMB}), got {thumbs.shape}")
    low = np.einsum("ki,nij,lj->nkl", _DCT, thumbs, _DCT).reshape(len(thumbs), -1)  # (n, 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)


def phash(image: Image.Image) -> int:
    """The 64-bit pHash of one image, as an int (same bits as ``imagehash.phash``)."""
    return int(phash_thumbnails(thumbnail(image)[None])[0])


def hamming(a, b) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes (broadcast): int array."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))).astype(np.int64)


def hash_table(uids, sha256, phash_values=None) -> pl.DataFrame:
    """The row table of one part: uid, row (position in uid order, the part's row order),
    sha256 (lower-case hex) and phash (UInt64, null where the image was not decoded or no pHash
    was computed), sorted by row. ``uids`` must be unique and every sha256 a 64-digit hex string."""
    uids = pl.Series("uid", list(uids), dtype=pl.String)
    sha = pl.Series("sha256", list(sha256), dtype=pl.String).str.to_lowercase()
    if len(sha) != len(uids):
        raise ValueError(f"sha256: expected {len(uids)} values (one per uid), got {len(sha)}")
    if uids.null_count() or not uids.is_unique().all():
        raise ValueError("uids: expected unique, non-null uids")
    bad = sha.is_null() | ~sha.str.contains(f"^[0-9a-f]{{{SHA256_HEX}}}$")
    if bad.any():
        raise ValueError(
            f"sha256: {int(bad.sum())} value(s) are not 64-digit hex digests, e.g. {sha.filter(bad)[0]!r} "
            f"for uid {uids.filter(bad)[0]!r}"
        )
    ph = pl.Series("phash", [None] * len(uids) if phash_values is None else list(phash_values), dtype=pl.UInt64)
    if len(ph) != len(uids):
        raise ValueError(f"phash_values: expected {len(uids)} values (one per uid), got {len(ph)}")
    frame = pl.DataFrame([uids, sha, ph]).sort("uid")
    return frame.with_row_index("row").select("uid", pl.col("row").cast(pl.Int64), "sha256", "phash")


def hash_index(table: pl.DataFrame, column: str) -> pl.DataFrame:
    """The small sorted index of one hash ``column`` ("sha256" or "phash") of a part's row
    table: each distinct non-null value with the uid and row of its first occurrence and its
    number of copies in the part, sorted by value."""
    if column not in ("sha256", "phash"):
        raise ValueError(f"column: expected 'sha256' or 'phash', got {column!r}")
    _check_table(table)
    return (
        table.filter(pl.col(column).is_not_null())
        .sort("row")
        .group_by(column, maintain_order=True)
        .agg(pl.col("uid").first(), pl.col("row").first(), pl.len().alias("copies"))
        .with_columns(pl.col("copies").cast(pl.Int64))
        .sort(column)
    )


def within_part_groups(table: pl.DataFrame) -> int:
    """Groups of identical bytes (same sha256) with more than one row in the part."""
    return int((hash_index(table, "sha256")["copies"] > 1).sum())


def _check_table(table: pl.DataFrame) -> None:
    if not isinstance(table, pl.DataFrame) or set(ROW_SCHEMA) - set(table.columns):
        raise ValueError(f"table: expected a row table with columns {list(ROW_SCHEMA)} (hash_table's)")


def _blocks(distance: int) -> list[tuple[int, int]]:
    """(shift, width) of the ``distance + 1`` bit blocks of a 64-bit hash (pigeonhole)."""
    n = distance + 1
    widths = [PHASH_BITS // n + (1 if i < PHASH_BITS % n else 0) for i in range(n)]
    shifts = np.cumsum([0, *widths[:-1]])
    return [(int(s), w) for s, w in zip(shifts, widths)]


def _block_columns(frame: pl.DataFrame, distance: int) -> pl.DataFrame:
    values = frame["phash"].to_numpy().astype(np.uint64)
    return frame.with_columns(
        pl.Series(f"b{i}", (values >> np.uint64(s)) & np.uint64((1 << w) - 1), dtype=pl.UInt64)
        for i, (s, w) in enumerate(_blocks(distance))
    )


def phash_pairs(queries: pl.DataFrame, targets: pl.DataFrame, distance: int) -> pl.DataFrame:
    """Every (query, target) pair whose pHashes are within ``distance`` bits: columns of
    ``queries`` (row, phash) and ``targets`` (uid, row, phash) suffixed ``_t`` for the target,
    plus ``distance``. Distance 0 is one equality join; larger ones a join per pigeonhole block
    (memory grows with the candidates: keep ``distance`` small, ≤ 8 bits in practice)."""
    if not 0 <= distance < PHASH_BITS:
        raise ValueError(f"distance: expected 0 <= distance < {PHASH_BITS}, got {distance}")
    q = queries.select("row", "phash").filter(pl.col("phash").is_not_null())
    t = targets.select("uid", "row", "phash").filter(pl.col("phash").is_not_null())
    t = t.rename({"uid": "uid_t", "row": "row_t", "phash": "phash_t"})
    if distance == 0:
        pairs = q.join(t, left_on="phash", right_on="phash_t", how="inner").with_columns(phash_t=pl.col("phash"))
    else:
        qb, tb = _block_columns(q, distance), _block_columns(t.rename({"phash_t": "phash"}), distance)
        tb = tb.rename({"phash": "phash_t"})
        blocks = [f"b{i}" for i in range(distance + 1)]
        pairs = pl.concat(
            [qb.select("row", "phash", b).join(tb.select("uid_t", "row_t", "phash_t", b), on=b).drop(b) for b in blocks]
        ).unique(["row", "row_t"])
    dist = hamming(pairs["phash"].to_numpy(), pairs["phash_t"].to_numpy())
    return pairs.with_columns(distance=pl.Series(dist, dtype=pl.Int64)).filter(pl.col("distance") <= distance)


def _earliest(candidates: list[pl.DataFrame]) -> pl.DataFrame:
    """Per query row, the candidate with the smallest target row (ties: sha256 first)."""
    frame = pl.concat(candidates, how="vertical_relaxed")
    return frame.sort("row", "row_t", "match", descending=[False, False, True]).unique("row", keep="first")


_CANDIDATE = {"row": pl.Int64, "uid_t": pl.String, "row_t": pl.Int64, "match": pl.String, "distance": pl.Int64}


def _matches(rows: pl.DataFrame, sha: pl.DataFrame, ph: pl.DataFrame | None, distance: int | None) -> pl.DataFrame:
    """The earliest target of each of ``rows`` in one part's indexes (sha256, and pHash when
    ``distance`` is set): columns row, uid_t, row_t, match, distance."""
    by_sha = rows.select("row", "sha256").join(sha.select("sha256", "uid", "row"), on="sha256", suffix="_t")
    candidates = [
        by_sha.select(
            "row", pl.col("uid").alias("uid_t"), "row_t", pl.lit("sha256").alias("match"), pl.lit(0).alias("distance")
        ).cast(_CANDIDATE)
    ]
    if distance is not None and ph is not None:
        pairs = phash_pairs(rows, ph, distance)
        candidates.append(
            pairs.select("row", "uid_t", "row_t", pl.lit("phash").alias("match"), "distance").cast(_CANDIDATE)
        )
    return _earliest(candidates)


def _self_matches(rows: pl.DataFrame, table: pl.DataFrame, distance: int | None) -> pl.DataFrame:
    """The earliest earlier row of the part (any row of ``table``, matched elsewhere or not)
    for each of ``rows``."""
    sha = hash_index(table, "sha256")
    found = _matches(rows, sha, None, None).filter(pl.col("row_t") < pl.col("row"))
    candidates = [found]
    if distance is not None:
        pairs = phash_pairs(rows, table, distance).filter(pl.col("row_t") < pl.col("row"))
        candidates.append(
            pairs.select("row", "uid_t", "row_t", pl.lit("phash").alias("match"), "distance").cast(_CANDIDATE)
        )
    return _earliest(candidates)


def find_duplicates(
    table: pl.DataFrame,
    part: str,
    earlier: Iterable[tuple[str, pl.DataFrame, pl.DataFrame | None]] = (),
    phash_distance: int | None = None,
) -> pl.DataFrame:
    """The duplicates among the rows of ``part`` (its row table, :func:`hash_table`), against
    the ``earlier`` parts — ``(part, sha256 index, phash index or None)`` in (sorted) part order,
    read one at a time — and the part's own earlier rows. With ``phash_distance`` set, a pHash
    within that many bits also counts. Returns uid, part, duplicate_of (the uid of the earliest
    matching row), duplicate_of_part, match ("sha256" or "phash") and distance (bits; 0 for
    sha256), in row order; rows not listed are kept."""
    _check_table(table)
    if phash_distance is not None and not 0 <= phash_distance < PHASH_BITS:
        raise ValueError(f"phash_distance: expected None or 0 <= d < {PHASH_BITS}, got {phash_distance}")
    open_rows, found = table, []
    for name, sha, ph in earlier:
        if open_rows.height == 0:
            break  # a part's rows all matched: later parts cannot give an earlier match
        hits = _matches(open_rows, sha, ph, phash_distance).with_columns(duplicate_of_part=pl.lit(name))
        found.append(hits)
        open_rows = open_rows.join(hits.select("row"), on="row", how="anti")
    if open_rows.height:
        found.append(_self_matches(open_rows, table, phash_distance).with_columns(duplicate_of_part=pl.lit(part)))
    if not found:
        return pl.DataFrame(schema=DUPLICATE_SCHEMA)
    hits = pl.concat(found, how="vertical_relaxed")
    out = table.select("uid", "row").join(hits, on="row").sort("row")
    return out.select(
        "uid",
        pl.lit(part).alias("part"),
        pl.col("uid_t").alias("duplicate_of"),
        "duplicate_of_part",
        "match",
        "distance",
    ).cast(DUPLICATE_SCHEMA)


def largest_groups(duplicates: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """The ``n`` kept rows with most duplicates in ``duplicates``: duplicate_of,
    duplicate_of_part, copies (duplicates pointing at it), most first."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return (
        duplicates.group_by("duplicate_of", "duplicate_of_part")
        .agg(pl.len().cast(pl.Int64).alias("copies"))
        .sort(["copies", "duplicate_of"], descending=[True, False])
        .head(n)
    )


def counts_by_part(duplicates: pl.DataFrame, parts: list[str]) -> pl.DataFrame:
    """Duplicates of ``duplicates`` by the part that holds the row they point at: part,
    duplicates (every part of ``parts`` listed, zeros included)."""
    counts = duplicates.group_by("duplicate_of_part").agg(pl.len().cast(pl.Int64).alias("duplicates"))
    return (
        pl.DataFrame({"part": parts}, schema={"part": pl.String})
        .join(counts.rename({"duplicate_of_part": "part"}), on="part", how="left")
        .with_columns(pl.col("duplicates").fill_null(0))
    )


def images_phash(
    images: Iterable[tuple[str, Image.Image]],
    batch: int = 4096,
    total: int | None = None,
    log: logging.Logger | None = None,
) -> dict[str, int]:
    """uid -> pHash of each ``(uid, image)``: thumbnails made one at a time, hashed ``batch`` at
    a time in one vectorised pass (memory: ``batch`` x 8 KiB), progress to ``log``."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    out: dict[str, int] = {}
    uids, thumbs = [], []
    progress = Progress("pHash", total, log=log, unit="images")

    def flush() -> None:
        out.update(zip(uids, (int(v) for v in phash_thumbnails(np.stack(thumbs)))))
        progress.update(len(uids))
        uids.clear()
        thumbs.clear()

    for uid, image in images:
        uids.append(uid)
        thumbs.append(thumbnail(image))
        if len(uids) == batch:
            flush()
    if uids:
        flush()
    progress.close()
    return out


def part_hash_table(status: pl.DataFrame, phashes: dict[str, int] | None = None) -> pl.DataFrame:
    """:func:`hash_table` of a part's download status (``laion_images``' status.parquet: uid,
    status, sha256): its successful rows, with the pHashes of ``phashes`` (uid -> hash) where
    given. A status without sha256 (img2dataset run without ``compute_hash="sha256"``) is an
    error naming the column."""
    if not isinstance(status, pl.DataFrame) or {"uid", "status"} - set(status.columns):
        raise ValueError("status: expected a download status table with columns 'uid' and 'status'")
    ok = status.filter(pl.col("status") == "success")
    if "sha256" not in ok.columns or (ok.height and ok["sha256"].null_count() == ok.height):
        raise ValueError(
            "status: no sha256 column (or only nulls) in the download status; img2dataset must run with "
            'compute_hash="sha256" (laionlab.io.download does): re-download the part'
        )
    ok = ok.filter(pl.col("sha256").is_not_null())
    ph = None if phashes is None else [phashes.get(u) for u in ok["uid"]]
    return hash_table(ok["uid"], ok["sha256"], ph)
