"""Storage resources: the LanceDB store for vectors and per-row tables, and the file store for
Parquet tables and webdataset shards. Both take local paths or fsspec/object-store URIs."""

from __future__ import annotations

from typing import Iterable

import polars as pl
import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field

from laionlab.io import files
from laionlab.io.lance import LanceTables, ReplaceResult


class LanceStore(ConfigurableResource):
    """A LanceDB database; ``replace_part`` is the one atomic per-partition write."""

    uri: str = Field(description="LanceDB URI: a local folder or s3://, gs://, az:// ...")

    def tables(self) -> LanceTables:
        return LanceTables(self.uri)

    def replace_part(
        self, table: str, part: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, part_column: str = "part"
    ) -> ReplaceResult:
        return self.tables().replace_part(table, part, batches, schema, part_column=part_column)


class FileStore(ConfigurableResource):
    """The data root for Parquet tables and shards: ``<root>/<asset>/<partition>...``."""

    root: str = Field(description="local folder or fsspec URI for asset files")

    def path(self, *parts: str) -> str:
        return files.join(self.root, *parts)

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        uri = self.path(*parts)
        files.atomic_write_parquet(frame, uri)
        return uri

    def read_parquet(self, *parts: str) -> pl.DataFrame:
        return files.read_parquet(self.path(*parts))
