"""LanceDB tables with one atomic per-partition write, whose cost is set by the partition.

``replace_part`` writes a partition's new rows in one commit, so readers see the old
partition or the new one, a failure mid-stream leaves the previous version as it was, and rows
of other partitions are never touched:

- a partition the table does not hold yet (every new LAION part) is **appended**
  (``Table.add``): time and memory are the part's, whatever the table holds (measured, 24
  parts × 50k rows × 256-d: part 24 took 0.40 s and the process peaked at 469 MiB, part 1
  0.48 s / 359 MiB);
- a partition it holds is **rewritten** by one ``merge_insert`` keyed by ``uid`` (update the
  rows it has, insert the new ones): one commit, so a reader sees the old partition or the
  new one. Its hash join holds the table's uid column (~70 bytes a row), not its vectors
  (24 parts × 50k rows × 512-d: 0.97 s, +640 MiB; the merge that also deleted by source,
  used before, took 5.5 s and +5.2 GiB). Rows of the old partition the new data lacks are
  deleted by uid in a second commit (logged); between the two a reader sees them too. A
  re-materialised part usually has the same uids, and then there is no second commit.

Whether the partition exists is answered by a BITMAP scalar index on the part column
(created with the first rows; fragments appended since are scanned until the index is
optimised, :meth:`LanceTables.optimize`). The check and the write run under a per-partition
lock on a local path; Lance itself does not detect two concurrent appends of the same new keys
(lance-format/lance#8949), so on an object store the Dagster instance serialises runs of one
partition (``tag_concurrency_limits`` on ``dagster/partition`` in dagster.yaml). Concurrent
writers to different partitions are resolved by Lance itself.

Empty writes are refused (a partition is never emptied by a write). merge_insert holds the
new rows of the partition in memory while it commits (it keeps the input to be able to
retry), so a rewrite's peak memory grows with the partition's size: LAION files are cut into
partitions of ``rows_per_partition`` rows (``LaionSource``).
Table creation is racy too (two concurrent creates can overwrite each other), so on a local
path it runs under a file lock; on an object store create tables before fanning out.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from laionlab.progress import Progress

if TYPE_CHECKING:  # lancedb is imported on first connect, not with the code location
    import lancedb

log = logging.getLogger(__name__)


class DimensionMismatchError(ValueError):
    """New vectors have another dimension than the table already holds."""


class EmptyPartitionError(ValueError):
    """A partition write with no rows (it would silently delete the partition)."""


class ShrinkError(ValueError):
    """A rewrite of a partition that lacks more of its old rows than allowed. The new rows are
    written, the old rows they lack are kept: nothing is lost until the caller allows it."""

    def __init__(self, table: str, part: str, stored: int, lost: list[str], max_shrink: float):
        self.table, self.part, self.stored, self.lost = table, part, stored, lost
        super().__init__(
            f"{table}[{part}]: the new data lacks {len(lost):,} of the {stored:,} rows stored "
            f"({len(lost) / stored:.1%}, more than the {max_shrink:.1%} allowed), e.g. uids {lost[:5]}; "
            "the stored rows are kept"
        )


@dataclass
class ReplaceResult:
    table: str
    part: str
    rows: int
    version: int
    seconds: float
    rewrite: bool = False  # the partition was in the table (merge) rather than new (append)


def embeddings_schema(dim: int) -> pa.Schema:
    """Schema of ``laion_embeddings``: unit-norm image/caption vectors, their raw norms,
    the image–caption cosine (clip_score) and the model id that produced them."""
    vec = pa.list_(pa.float32(), dim)
    return pa.schema(
        [
            pa.field("uid", pa.string(), nullable=False),
            pa.field("part", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("image_emb", vec),
            pa.field("text_emb", vec),
            pa.field("image_norm", pa.float32()),
            pa.field("text_norm", pa.float32()),
            pa.field("clip_score", pa.float32()),
        ]
    )


def vectors(arr: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) float array → Arrow fixed-size-list column, without a Python loop."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def vector_dims(schema: pa.Schema) -> dict[str, int]:
    return {f.name: f.type.list_size for f in schema if pa.types.is_fixed_size_list(f.type)}


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal for a Lance filter (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def equals(column: str, value: str, negate: bool = False) -> str:
    """The filter ``column = 'value'`` (``!=`` with ``negate``), the value quoted."""
    return f"{column} {'!=' if negate else '='} {quote_literal(value)}"


def one_of(column: str, values: Sequence[str], negate: bool = False) -> str:
    """The filter ``column IN ('a', 'b', ...)`` (``NOT IN`` with ``negate``), values quoted."""
    return f"{column} {'NOT IN' if negate else 'IN'} (" + ", ".join(quote_literal(v) for v in values) + ")"


# uids per ``uid IN (...)`` filter: one huge literal list is slow to parse, so lookups by uid
# are cut into filters of this many.
UID_FILTER_CHUNK = 20_000


def uid_filters(uids: Sequence[str], chunk: int = UID_FILTER_CHUNK) -> Iterator[str]:
    """``uid IN ('a', 'b', ...)`` filters covering ``uids``, ``chunk`` literals each."""
    for start in range(0, len(uids), chunk):
        yield one_of("uid", uids[start : start + chunk])


class LanceTables:
    """A LanceDB database at ``uri`` (local folder, ``file://`` or object-store URI);
    ``storage_options`` go to the object store (endpoint, region, allow_http ...)."""

    def __init__(
        self,
        uri: str,
        conflict_retries: int = 20,
        storage_options: dict[str, str] | None = None,
        pins: dict[str, int] | None = None,
    ):
        self.uri = uri
        self.conflict_retries = conflict_retries
        # snapshot reads: table -> the version every read of it sees (the version it had when
        # first opened); None reads the latest. A write here moves the pin to the latest version.
        self.pins = pins
        import lancedb

        # a consistency interval of 0 makes every handle see other processes' commits
        self.db = lancedb.connect(uri, read_consistency_interval=timedelta(0), storage_options=storage_options)

    @contextmanager
    def _create_lock(self, name: str = ".create.lock"):
        """An exclusive lock file ``name`` at the root of a local database (no-op on an object store)."""
        if "://" in self.uri and not self.uri.startswith("file://"):
            yield
            return
        root = self.uri.removeprefix("file://")
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, name), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _part_lock(self, table: str, part: str):
        import hashlib

        return self._create_lock(f".part-{hashlib.sha1(f'{table}/{part}'.encode()).hexdigest()[:16]}.lock")

    def _index_part_column(self, tbl, part_column: str) -> None:
        """Scalar indexes, created once the table has rows: BITMAP on the part column and, where
        the table has one, the ``model`` column (low-cardinality: "is this part here", "rows of
        another model"), BTREE on ``uid`` (lookups by uid read only the rows asked for)."""
        from lancedb.index import Bitmap, BTree

        names = tbl.schema.names
        wanted = [
            (part_column, Bitmap),
            *([("model", Bitmap)] if "model" in names else []),
            *([("uid", BTree)] if "uid" in names else []),
        ]
        indexed = {c for i in tbl.list_indices() for c in i.columns}
        for column, kind in wanted:
            if column in indexed:
                continue
            try:
                tbl.create_index(column, config=kind(), replace=False)  # the first argument is the column
            except Exception as exc:  # a concurrent writer's commit won; the rows are written either way
                if not any(column in i.columns for i in tbl.list_indices()):
                    log.warning(f"could not index {column!r} yet (the next write tries again): {exc}")

    def optimize(self, table: str) -> None:
        """Compact the table's small fragments and bring its indexes up to date (run between
        ingests, e.g. from a schedule: it rewrites data files, which conflicts with writers)."""
        self.open_to_write(table).optimize()

    def exists(self, table: str) -> bool:
        return table in self.db.table_names(limit=1_000_000)

    def _open_latest(self, table: str) -> lancedb.table.Table:
        if not self.exists(table):
            raise FileNotFoundError(f"LanceDB table {table!r} does not exist under {self.uri}")
        return self.db.open_table(table)

    def open(self, table: str) -> lancedb.table.Table:
        """``table`` to read: at its pinned version when reads are pinned (``pins``)."""
        tbl = self._open_latest(table)
        if self.pins is not None:
            if table in self.pins:
                tbl.checkout(self.pins[table])
            else:
                self.pins[table] = tbl.version
        return tbl

    def open_to_write(self, table: str) -> lancedb.table.Table:
        """``table`` at its latest version, to change it (delete, index, optimize); later reads
        see the change."""
        if self.pins is not None:
            self.pins.pop(table, None)
        return self._open_latest(table)

    def ensure(self, table: str, schema: pa.Schema) -> lancedb.table.Table:
        """Open ``table`` or create it empty with ``schema``; creation races are harmless."""
        # create-and-open under one lock: another process's just-created table may be listed
        # before it can be opened (seen as "Table ... was not found" in the concurrency test)
        with self._create_lock():
            if not self.exists(table):
                self.db.create_table(table, schema=schema)
            tbl = self._open_with_retry(table)
        self.check_compatible(table, tbl.schema, schema)
        return tbl

    def _open_with_retry(self, table: str, attempts: int = 50, wait_s: float = 0.1):
        for attempt in range(attempts):
            try:
                return self.db.open_table(table)
            except ValueError as exc:  # not (yet) visible: a concurrent create on an object store
                if "not found" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(wait_s)

    def check_compatible(self, table: str, existing: pa.Schema, new: pa.Schema) -> None:
        old_dims, new_dims = vector_dims(existing), vector_dims(new)
        for name, dim in new_dims.items():
            if name in old_dims and old_dims[name] != dim:
                raise DimensionMismatchError(
                    f"table {table!r} at {self.uri} stores {name} with dimension {old_dims[name]}, "
                    f"the new rows have dimension {dim}. Use another LanceStore uri / table for "
                    f"this model, or delete the table to re-embed everything."
                )
        missing = [n for n in existing.names if n not in new.names]
        if missing:
            raise ValueError(f"rows for table {table!r} lack columns {missing} (table has {existing.names})")

    def replace_part(
        self,
        table: str,
        part: str,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        part_column: str = "part",
        max_shrink: float | None = None,
    ) -> ReplaceResult:
        """Atomically replace every row of ``table`` whose ``part_column`` equals ``part``.

        ``batches`` is consumed once, streaming. An empty input raises EmptyPartitionError
        (and leaves the table as it was) instead of deleting the partition. With
        ``max_shrink`` (a share), a rewrite whose data lacks more than that share of the
        partition's stored uids raises ShrinkError before deleting them: the new rows are in,
        the lacking old rows stay.
        """
        start = time.perf_counter()
        tbl = self.ensure(table, schema)
        batches = iter(batches)
        first = next(batches, None)
        while first is not None and first.num_rows == 0:
            first = next(batches, None)
        if first is None:
            raise EmptyPartitionError(f"no rows to write for part {part!r} of table {table!r}; table left unchanged")
        counted = _Counted(first, batches, part, part_column)
        reader = pa.RecordBatchReader.from_batches(schema, iter(counted))
        pins, self.pins = self.pins, None  # a write reads and writes the latest version
        try:
            return self._replace_part(tbl, table, part, counted, reader, part_column, max_shrink, start)
        finally:
            self.pins = pins
            if pins is not None:
                pins.pop(table, None)  # later reads see this write

    def _replace_part(self, tbl, table, part, counted, reader, part_column, max_shrink, start) -> ReplaceResult:
        with self._part_lock(table, part):
            # the partition's uids (the part index finds them): none for a new partition
            old = set(self.read_part(table, part, ["uid"], part_column)["uid"].to_pylist())
            rewrite = bool(old)
            try:
                if rewrite:
                    # the hash join, not the uid index: Lance's indexed merge path has reported
                    # updates it did not make (lance-format/lance#7596) and measured slower here
                    tbl.merge_insert("uid").when_matched_update_all().when_not_matched_insert_all().use_index(
                        False
                    ).execute(reader)
                else:
                    tbl.add(reader)
            except Exception as exc:
                # Lance wraps errors raised inside the stream; surface the original one
                if counted.error is not None:
                    raise counted.error from exc
                raise
            if stale := sorted(old - counted.uids):  # rows the new data no longer has
                if max_shrink is not None and len(stale) > max_shrink * len(old):
                    raise ShrinkError(table, part, len(old), stale, max_shrink)
                log.info(f"{table}[{part}]: removing {len(stale)} rows the new data does not have")
                for where in uid_filters(stale):
                    tbl.delete(f"{equals(part_column, part)} AND {where}")
        self._index_part_column(tbl, part_column)
        return ReplaceResult(table, part, counted.rows, tbl.version, time.perf_counter() - start, rewrite)

    def count_part(self, table: str, part: str, part_column: str = "part") -> int:
        """Rows of one partition (the part index answers it)."""
        return self.count(table, equals(part_column, part))

    def delete_part(self, table: str, part: str, part_column: str = "part") -> None:
        """Remove one partition's rows (a partition that left the source)."""
        self.open_to_write(table).delete(equals(part_column, part))

    def count(self, table: str, where: str | None = None) -> int:
        return self.open(table).count_rows(where)

    def part_query(self, table: str, part: str, columns: list[str] | None = None, part_column: str = "part"):
        query = self.open(table).search().where(equals(part_column, part)).limit(None)
        return query.select(columns) if columns else query

    def read_part(self, table: str, part: str, columns: list[str] | None = None, part_column: str = "part") -> pa.Table:
        return self.part_query(table, part, columns, part_column).to_arrow()

    def iter_part(
        self,
        table: str,
        part: str,
        columns: list[str] | None = None,
        batch_rows: int = 65_536,
        part_column: str = "part",
    ) -> Iterator[pa.RecordBatch]:
        """Stream one partition's rows in batches (bounded memory)."""
        yield from self.part_query(table, part, columns, part_column).to_batches(batch_size=batch_rows)


class _Counted:
    """Re-yield batches, counting rows and refusing rows of another partition."""

    def __init__(self, first: pa.RecordBatch, rest: Iterator[pa.RecordBatch], part: str, part_column: str):
        self.first, self.rest, self.part, self.part_column = first, rest, part, part_column
        self.rows = 0
        self.uids: set[str] = set()  # what a rewrite keeps of the partition's old rows
        self.error: BaseException | None = None

    def _check(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        values = set(batch.column(self.part_column).unique().to_pylist())
        if values - {self.part}:
            raise ValueError(f"rows for part {self.part!r} carry {self.part_column} values {sorted(values)}")
        self.rows += batch.num_rows
        self.uids.update(batch.column("uid").to_pylist())
        return batch

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield self._check(self.first)
            for batch in self.rest:
                yield self._check(batch)
        except Exception as exc:
            self.error = exc
            raise


def embeddings_batch(
    uid: list[str],
    part: str,
    model: str,
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    image_norm: np.ndarray | None = None,
    text_norm: np.ndarray | None = None,
    clip_score: np.ndarray | None = None,
) -> pa.RecordBatch:
    """One RecordBatch of :func:`embeddings_schema` rows; clip_score defaults to the row-wise
    dot product of the (unit-norm) image and text embeddings."""
    n, dim = image_emb.shape
    if text_emb.shape != (n, dim) or len(uid) != n:
        raise ValueError(f"shape mismatch: {len(uid)} uids, image_emb {image_emb.shape}, text_emb {text_emb.shape}")
    if clip_score is None:
        clip_score = np.einsum("nd,nd->n", image_emb, text_emb)
    ones = np.ones(n, np.float32)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(uid, pa.string()),
            pa.array([part] * n, pa.string()),
            pa.array([model] * n, pa.string()),
            vectors(image_emb),
            vectors(text_emb),
            pa.array(ones if image_norm is None else image_norm, pa.float32()),
            pa.array(ones if text_norm is None else text_norm, pa.float32()),
            pa.array(np.asarray(clip_score, np.float32), pa.float32()),
        ],
        schema=embeddings_schema(dim),
    )


def embeddings_batches(encoded: Iterable, part: str, model: str) -> Iterator[pa.RecordBatch]:
    """One :func:`embeddings_batch` per encoded batch, lazily: ``encoded`` yields objects with
    ``uid``, ``image_emb``, ``text_emb`` (``(n, d)`` float32, unit norm), ``image_norm`` and
    ``text_norm`` (``(n,)`` raw norms), as ``laionlab.embed.encode.encode_shards`` does."""
    if not isinstance(part, str) or not part:
        raise ValueError(f"part: expected a non-empty partition key, got {part!r}")
    return (embeddings_batch(b.uid, part, model, b.image_emb, b.text_emb, b.image_norm, b.text_norm) for b in encoded)


def reference_schema(dim: int) -> pa.Schema:
    """Schema of ``reference_embeddings``: one row per reference image (partition column
    ``dataset``), unit-norm image vector plus its raw norm, and the sample's label/source."""
    return pa.schema(
        [
            pa.field("uid", pa.string(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("label", pa.string()),
            pa.field("source", pa.string()),
            pa.field("image_emb", pa.list_(pa.float32(), dim)),
            pa.field("image_norm", pa.float32()),
        ]
    )


def reference_batch(
    uid: list[str], dataset: str, model: str, labels: list, sources: list, image_emb: np.ndarray, image_norm: np.ndarray
) -> pa.RecordBatch:
    n, dim = image_emb.shape
    return pa.RecordBatch.from_arrays(
        [
            pa.array(uid, pa.string()),
            pa.array([dataset] * n, pa.string()),
            pa.array([model] * n, pa.string()),
            pa.array(labels, pa.string()),
            pa.array(sources, pa.string()),
            vectors(image_emb),
            pa.array(image_norm, pa.float32()),
        ],
        schema=reference_schema(dim),
    )


def reference_batches(
    encoded: Iterable, dataset: str, model: str, labels: Sequence, sources: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    """One :func:`reference_batch` per encoded batch of a reference dataset, lazily: the sample
    with uid ``<dataset>:<i:09d>`` (``laionlab.io.reference``'s uids) takes label and source
    ``labels[i]``, ``sources[i]``. ``encoded`` yields objects with ``uid``, ``image_emb``
    (``(n, d)`` float32, unit norm) and ``image_norm`` (``(n,)``), as ``encode_dataset`` does."""
    if len(labels) != len(sources):
        raise ValueError(f"labels and sources: expected one of each per sample, got {len(labels)} and {len(sources)}")
    index = {f"{dataset}:{i:09d}": i for i in range(len(sources))}

    def batches() -> Iterator[pa.RecordBatch]:
        for b in encoded:
            unknown = [u for u in b.uid if u not in index]
            if unknown:
                raise ValueError(f"encoded: uids {unknown[:3]} are not samples of {dataset!r} ({len(sources)} samples)")
            rows = [index[u] for u in b.uid]
            yield reference_batch(
                b.uid, dataset, model, [labels[i] for i in rows], [sources[i] for i in rows], b.image_emb, b.image_norm
            )

    return batches()


def read_vectors(
    batches: Iterable[pa.RecordBatch],
    column: str = "image_emb",
    norm_column: str | None = None,
    log_every_s: float = 30.0,
) -> tuple[list[str], np.ndarray]:
    """Concatenate ``column`` of streamed batches into an (n, d) float32 array (with uids).
    With ``norm_column`` the unit vectors are scaled back to the raw (unnormalised) features.
    A read that takes longer than ``log_every_s`` logs progress lines (rows read, rate)."""
    uids, blocks = [], []
    progress = Progress(f"reading {column}", None, log_every_s, log, quiet_below_s=log_every_s)
    for batch in batches:
        col = batch.column(column)
        x = col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size).astype(np.float32)
        if norm_column is not None:
            x = x * batch.column(norm_column).to_numpy(zero_copy_only=False)[:, None]
        blocks.append(x)
        uids.extend(batch.column("uid").to_pylist())
        progress.update(len(x))
    progress.close()
    if not blocks:
        return [], np.zeros((0, 0), np.float32)
    return uids, np.concatenate(blocks)
