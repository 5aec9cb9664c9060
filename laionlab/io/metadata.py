"""LAION metadata parts: listing, schema validation, normalisation and stable uids.

LAION-400M parts carry SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity;
LAION-2B parts name some of these differently (``punsafe`` instead of NSFW, no SAMPLE_ID) and
the clip-retrieval / LAION-5B embedding release ships ``metadata_XXXX.parquet`` files with
lower-case ``url`` and ``caption``. All are normalised to LAION-400M's names; columns that are
not known are kept as they are, so nothing the user had is dropped.

Every row gets ``uid = "<part>:<row:09d>"`` (part = the partition key, row = position in
the source file), stable across re-runs, which is what lineage joins across assets use.

A file is one partition keyed by its stem, or — when it holds more than ``rows_per_partition``
rows (a LAION-400M file has ~13M) — several, ``<stem>.000``, ``<stem>.001``, ... each a fixed
row range of the file (:func:`plan_slices`). A file stem is the name before its first dot, so
a chunk key never equals a file key, and the row in a chunk's uid is still the file's row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import fsspec
import polars as pl

REQUIRED = ("URL", "TEXT")
# canonical name -> (accepted source names, canonical dtype)
COLUMNS: dict[str, tuple[tuple[str, ...], pl.DataType]] = {
    "SAMPLE_ID": (("SAMPLE_ID", "sample_id", "key", "KEY"), pl.Int64),
    "URL": (("URL", "url"), pl.String),
    "TEXT": (("TEXT", "caption", "text", "CAPTION"), pl.String),
    "HEIGHT": (("HEIGHT", "height"), pl.Int64),
    "WIDTH": (("WIDTH", "width"), pl.Int64),
    "LICENSE": (("LICENSE", "license"), pl.String),
    "NSFW": (("NSFW", "nsfw"), pl.String),
    "similarity": (("similarity", "SIMILARITY"), pl.Float64),
}
_NUMERIC = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64)


class MetadataSchemaError(ValueError):
    """A metadata part lacks a required column or has one of the wrong type."""


def make_uid(part: str, row: int) -> str:
    return f"{part}:{row:09d}"


def uid_part(uid: str) -> str:
    """The part a uid (:func:`make_uid`: ``<part>:<row>``) belongs to."""
    part, sep, _ = str(uid).rpartition(":")
    if not sep or not part:
        raise ValueError(f"uid {uid!r}: expected '<part>:<row>'")
    return part


def uid_part_series(uids: pl.Series) -> pl.Series:
    """:func:`uid_part` of every uid of a Series at once; a ValueError names the first malformed one."""
    parts = uids.str.extract(r"^(.+):[^:]*$", 1)
    if parts.null_count():
        bad = uids.filter(parts.is_null())[0]
        raise ValueError(f"uids: expected '<part>:<row>', got {bad!r}")
    return parts


def uid_parts(uids: Iterable[str]) -> list[str]:
    """The parts of ``uids``, each once, sorted."""
    return sorted({uid_part(u) for u in uids})


def uid_expr(part: str) -> pl.Expr:
    """The polars expression behind :func:`make_uid`, over a ``row`` column."""
    return pl.format("{}:{}", pl.lit(part), pl.col("row").cast(pl.String).str.zfill(9)).alias("uid")


# A file key: letters, digits, '_' and '-', starting with a letter or digit (no dot-files,
# AppleDouble "._x" files, quotes, spaces or path separators). A chunk key adds ".NNN".
FILE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
CHUNK_KEY = re.compile(r"(?P<file>[A-Za-z0-9][A-Za-z0-9_-]*)\.(?P<chunk>\d{3,})")


@dataclass(frozen=True)
class PartSlice:
    """One ``laion_part`` partition: rows ``start..stop-1`` of the source file ``uri``."""

    key: str
    file_key: str
    uri: str
    start: int
    stop: int
    chunks: int  # partitions the file is cut into (1: the whole file)

    @property
    def rows(self) -> int:
        return self.stop - self.start


def split_part_key(key: str) -> tuple[str, int | None]:
    """``(file key, chunk index)`` of a partition key; the index is None for a whole file."""
    if FILE_KEY.fullmatch(key):
        return key, None
    m = CHUNK_KEY.fullmatch(key)
    if m is None:
        raise ValueError(
            f"{key!r} is not a LAION part key (a file stem of letters, digits, '_', '-', optionally '.NNN')"
        )
    return m["file"], int(m["chunk"])


def parquet_rows(uri: str) -> int:
    """Rows of a parquet file, from its footer (no column is read)."""
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def plan_slices(file_key: str, uri: str, rows: int, rows_per_partition: int) -> list[PartSlice]:
    """The partitions of a file of ``rows`` rows: the whole file when it fits in
    ``rows_per_partition`` (or that is 0), else ``ceil(rows / rows_per_partition)`` chunks of
    ``rows_per_partition`` rows (the last shorter), keyed ``<file_key>.NNN``."""
    if rows_per_partition <= 0 or rows <= rows_per_partition:
        return [PartSlice(file_key, file_key, uri, 0, rows, 1)]
    n = math.ceil(rows / rows_per_partition)
    width = max(3, len(str(n - 1)))
    return [
        PartSlice(
            f"{file_key}.{i:0{width}d}",
            file_key,
            uri,
            i * rows_per_partition,
            min((i + 1) * rows_per_partition, rows),
            n,
        )
        for i in range(n)
    ]


def list_parts(uri: str, glob: str = "*.parquet") -> dict[str, str]:
    """Map part key (file stem) → full URI for every file matching ``glob`` under ``uri``
    (a local folder or any fsspec URI such as ``s3://bucket/laion400m-meta``)."""
    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(root):
        raise FileNotFoundError(f"LAION source folder not found: {uri}")
    paths = sorted(fs.glob(f"{root.rstrip('/')}/{glob}"))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    parts: dict[str, str] = {}
    for path in paths:
        key = Path(path).name.split(".")[0]
        if not FILE_KEY.fullmatch(key):
            continue  # see skipped_files: dot-files, "._x" AppleDouble files, names with quotes or spaces
        if key in parts:
            raise ValueError(f"two source files map to the same part key {key!r}: {parts[key]} and {path}")
        parts[key] = path if protocol in ("file", "local") else f"{protocol}://{path}"
    return parts


def skipped_files(uri: str, glob: str = "*.parquet") -> list[str]:
    """Files matching ``glob`` that are not parts because their stem is not a valid key."""
    fs, root = fsspec.core.url_to_fs(uri)
    names = [Path(p).name for p in fs.glob(f"{root.rstrip('/')}/{glob}")] if fs.exists(root) else []
    return sorted(n for n in names if not FILE_KEY.fullmatch(n.split(".")[0]))


def _resolve_columns(schema: pl.Schema, source: str) -> dict[str, str]:
    """canonical name → source column name; raises naming the file for missing/mistyped ones."""
    found: dict[str, str] = {}
    for canonical, (aliases, dtype) in COLUMNS.items():
        name = next((a for a in aliases if a in schema), None)
        if name is None:
            continue
        actual = schema[name]
        ok = actual == pl.String if dtype == pl.String else actual in _NUMERIC or actual == pl.Null
        if not ok and not (canonical == "SAMPLE_ID" and actual == pl.String):
            raise MetadataSchemaError(f"{source}: column {name!r} has type {actual}, expected {dtype} (as {canonical})")
        found[canonical] = name
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise MetadataSchemaError(
            f"{source}: missing required column(s) {missing}; accepted names: "
            + "; ".join(f"{c}: {COLUMNS[c][0]}" for c in missing)
            + f". Columns present: {list(schema)}"
        )
    return found


def normalise_metadata(frame: pl.LazyFrame, part: str, source: str = "<frame>", first_row: int = 0) -> pl.LazyFrame:
    """Rename to LAION-400M's column names, cast types, and add ``uid``, ``part``, ``row``
    (``row`` counts from ``first_row``: the file row of a chunk's first row).

    Output columns: uid, part, row, then SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW,
    similarity (null where the source lacks them), then any other source columns unchanged.
    """
    schema = frame.collect_schema()
    found = _resolve_columns(schema, source)
    used = set(found.values())
    canonical = [
        (pl.col(found[c]).cast(dtype, strict=False) if c in found else pl.lit(None, dtype)).alias(c)
        for c, (_, dtype) in COLUMNS.items()
    ]
    extras = [pl.col(c) for c in schema if c not in used and c not in COLUMNS and c not in ("uid", "part", "row")]
    return (
        frame.with_row_index("row", offset=first_row)
        .with_columns(pl.col("row").cast(pl.Int64))
        .select(
            uid_expr(part),
            pl.lit(part).alias("part"),
            pl.col("row"),
            *canonical,
            *extras,
        )
    )


def read_part(uri: str, part: str, start: int = 0, stop: int | None = None) -> pl.DataFrame:
    """Read and normalise rows ``start..stop-1`` (default: all) of one metadata parquet file,
    reading only the row groups that hold them. Errors name the file."""
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"LAION metadata part {part!r} not found: {uri}")
    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            n = pf.metadata.num_rows
            stop = n if stop is None else min(stop, n)
            groups, first, at = [], None, 0
            for g in range(pf.metadata.num_row_groups):
                size = pf.metadata.row_group(g).num_rows
                if at < stop and at + size > start:
                    groups.append(g)
                    first = at if first is None else first
                at += size
            if groups:
                table = pf.read_row_groups(groups).slice(start - first, max(0, stop - start))
            else:
                table = pf.schema_arrow.empty_table()
            raw = pl.from_arrow(table)
    except Exception as exc:
        raise MetadataSchemaError(f"{uri}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    return normalise_metadata(raw.lazy(), part, source=uri, first_row=start).collect()


def metadata_summary(frame: pl.DataFrame) -> dict:
    """Row count, null counts of the canonical columns and the NSFW share."""
    rows = frame.height
    nulls = frame.select([pl.col(c).null_count() for c in COLUMNS]).row(0, named=True)
    empty_text = frame.select((pl.col("TEXT").fill_null("").str.strip_chars() == "").sum()).item()
    nsfw = frame.select((pl.col("NSFW").str.to_uppercase() == "NSFW").sum()).item() if rows else 0
    return {
        "rows": rows,
        "null_counts": nulls,
        "empty_captions": int(empty_text),
        "nsfw_share": (nsfw / rows) if rows else 0.0,
    }
