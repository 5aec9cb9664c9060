"""Exports of a curated subset for training and for peers, and takedown propagation (issue 20).

A subset is a list of uids (``"<part>:<row>"``) chosen by a curation step (LAIONet, SemDeDup's
kept rows, DBP, DataComp's filters, MetaCLIP's balanced sample). Three formats, each one a
consumer's own input:

* **img2dataset** (``img2dataset.parquet``): ``url``, ``caption``, ``uid``, what
  ``img2dataset --input_format parquet --url_col url --caption_col caption
  --save_additional_columns '["uid"]'`` downloads (its defaults are ``url_col="url"`` and
  ``caption_col=None``): a peer re-downloads the subset from the web, as LAION is shared.
* **webdataset** (``webdataset/{00000..N}.tar``): the images already downloaded, copied byte
  for byte from the parts' img2dataset shards, ``{key}.jpg`` (or the stored extension),
  ``{key}.txt`` (caption) and ``{key}.json`` (uid, url, sizes), ``samples_per_shard`` samples
  a shard (img2dataset's default 10,000), written part by part, one sample held at a time.
  open_clip's ``--dataset-type webdataset`` reads it (``open_clip_train/data.py`` renames
  ``jpg;png;jpeg;webp`` to the image and ``txt`` to the text).
* **datacomp** (``datacomp.npy`` and ``datacomp.parquet``): DataComp's sorted ``u8,u8`` uid
  array (:func:`laionlab.curation.datacomp.datacomp_uids`, what its resharder's
  ``--subset_file`` reads) and the uid ↔ uid_hex map.

A removal list (takedown requests: uids, URLs or the sha256 of the downloaded bytes, one a
line in a text file, or columns ``uid``/``url``/``sha256`` of a parquet or csv) is applied
before anything is written; what it removed is returned and written (``removed.parquet``).
The list is a local file (or a URI of the data store), never fetched from the web.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import polars as pl

from laionlab.io import files

__all__ = [
    "FORMATS",
    "SAMPLES_PER_SHARD",
    "ExportSummary",
    "RemovalList",
    "export_subset",
    "img2dataset_frame",
    "listed_rows",
    "match_removals",
    "read_removal_list",
    "subset_frame",
    "subset_rows",
    "takedown_table",
    "train_data_pattern",
    "write_webdataset",
]

FORMATS = ("img2dataset", "webdataset", "datacomp")
SAMPLES_PER_SHARD = 10_000  # img2dataset's number_sample_per_shard default
MATCHED_BY = ("uid", "url", "sha256")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_ROWS_SCHEMA = {"uid": pl.String, "part": pl.String, "url": pl.String, "caption": pl.String, "sha256": pl.String}
_MATCH_SCHEMA = {"uid": pl.String, "matched_by": pl.String, "item": pl.String}


# --- removal lists --------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovalList:
    """Takedown items by kind: uids, URLs and sha256 hex digests (lower-case)."""

    uids: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()
    sha256: frozenset[str] = frozenset()
    source: str = ""

    def __len__(self) -> int:
        return len(self.uids) + len(self.urls) + len(self.sha256)

    @classmethod
    def of(cls, items: Iterable[str], source: str = "") -> RemovalList:
        """Items of unknown kind, told apart by their form: 64 hex digits are a sha256, a
        string with ``://`` a URL, anything else a uid. Blank items and ``#`` comments are
        skipped."""
        uids, urls, hashes = set(), set(), set()
        for raw in items:
            item = str(raw).strip()
            if not item or item.startswith("#"):
                continue
            if _SHA256.match(item):
                hashes.add(item.lower())
            elif "://" in item:
                urls.add(item)
            else:
                uids.add(item)
        return cls(frozenset(uids), frozenset(urls), frozenset(hashes), source)


def read_removal_list(path: str) -> RemovalList:
    """The removal list in ``path`` (a local path or a URI of the data store; never fetched
    over HTTP): a ``.parquet`` or ``.csv`` with any of the columns ``uid``, ``url`` (or
    ``URL``), ``sha256`` (or a single column of mixed items), or a text file with one item a
    line (told apart as in :meth:`RemovalList.of`)."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"removal list: expected a file path, got {path!r}")
    if files.protocol(path) in ("http", "https"):
        raise ValueError(f"removal list {path!r}: expected a local file or a data-store URI, not a web address")
    if not files.exists(path):
        raise FileNotFoundError(f"removal list {path!r} does not exist")
    lower = path.lower()
    if lower.endswith((".parquet", ".csv")):
        frame = files.read_parquet(path) if lower.endswith(".parquet") else pl.read_csv(files.read_bytes(path))
        return _removal_from_frame(frame, path)
    return RemovalList.of(files.read_bytes(path).decode("utf-8").splitlines(), path)


def _removal_from_frame(frame: pl.DataFrame, path: str) -> RemovalList:
    columns = {c.lower(): c for c in frame.columns}
    known = [k for k in MATCHED_BY if k in columns]
    if not known:
        if frame.width == 1:
            return RemovalList.of(frame.to_series().drop_nulls().cast(pl.String).to_list(), path)
        raise ValueError(f"removal list {path}: expected columns among {list(MATCHED_BY)}, got {frame.columns}")

    def values(kind: str) -> frozenset[str]:
        if kind not in columns:
            return frozenset()
        series = frame[columns[kind]].drop_nulls().cast(pl.String).str.strip_chars()
        series = series.filter(series.str.len_chars() > 0)
        return frozenset(series.str.to_lowercase().to_list() if kind == "sha256" else series.to_list())

    return RemovalList(values("uid"), values("url"), values("sha256"), path)


def match_removals(rows: pl.DataFrame, removal: RemovalList) -> pl.DataFrame:
    """The rows of ``rows`` (uid, and url / sha256 where known) that ``removal`` lists: one
    row per (uid, matched_by, item), matched_by one of uid, url, sha256."""
    if "uid" not in rows.columns:
        raise ValueError(f"rows: expected a 'uid' column, got {rows.columns}")
    found = []
    for kind, items in (("uid", removal.uids), ("url", removal.urls), ("sha256", removal.sha256)):
        if not items or kind not in rows.columns:
            continue
        col = pl.col(kind).cast(pl.String)
        col = col.str.to_lowercase() if kind == "sha256" else col
        hit = rows.select("uid", col.alias("item")).filter(pl.col("item").is_in(sorted(items)))
        found.append(hit.select("uid", pl.lit(kind).alias("matched_by"), "item"))
    if not found:
        return pl.DataFrame(schema=_MATCH_SCHEMA)
    return pl.concat(found).unique(maintain_order=True).sort("uid", "matched_by")


# --- a subset's rows ------------------------------------------------------------------------


def subset_frame(uids: Iterable[str] | pl.Series) -> pl.DataFrame:
    """(uid, part) of a subset's uids (``"<part>:<row>"``), each once, sorted."""
    frame = pl.DataFrame({"uid": pl.Series("uid", list(uids), dtype=pl.String)}).unique().sort("uid")
    parts = frame["uid"].str.extract(r"^(.*):[^:]*$", 1)
    if parts.null_count():
        bad = frame.filter(parts.is_null())["uid"][0]
        raise ValueError(f"uids: expected '<part>:<row>', got {bad!r}")
    return frame.with_columns(part=parts)


def subset_rows(
    subset: pl.DataFrame,
    metadata_of: Callable[[str], pl.DataFrame],
    status_of: Callable[[str], pl.DataFrame | None],
) -> pl.DataFrame:
    """The subset's rows with what the exports need: uid, part, url, caption (metadata URL and
    TEXT, null caption as ""), sha256 (img2dataset's hash of the downloaded bytes; null where
    the part has no download or the row failed). Reads one part at a time (``metadata_of``:
    uid, URL, TEXT; ``status_of``: uid, sha256, or None); a uid absent from its part's
    metadata is an error naming it."""
    if not {"uid", "part"} <= set(subset.columns):
        raise ValueError(f"subset: expected columns uid, part, got {subset.columns}")
    out = []
    for part in subset["part"].unique(maintain_order=True).to_list():
        uids = subset.filter(pl.col("part") == part).select("uid")
        caption = pl.col("TEXT").fill_null("").alias("caption")
        meta = metadata_of(part).select("uid", pl.col("URL").alias("url"), caption)
        rows = uids.join(meta, on="uid", how="left", maintain_order="left")
        if rows["url"].null_count():
            missing = rows.filter(pl.col("url").is_null())["uid"].head(3).to_list()
            raise ValueError(f"subset: uids missing from part {part!r}'s metadata, e.g. {missing}")
        status = status_of(part)
        if status is not None and "sha256" in status.columns:
            rows = rows.join(
                status.select("uid", pl.col("sha256").cast(pl.String)), on="uid", how="left", maintain_order="left"
            )
        else:
            rows = rows.with_columns(sha256=pl.lit(None, pl.String))
        out.append(rows.with_columns(part=pl.lit(part)).select(list(_ROWS_SCHEMA)))
    return pl.concat(out) if out else pl.DataFrame(schema=_ROWS_SCHEMA)


def listed_rows(
    parts: Sequence[str],
    metadata_of: Callable[[str], pl.DataFrame],
    status_of: Callable[[str], pl.DataFrame | None],
    removal: RemovalList,
) -> pl.DataFrame:
    """Every row of ``parts`` that ``removal`` lists (uid, part, matched_by, item), read one
    part at a time: what a takedown reaches, whatever subset holds it."""
    found = []
    for part in parts:
        meta = metadata_of(part)
        rows = subset_rows(subset_frame(meta["uid"]), lambda _: meta, status_of)
        found.append(match_removals(rows, removal).with_columns(part=pl.lit(part)))
    schema = {**_MATCH_SCHEMA, "part": pl.String}
    return pl.concat(found).select(list(schema)) if found else pl.DataFrame(schema=schema)


def takedown_table(subsets: dict[str, pl.DataFrame], listed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Which subsets hold a listed row: per subset (name → a frame with ``uid``), its rows and
    the listed rows it holds (one table), and the items (subset, uid, matched_by, item)."""
    counts, items = [], []
    for name, frame in subsets.items():
        hit = listed.join(frame.select("uid").unique(), on="uid", how="semi")
        counts.append({"subset": name, "rows": frame.height, "listed_rows": hit["uid"].n_unique()})
        items.append(hit.select(pl.lit(name).alias("subset"), "uid", "matched_by", "item"))
    schema = {"subset": pl.String, "uid": pl.String, "matched_by": pl.String, "item": pl.String}
    return (
        pl.DataFrame(counts, schema={"subset": pl.String, "rows": pl.Int64, "listed_rows": pl.Int64}),
        pl.concat(items) if items else pl.DataFrame(schema=schema),
    )


# --- the formats ----------------------------------------------------------------------------


def img2dataset_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """img2dataset's parquet input: url, caption, uid (``--url_col url --caption_col caption
    --save_additional_columns '["uid"]'``)."""
    return rows.select("url", pl.col("caption").fill_null(""), "uid")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0  # byte-identical shards for the same input
    tar.addfile(info, io.BytesIO(data))


def _shard_samples(
    rows: pl.DataFrame, shards_of: Callable[[str], list[str]], per_shard: int, placed: dict[str, tuple[str, str]]
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, extension → bytes) of each exported sample, part by part, one at a time;
    ``placed`` records each uid's key and shard file name."""
    from laionlab.io.shards import IMAGE_EXTENSIONS, iter_shard_samples

    for part in rows["part"].unique(maintain_order=True).to_list():
        by_uid = {r["uid"]: r for r in rows.filter(pl.col("part") == part).iter_rows(named=True)}
        try:
            shards = shards_of(part)
        except FileNotFoundError:  # the part was never downloaded: none of its rows has an image
            continue
        for uid, stored, meta in iter_shard_samples(shards, by_uid):
            ext = next((e for e in IMAGE_EXTENSIONS if e in stored), None)
            if ext is None or uid in placed:
                continue
            row, key = by_uid[uid], f"{len(placed):09d}"
            info = {"uid": uid, "key": key, "url": row["url"], "caption": row["caption"], "sha256": row["sha256"]}
            info.update({k: meta[k] for k in ("width", "height", "original_width", "original_height") if k in meta})
            placed[uid] = (key, f"{len(placed) // per_shard:05d}.tar")
            caption = (row["caption"] or "").encode("utf-8")
            yield key, {ext: stored[ext], "txt": caption, "json": json.dumps(info).encode("utf-8")}


def write_webdataset(
    rows: pl.DataFrame,
    shards_of: Callable[[str], list[str]],
    folder: str,
    samples_per_shard: int = SAMPLES_PER_SHARD,
) -> pl.DataFrame:
    """Copy the downloaded images of ``rows`` (uid, part, url, caption, sha256) from their
    parts' img2dataset shards (``shards_of(part)``) into webdataset shards
    ``folder/{00000..}.tar`` of ``samples_per_shard`` samples (img2dataset's default 10,000):
    per sample ``{key}.{jpg|png|webp}`` (the stored bytes, not re-encoded), ``{key}.txt``
    (the row's caption) and ``{key}.json`` (uid, key, url, caption, sha256, stored and
    original sizes), keys ``000000000``, ... in part then shard order. One sample is held at a
    time; each shard is written to a local temporary file and moved (uploaded) into place.

    Returns ``rows`` with ``key`` and ``shard`` (its shard's file name), both null for a row
    with no downloaded image (not in the export)."""
    from laionlab import validate

    per_shard = validate.int_at_least("samples_per_shard", samples_per_shard, 1)
    files.makedirs(folder)
    placed: dict[str, tuple[str, str]] = {}
    samples = _shard_samples(rows, shards_of, per_shard, placed)
    for index in itertools.count():
        first = next(samples, None)
        if first is None:
            break

        def write(target: str, first=first) -> None:
            with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as tar:
                for key, members in itertools.chain([first], itertools.islice(samples, per_shard - 1)):
                    for ext, data in members.items():
                        _add(tar, f"{key}.{ext}", data)

        files.atomic_write(files.join(folder, f"{index:05d}.tar"), write)
    keys = pl.DataFrame(
        {"uid": list(placed), "key": [k for k, _ in placed.values()], "shard": [s for _, s in placed.values()]},
        schema={"uid": pl.String, "key": pl.String, "shard": pl.String},
    )
    return rows.join(keys, on="uid", how="left", maintain_order="left")


def train_data_pattern(folder: str, shards: int) -> str:
    """open_clip's ``--train-data`` for ``shards`` shards under ``folder``: a brace range
    (``folder/{00000..00012}.tar``), expanded by braceexpand in its loader."""
    if shards <= 0:
        return ""
    if shards == 1:
        return files.join(folder, "00000.tar")
    return files.join(folder, f"{{00000..{shards - 1:05d}}}.tar")


# --- the whole export -----------------------------------------------------------------------


@dataclass
class ExportSummary:
    """What :func:`export_subset` wrote: rows per format, the removed rows (uid, part,
    matched_by, item), the written paths, open_clip's ``--train-data`` for the webdataset."""

    subset_rows: int
    removed: pl.DataFrame
    exported: dict[str, int]
    paths: dict[str, str]
    missing_images: int = 0
    shards: list[str] = field(default_factory=list)
    train_data: str = ""


def export_subset(
    subset: pl.DataFrame,
    metadata_of: Callable[[str], pl.DataFrame],
    status_of: Callable[[str], pl.DataFrame | None],
    shards_of: Callable[[str], list[str]],
    folder: str,
    formats: Sequence[str] = FORMATS,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    removal: RemovalList | None = None,
) -> ExportSummary:
    """Write ``subset`` (uid, part; :func:`subset_frame`) in ``formats`` under ``folder``,
    minus the rows ``removal`` lists (by uid, URL or sha256), reading one part at a time.

    Writes ``rows.parquet`` (the exported rows: uid, part, url, caption, sha256, and key /
    shard where a webdataset was written), ``removed.parquet`` (uid, part, matched_by, item),
    and per format: ``img2dataset.parquet``; ``webdataset/{00000..}.tar``; ``datacomp.npy``
    and ``datacomp.parquet`` (uid, part, uid_hex)."""
    from laionlab.curation.datacomp import datacomp_uids, export_frame

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected one or more of {list(FORMATS)}, got {list(formats)}")
    rows = subset_rows(subset, metadata_of, status_of)
    matched = match_removals(rows, removal or RemovalList())
    removed = matched.join(rows.select("uid", "part"), on="uid").select("uid", "part", "matched_by", "item")
    kept = rows.join(matched, on="uid", how="anti")
    exported, paths, summary = {}, {}, ExportSummary(rows.height, removed, {}, {})
    if "img2dataset" in formats:
        paths["img2dataset"] = files.join(folder, "img2dataset.parquet")
        files.atomic_write_parquet(img2dataset_frame(kept), paths["img2dataset"])
        exported["img2dataset"] = kept.height
    if "webdataset" in formats:
        paths["webdataset"] = files.join(folder, "webdataset")
        kept = write_webdataset(kept, shards_of, paths["webdataset"], samples_per_shard)
        exported["webdataset"] = kept.height - kept["key"].null_count()
        summary.missing_images = kept["key"].null_count()
        summary.shards = files.list_files(paths["webdataset"], "*.tar")
        summary.train_data = train_data_pattern(paths["webdataset"], len(summary.shards))
    if "datacomp" in formats:
        frame = export_frame(kept.select("uid"))
        paths["datacomp"] = files.join(folder, "datacomp.npy")
        files.atomic_save_npy(datacomp_uids(frame["uid_hex"].to_list()), paths["datacomp"])
        files.atomic_write_parquet(frame, files.join(folder, "datacomp.parquet"))
        exported["datacomp"] = frame.height
    paths["rows"], paths["removed"] = files.join(folder, "rows.parquet"), files.join(folder, "removed.parquet")
    files.atomic_write_parquet(kept, paths["rows"])
    files.atomic_write_parquet(removed, paths["removed"])
    summary.exported, summary.paths = exported, paths
    return summary
