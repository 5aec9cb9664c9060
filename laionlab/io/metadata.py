"""LAION metadata parts: listing, schema validation, normalisation and stable uids.

LAION-400M parts carry SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity;
LAION-2B parts name some of these differently (``punsafe`` instead of NSFW, no SAMPLE_ID) and
the clip-retrieval / LAION-5B embedding release ships ``metadata_XXXX.parquet`` files with
lower-case ``url`` and ``caption``. All are normalised to LAION-400M's names; columns that are
not known are kept as they are, so nothing the user had is dropped.

Every row gets ``uid = "<part>:<row:09d>"`` (part = file stem, row = position in the file),
stable across re-runs, which is what lineage joins across assets use.
"""

from __future__ import annotations

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


def uid_expr(part: str) -> pl.Expr:
    """The polars expression behind :func:`make_uid`, over a ``row`` column."""
    return pl.format("{}:{}", pl.lit(part), pl.col("row").cast(pl.String).str.zfill(9)).alias("uid")


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
        if key in parts:
            raise ValueError(f"two source files map to the same part key {key!r}: {parts[key]} and {path}")
        parts[key] = path if protocol in ("file", "local") else f"{protocol}://{path}"
    return parts


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
            raise MetadataSchemaError(
                f"{source}: column {name!r} has type {actual}, expected {dtype} (as {canonical})"
            )
        found[canonical] = name
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise MetadataSchemaError(
            f"{source}: missing required column(s) {missing}; accepted names: "
            + "; ".join(f"{c}: {COLUMNS[c][0]}" for c in missing)
            + f". Columns present: {list(schema)}"
        )
    return found


def normalise_metadata(frame: pl.LazyFrame, part: str, source: str = "<frame>") -> pl.LazyFrame:
    """Rename to LAION-400M's column names, cast types, and add ``uid``, ``part``, ``row``.

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
        frame.with_row_index("row")
        .with_columns(pl.col("row").cast(pl.Int64))
        .select(
            uid_expr(part),
            pl.lit(part).alias("part"),
            pl.col("row"),
            *canonical,
            *extras,
        )
    )


def read_part(uri: str, part: str) -> pl.DataFrame:
    """Read and normalise one metadata parquet file. Errors name the file."""
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"LAION metadata part {part!r} not found: {uri}")
    try:
        with fs.open(path, "rb") as f:
            raw = pl.read_parquet(f)
    except Exception as exc:
        raise MetadataSchemaError(f"{uri}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    return normalise_metadata(raw.lazy(), part, source=uri).collect()


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
