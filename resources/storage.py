"""Storage resources: the LanceDB store for vectors and per-row tables, and the file store for
Parquet tables, arrays and webdataset shards. Both take local paths or fsspec/object-store URIs
(``file:///abs/path``, ``s3://bucket/lab`` ...); see laionlab/io/files.py for the write rules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import polars as pl
import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from laionlab.io import files
from laionlab.io.files import FolderBusyError as FolderBusyError  # re-exported: resources.FolderBusyError
from laionlab.io.lance import LanceTables, ReplaceResult


class LanceStore(ConfigurableResource):
    """A LanceDB database; ``replace_part`` is the one atomic per-partition write."""

    uri: str = Field(description="LanceDB URI: a local folder, file:///..., or s3://, gs://, az:// ...")
    storage_options: dict[str, str] = Field(
        {},
        description="LanceDB object-store options, e.g. {aws_endpoint: http://minio:9000, allow_http: 'true', "
        "aws_region: ...}; credentials default to the provider's environment variables",
    )

    _pins: dict[str, int] | None = PrivateAttr(default=None)
    _tables: LanceTables | None = PrivateAttr(default=None)

    def setup_for_execution(self, context) -> None:
        """Every run reads each table at one version: the one it had when the run first read it
        (``LanceTables.pins``), so a run's steps see one snapshot while other runs write other
        parts; its own writes move it forward. ``versions_read`` is what to record."""
        self._pins = {}

    def versions_read(self) -> dict[str, int]:
        """table → the version this run reads (empty outside a run)."""
        return dict(self._pins or {})

    def tables(self) -> LanceTables:
        """The database, one connection per resource instance (and run: a run's pins are its own)."""
        if self._tables is None or self._tables.pins is not self._pins:
            self._tables = LanceTables(self.uri, storage_options=self.storage_options or None, pins=self._pins)
        return self._tables

    def replace_part(
        self, table: str, part: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, **options
    ) -> ReplaceResult:
        """``LanceTables.replace_part`` (options: ``part_column``, ``max_shrink``)."""
        return self.tables().replace_part(table, part, batches, schema, **options)


def _checked_parts(parts: tuple[str, ...], under: str) -> None:
    """Refuse a path part that is empty or leaves its folder (``.``, ``..``): a partition's
    writes must stay in that partition's folder (an empty part key once made a commit address,
    and clean up, every part's folder)."""
    for part in parts:
        segments = str(part).strip("/").split("/")
        if any(s in ("", ".", "..") for s in segments):
            raise ValueError(
                f"file path part {part!r} under {under} is empty or leaves its folder (path parts {parts})"
            )


@dataclass(frozen=True)
class Version:
    """One version folder of a versioned output (``<folder>/v-<time>-<id>/``; ``<folder>/CURRENT``
    names the committed one): from :meth:`FileStore.new_version` (being written) or
    :meth:`FileStore.current_version` (committed). ``uri`` is the folder (local path or URI)."""

    uri: str

    def path(self, *names: str) -> str:
        _checked_parts(names, self.uri)
        return files.join(self.uri, *names)

    def glob(self, pattern: str = "*") -> list[str]:
        """Files directly in the version matching ``pattern`` (local paths or URIs), sorted."""
        return files.list_files(self.uri, pattern)

    def exists(self, *names: str) -> bool:
        return files.exists(self.path(*names))

    def size(self, *names: str) -> int:
        return files.size(self.path(*names))

    def write_parquet(self, frame: pl.DataFrame, *names: str) -> str:
        uri = self.path(*names)
        files.atomic_write_parquet(frame, uri)
        return uri

    def read_parquet(self, *names: str, columns: list[str] | None = None) -> pl.DataFrame:
        return files.read_parquet(self.path(*names), columns=columns)

    def iter_parquet(self, *names: str, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """The parquet file ``names`` a batch (at most a row group) at a time."""
        return files.iter_parquet(self.path(*names), columns=columns)

    def save_npy(self, array: np.ndarray, *names: str) -> str:
        uri = self.path(*names)
        files.atomic_save_npy(array, uri)
        return uri

    def write_bytes(self, data: bytes, *names: str) -> str:
        uri = self.path(*names)
        files.atomic_write_bytes(uri, data)
        return uri

    def copy_in(self, source: str, *names: str) -> str:
        """Copy the file ``source`` (a local path or URI, e.g. another version's) to ``names``."""
        uri = self.path(*names)
        files.copy(source, uri)
        return uri


class FileStore(ConfigurableResource):
    """The data root for Parquet tables, arrays and shards: ``<root>/<asset>/<partition>...``.

    Every method takes the path below the root as parts; the root may be a local folder or
    any fsspec URI (filesystem options from fsspec's configuration, e.g. ``FSSPEC_S3``). On an
    object store each write is staged in the local temp folder (``TMPDIR``) and uploaded in
    one put; reads stream (``.npy`` rows by ranged reads), nothing else is copied locally."""

    root: str = Field(
        description="local folder, file:///... or fsspec URI (s3://bucket/lab) for asset files; object-store writes "
        "are staged in the local temp folder (TMPDIR) and uploaded in one put"
    )

    def path(self, *parts: str) -> str:
        """``<root>/<parts...>``. A part that is empty or leaves its folder (``.``, ``..``) is
        refused: a partition's writes must stay in that partition's folder (an empty part key
        once made a commit address, and clean up, every part's folder)."""
        _checked_parts(parts, self.root)
        return files.join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return files.exists(self.path(*parts))

    def glob(self, *parts: str, pattern: str = "*") -> list[str]:
        """Files in the folder ``parts`` matching ``pattern`` (local paths or URIs), sorted."""
        return files.list_files(self.path(*parts), pattern)

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        uri = self.path(*parts)
        files.atomic_write_parquet(frame, uri)
        return uri

    def read_parquet(self, *parts: str, columns: list[str] | None = None) -> pl.DataFrame:
        return files.read_parquet(self.path(*parts), columns=columns)

    def save_npy(self, array: np.ndarray, *parts: str) -> str:
        uri = self.path(*parts)
        files.atomic_save_npy(array, uri)
        return uri

    def load_npy(self, *parts: str, mmap: bool = False) -> np.ndarray | files.NpyRows:
        """The array; with ``mmap`` rows are read on use (memory-mapped locally, ranged reads on
        an object store)."""
        return files.load_npy(self.path(*parts), mmap=mmap)

    def write_bytes(self, data: bytes, *parts: str) -> str:
        uri = self.path(*parts)
        files.atomic_write_bytes(uri, data)
        return uri

    def write_json(self, value: Any, *parts: str, indent: int | None = None) -> str:
        uri = self.path(*parts)
        files.atomic_write_json(uri, value, indent=indent)
        return uri

    def read_json(self, *parts: str) -> Any:
        return files.read_json(self.path(*parts))

    def load_npz(self, *parts: str) -> dict[str, np.ndarray]:
        return files.load_npz(self.path(*parts))

    # versioned folders: written whole into a new version, then made current in one small write

    @contextmanager
    def new_version(self, *parts: str, keep_old: int = 0) -> Iterator[Version]:
        """A new version of the folder ``parts``, to write inside the block. When the block
        ends without an exception the version becomes current (``CURRENT`` names it) and older
        versions beyond ``keep_old`` are deleted; an exception deletes the unfinished version
        and leaves the current one as it was. The folder's writer lock is held throughout (a
        second writer raises ``laionlab.io.files.FolderBusyError`` at once: its commit would
        delete this version while it is written)."""
        folder = self.path(*parts)
        with files.writer_lock(folder):
            version = Version(files.new_version_dir(folder))
            try:
                yield version
            except BaseException:
                files.remove(version.uri)
                raise
            files.commit_version_dir(folder, version.uri, keep_old=keep_old)

    def current_version(self, *parts: str) -> Version:
        """The committed version of the folder ``parts``; FileNotFoundError naming the folder
        when none was committed (its asset was never materialised)."""
        return Version(files.current_version_dir(self.path(*parts)))

    def has_version(self, *parts: str) -> bool:
        """Whether the folder ``parts`` has a committed version."""
        return files.exists(files.join(self.path(*parts), files.CURRENT))
