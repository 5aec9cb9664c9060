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

The export streams part by part (:func:`export_subset` takes the parts and a function giving
each one's uids): a pruned pool (seed 004: the deduplicated LAION minus the rows near an eval
set) is nearly all of LAION, so memory is set by the largest part, not by the subset. The
parquet files grow a row group per part in a local staging folder and are moved into place
at the end; the shards continue across parts, a running count giving the keys.

A subset may label its rows with a class (SWAT's samples: ``uids_of`` gives a frame with
``uid`` and ``cls``): ``rows.parquet`` then has a ``cls`` column and each webdataset sample a
``{key}.cls`` member (the class index as text, webdataset's label convention).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.io import files
from laionlab.io.metadata import uid_part_series

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
    "subset_parts",
    "subset_rows",
    "takedown_table",
    "train_data_pattern",
]

FORMATS = ("img2dataset", "webdataset", "datacomp")
SAMPLES_PER_SHARD = 10_000  # img2dataset's number_sample_per_shard default
MATCHED_BY = ("uid", "url", "sha256")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_ROWS_SCHEMA = {"uid": pl.String, "part": pl.String, "url": pl.String, "caption": pl.String, "sha256": pl.String}
_MATCH_SCHEMA = {"uid": pl.String, "matched_by": pl.String, "item": pl.String}
_REMOVED_SCHEMA = {"uid": pl.String, "part": pl.String, "matched_by": pl.String, "item": pl.String}
_KEYS_SCHEMA = {"uid": pl.String, "key": pl.String, "shard": pl.String}
_IMG2DATASET_SCHEMA = {"url": pl.String, "caption": pl.String, "uid": pl.String}
_DATACOMP_SCHEMA = {"uid": pl.String, "part": pl.String, "uid_hex": pl.String}
# ExportSummary.paths: what each output (rows, removed, each format) is called in the folder
_OUTPUT_NAMES = {
    "rows": "rows.parquet",
    "removed": "removed.parquet",
    "img2dataset": "img2dataset.parquet",
    "webdataset": "webdataset",
    "datacomp": "datacomp.npy",
}


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


def subset_parts(uids: Iterable[str] | pl.Series | pl.DataFrame) -> dict[str, pl.Series | pl.DataFrame]:
    """A whole subset's uids (``"<part>:<row>"``) split by part: part → its uids, each once,
    sorted; what :func:`export_subset` reads part by part (``groups.__getitem__``). For a
    subset that fits in memory (LAIONet, a DataComp selection, SWAT's samples); a ValueError
    names a malformed uid. Given a frame (``uid`` and ``cls``), part → its rows (a uid's
    first row)."""
    if isinstance(uids, pl.DataFrame):
        if "uid" not in uids.columns:
            raise ValueError(f"uids: expected a uid column, got {uids.columns}")
        frame = uids.unique("uid", keep="first", maintain_order=True).sort("uid")
        frame = frame.with_columns(part=uid_part_series(validate.string_series("uid", frame["uid"])))
        return {part: group.drop("part") for (part,), group in frame.group_by("part", maintain_order=True)}
    series = validate.string_series("uid", uids if isinstance(uids, pl.Series) else list(uids))
    frame = series.to_frame().unique().sort("uid")
    frame = frame.with_columns(part=uid_part_series(frame["uid"]))
    return {part: group["uid"] for (part,), group in frame.group_by("part", maintain_order=True)}


def _part_subset(part: str, uids) -> pl.DataFrame:
    """(uid, part) of ``part``'s uids, each once, sorted; a ValueError names a uid that is
    malformed or of another part."""
    uids = validate.string_series("uid", uids).unique().sort()
    other = uids.filter(uid_part_series(uids) != part)
    if other.len():
        raise ValueError(f"uids of part {part!r}: expected '{part}:<row>', got {other[0]!r}")
    return uids.to_frame().with_columns(part=pl.lit(part, pl.String))


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
        rows = subset_rows(meta.select("uid", part=pl.lit(part)), lambda _: meta, status_of)
        found.append(match_removals(rows, removal).with_columns(part=pl.lit(part)))
    schema = {**_MATCH_SCHEMA, "part": pl.String}
    return pl.concat(found).select(list(schema)) if found else pl.DataFrame(schema=schema)


def takedown_table(
    subsets: Mapping[str, Iterable[pl.Series]], listed: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Which subsets hold a listed row: per subset (name → its uids, a chunk at a time: a part,
    a row group of an export), its rows and the listed rows it holds (one table), and the
    items (subset, uid, matched_by, item). Only the listed uids of a chunk are kept, so a
    subset as large as LAION is read in the memory of its largest chunk."""
    wanted = listed["uid"].unique().implode()
    counts, items = [], []
    for name, chunks in subsets.items():
        rows, held = 0, [pl.Series("uid", [], pl.String)]
        for uids in chunks:
            rows += len(uids)
            held.append(uids.filter(uids.is_in(wanted)).cast(pl.String).rename("uid"))
        hit = listed.join(pl.concat(held).unique().to_frame(), on="uid", how="semi")
        counts.append({"subset": name, "rows": rows, "listed_rows": hit["uid"].n_unique()})
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


class _ShardWriter:
    """Webdataset shards ``folder/{00000..}.tar`` of ``per_shard`` samples, filled in order
    across parts: the open shard is a tar in the local ``staging`` folder, moved (uploaded)
    into place through :func:`files.atomic_write` once full or at :meth:`close`, so only whole
    shards are ever visible. Holds one sample at a time and a count, nothing per uid."""

    def __init__(self, folder: str, staging: str, per_shard: int):
        self.folder, self.staging, self.per_shard = folder, staging, per_shard
        self.count = 0  # samples written: the next sample's key
        self.shards: list[str] = []  # the shards in place
        self._tar: tarfile.TarFile | None = None  # the open shard, at self._staged
        self._staged = ""

    @property
    def key(self) -> str:
        """The next sample's key."""
        return f"{self.count:09d}"

    @property
    def shard(self) -> str:
        """The file name of the shard the next sample goes in."""
        return f"{self.count // self.per_shard:05d}.tar"

    def add(self, members: dict[str, bytes]) -> None:
        """Write one sample (extension → bytes) under :attr:`key`."""
        if self._tar is None:
            self._staged = os.path.join(self.staging, self.shard)
            self._tar = tarfile.open(self._staged, "w", format=tarfile.USTAR_FORMAT)
        for ext, data in members.items():
            _add(self._tar, f"{self.key}.{ext}", data)
        self.count += 1
        if self.count % self.per_shard == 0:
            self._finish()

    def close(self) -> None:
        """Put the last, partly filled shard in place."""
        if self._tar is not None:
            self._finish()

    def discard(self) -> None:
        """Close the open shard without putting it in place (the export failed)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def _finish(self) -> None:
        self._tar.close()
        self._tar, staged = None, self._staged
        uri = files.join(self.folder, os.path.basename(staged))
        files.atomic_write(uri, lambda target: shutil.move(staged, target))
        self.shards.append(uri)


def _copy_images(
    part: str, rows: pl.DataFrame, shards_of: Callable[[str], list[str]], writer: _ShardWriter
) -> pl.DataFrame:
    """Add the downloaded images of ``part``'s ``rows`` (uid, part, url, caption, sha256) to
    ``writer``, in the order of the part's img2dataset shards: per sample ``{key}.{jpg|png|webp}``
    (the stored bytes, not re-encoded), ``{key}.txt`` (the caption) and ``{key}.json`` (uid,
    key, url, caption, sha256, stored and original sizes).

    Returns ``rows`` with ``key`` and ``shard`` (its shard's file name), both null for a row
    with no downloaded image (not in the export)."""
    from laionlab.io.shards import IMAGE_EXTENSIONS, iter_shard_samples

    placed = {"uid": [], "key": [], "shard": []}
    try:
        shards = shards_of(part) if rows.height else []
    except FileNotFoundError:  # the part was never downloaded: none of its rows has an image
        shards = []
    position = dict(zip(rows["uid"].to_list(), range(rows.height)))  # the rows not placed yet
    for uid, stored, meta in iter_shard_samples(shards, position):
        ext = next((e for e in IMAGE_EXTENSIONS if e in stored), None)
        i = position.pop(uid, None) if ext is not None else None
        if i is None:  # no image, or a second copy of a placed one
            continue
        row = rows.row(i, named=True)
        info = {"uid": uid, "key": writer.key, "url": row["url"], "caption": row["caption"], "sha256": row["sha256"]}
        info.update({k: meta[k] for k in ("width", "height", "original_width", "original_height") if k in meta})
        for name, value in (("uid", uid), ("key", writer.key), ("shard", writer.shard)):
            placed[name].append(value)
        caption = (row["caption"] or "").encode("utf-8")
        members = {ext: stored[ext], "txt": caption}
        if row.get("cls") is not None:
            info["cls"] = row["cls"]
            members["cls"] = str(row["cls"]).encode()
        writer.add({**members, "json": json.dumps(info).encode("utf-8")})
    return rows.join(pl.DataFrame(placed, schema=_KEYS_SCHEMA), on="uid", how="left", maintain_order="left")


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


class _ParquetStream:
    """A parquet file of ``schema`` written into the local ``staging`` folder a frame at a time
    (:meth:`append`: a row group of its own, or more past pyarrow's 1Mi rows a group) and
    moved (uploaded) to ``uri`` by :meth:`commit`: until then nothing is visible at ``uri``."""

    def __init__(self, uri: str, staging: str, schema: dict[str, pl.DataType]):
        import pyarrow.parquet as pq

        self.uri, self.columns = uri, list(schema)
        self.path = os.path.join(staging, os.path.basename(uri))
        self._schema = pl.DataFrame(schema=schema).to_arrow().schema
        self._writer = pq.ParquetWriter(self.path, self._schema, compression="zstd")

    def append(self, frame: pl.DataFrame) -> None:
        if frame.height:
            table = frame.select(self.columns).to_arrow().cast(self._schema)
            self._writer.write_table(table)

    def close(self) -> None:
        if self._writer.is_open:
            self._writer.close()

    def commit(self) -> None:
        self.close()
        files.atomic_write(self.uri, lambda target: shutil.move(self.path, target))


class _Outputs:
    """The files of one export under ``folder``, fed a part's kept rows at a time (:meth:`add`)
    and put in place by :meth:`commit`; a context that, left without a commit, removes what
    it staged (the shards already in place stay: each one is whole)."""

    def __init__(self, folder: str, formats: Sequence[str], per_shard: int, labelled: bool = False):
        self.folder, self.formats, self._per_shard, self._labelled = folder, formats, per_shard, labelled
        wanted = ("rows", "removed", *formats)
        self.paths = {k: files.join(folder, name) for k, name in _OUTPUT_NAMES.items() if k in wanted}
        self.exported = {f: 0 for f in FORMATS if f in formats}
        self.kept = 0

    def __enter__(self) -> _Outputs:
        files.makedirs(self.folder)
        self._staging = tempfile.TemporaryDirectory(prefix=".export-", dir=files.local_path(self.folder))
        staging, self.writer = self._staging.name, None
        keys = {"key": pl.String, "shard": pl.String} if "webdataset" in self.formats else {}
        labels = {"cls": pl.Int64} if self._labelled else {}
        self.streams = {"rows": _ParquetStream(self.paths["rows"], staging, {**_ROWS_SCHEMA, **labels, **keys})}
        if "img2dataset" in self.formats:
            self.streams["img2dataset"] = _ParquetStream(self.paths["img2dataset"], staging, _IMG2DATASET_SCHEMA)
        if "webdataset" in self.formats:
            self.writer = _ShardWriter(self.paths["webdataset"], staging, self._per_shard)
        if "datacomp" in self.formats:
            datacomp = files.join(self.folder, "datacomp.parquet")
            self.streams["datacomp"] = _ParquetStream(datacomp, staging, _DATACOMP_SCHEMA)
            self._ids = open(os.path.join(staging, "datacomp.ids"), "wb")  # each part's ids, UID_DTYPE, unsorted
        return self

    def __exit__(self, *exc) -> None:
        for stream in self.streams.values():
            stream.close()
        if self.writer is not None:
            self.writer.discard()
        if "datacomp" in self.formats:
            self._ids.close()
        self._staging.cleanup()

    def add(self, part: str, kept: pl.DataFrame, shards_of: Callable[[str], list[str]]) -> None:
        """Append ``part``'s kept rows (uid, part, url, caption, sha256) to every format."""
        from laionlab.curation.datacomp import datacomp_uids, export_frame

        self.kept += kept.height
        if "img2dataset" in self.streams:
            self.streams["img2dataset"].append(img2dataset_frame(kept))
            self.exported["img2dataset"] += kept.height
        if self.writer is not None:
            kept = _copy_images(part, kept, shards_of, self.writer)
            self.exported["webdataset"] += kept.height - kept["key"].null_count()
        if "datacomp" in self.streams:
            frame = export_frame(kept.select("uid"))
            self.streams["datacomp"].append(frame)
            datacomp_uids(frame["uid_hex"].to_list()).tofile(self._ids)
            self.exported["datacomp"] += frame.height
        self.streams["rows"].append(kept)

    def commit(self, removed: pl.DataFrame) -> None:
        """Put every file in place, ``rows.parquet`` last (its presence says the export is whole)."""
        if self.writer is not None:
            self.writer.close()
        if "datacomp" in self.paths:
            self._ids.close()
            files.atomic_write(self.paths["datacomp"], self._save_ids, suffix=".npy")
        for name in ("img2dataset", "datacomp"):
            if name in self.streams:
                self.streams[name].commit()
        files.atomic_write_parquet(removed, self.paths["removed"])
        self.streams["rows"].commit()

    def _save_ids(self, target: str) -> None:
        """DataComp's sorted id array, (n,) UID_DTYPE, as the ``.npy`` file ``target``: the
        parts' ids copied into it and sorted there, through a memory map (pages the kernel can
        write back, not 16 bytes a row of the process's own memory)."""
        from laionlab.curation.datacomp import UID_DTYPE

        n = self.exported["datacomp"]
        if n == 0:  # an empty file cannot be mapped
            np.save(target, np.empty(0, UID_DTYPE))
            return
        ids = np.lib.format.open_memmap(target, mode="w+", dtype=UID_DTYPE, shape=(n,))
        ids[:] = np.memmap(self._ids.name, dtype=UID_DTYPE, mode="r")
        ids.sort()  # DataComp's subset files are sorted
        ids.flush()


def _uids_and_labels(part: str, got, labelled: bool) -> tuple[pl.Series, pl.DataFrame | None]:
    """``uids_of(part)``'s uids, and (uid, cls) when the export is ``labelled``."""
    if not labelled:
        return (got["uid"] if isinstance(got, pl.DataFrame) else got), None
    if not isinstance(got, pl.DataFrame) or "cls" not in got.columns or "uid" not in got.columns:
        raise ValueError(f"uids of part {part!r}: a labelled export needs a frame with uid and cls columns")
    try:
        labels = got.select("uid", pl.col("cls").cast(pl.Int64)).unique("uid", keep="first")
    except pl.exceptions.InvalidOperationError as err:
        raise ValueError(f"uids of part {part!r}: cls must be integer class indices ({err})") from None
    return got["uid"], labels


def export_subset(
    parts: Sequence[str],
    uids_of: Callable[[str], pl.Series],
    metadata_of: Callable[[str], pl.DataFrame],
    status_of: Callable[[str], pl.DataFrame | None],
    shards_of: Callable[[str], list[str]],
    folder: str,
    formats: Sequence[str] = FORMATS,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    removal: RemovalList | None = None,
    log: Callable[[str], None] | None = None,
    labelled: bool = False,
) -> ExportSummary:
    """Write a subset in ``formats`` under ``folder``, minus the rows ``removal`` lists (by
    uid, URL or sha256), one part at a time in the order of ``parts``: memory is set by the
    largest part, not by the subset (a pruned pool is nearly all of LAION). What grows with
    the subset: the removed rows, and DataComp's ids (16 bytes a row), kept in a file and
    sorted through a memory map at the end.

    ``uids_of(part)``: the subset's uids in ``part`` (``"<part>:<row>"``; may be empty; a uid
    of another part is a ValueError naming it); ``metadata_of(part)``: uid, URL, TEXT;
    ``status_of(part)``: uid, sha256 of the downloaded rows, or None; ``shards_of(part)``: the
    part's img2dataset shards (FileNotFoundError: never downloaded, so no images). A subset
    held whole is split by :func:`subset_parts`: ``export_subset(sorted(groups),
    groups.__getitem__, ...)``. ``log`` gets a progress line per part. ``labelled``: ``uids_of``
    gives a frame with ``uid`` and ``cls`` (an integer class), written as ``rows.parquet``'s
    ``cls`` and each sample's ``{key}.cls``.

    Writes ``rows.parquet`` (the exported rows: uid, part, url, caption, sha256, and key /
    shard where a webdataset was written), ``removed.parquet`` (uid, part, matched_by, item),
    and per format: ``img2dataset.parquet``; ``webdataset/{00000..}.tar``; ``datacomp.npy``
    and ``datacomp.parquet`` (uid, part, uid_hex). The parquet files get a row group per
    non-empty part (more past 1Mi rows), written in a local staging folder and moved into
    place once every part is done, ``rows.parquet`` last; shards are moved into place as they
    fill. An export that fails leaves no parquet or ``.npy`` file (whole shards it wrote may
    stay)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected one or more of {list(FORMATS)}, got {list(formats)}")
    per_shard = validate.int_at_least("samples_per_shard", samples_per_shard, 1)
    repeated = [p for p, n in Counter(parts).items() if n > 1]
    if repeated:
        raise ValueError(f"parts: expected each part once, got {repeated[0]!r} more than once")
    removal, log = removal or RemovalList(), log or (lambda _: None)
    subset, removed = 0, []
    with _Outputs(folder, formats, per_shard, labelled) as out:
        for i, part in enumerate(parts, 1):
            uids, labels = _uids_and_labels(part, uids_of(part), labelled)
            rows = subset_rows(_part_subset(part, uids), metadata_of, status_of)
            if labels is not None:
                rows = rows.join(labels, on="uid", how="left", maintain_order="left")
            matched = match_removals(rows, removal)
            removed.append(matched.select("uid", pl.lit(part, pl.String).alias("part"), "matched_by", "item"))
            out.add(part, rows.join(matched, on="uid", how="anti"), shards_of)
            subset += rows.height
            images = f", {out.writer.count:,} images so far" if out.writer is not None else ""
            log(f"part {i}/{len(parts)} {part}: {rows.height:,} rows, {matched['uid'].n_unique():,} removed{images}")
        removed = pl.concat(removed) if removed else pl.DataFrame(schema=_REMOVED_SCHEMA)
        out.commit(removed)
    summary = ExportSummary(subset, removed, out.exported, out.paths)
    if out.writer is not None:
        summary.missing_images = out.kept - out.exported["webdataset"]
        summary.shards = out.writer.shards
        summary.train_data = train_data_pattern(out.paths["webdataset"], len(out.writer.shards))
    return summary
