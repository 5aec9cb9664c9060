"""The LaionSource resource: where the LAION metadata parquet files are, and how each file
becomes ``laion_part`` partitions (whole, or cut into row ranges when it is big)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from laionlab.io.metadata import PartSlice, list_parts, parquet_rows, plan_slices, skipped_files, split_part_key


class LaionSource(ConfigurableResource):
    """A folder or fsspec URI (``s3://bucket/laion400m-meta``) of metadata parquet files.
    Each file matching ``glob`` is one ``laion_part`` partition keyed by its file stem, or, when
    it has more than ``rows_per_partition`` rows, one per row range (``<stem>.000``, ...)."""

    uri: str = Field(description="folder or fsspec URI holding the metadata parquet files")
    glob: str = Field("*.parquet", description="which files under uri are parts")
    rows_per_partition: int = Field(
        1_000_000,
        ge=0,
        description="a file with more rows is cut into partitions of this many rows (0: one partition per file)",
    )

    def files(self) -> dict[str, str]:
        """file key (stem) → file URI."""
        return list_parts(self.uri, self.glob)

    def skipped(self) -> list[str]:
        """Files matching ``glob`` that are not parts (names that are not valid keys)."""
        return skipped_files(self.uri, self.glob)

    def slices_of(self, file_key: str, uri: str | None = None) -> list[PartSlice]:
        """The partitions of one file (its footer is read for the row count)."""
        uri = uri or self._file_uri(file_key)
        return plan_slices(file_key, uri, parquet_rows(uri), self.rows_per_partition)

    def parts(self) -> dict[str, PartSlice]:
        """partition key → its slice, for every file (reads every footer: the CLI's listing)."""
        return {s.key: s for key, uri in self.files().items() for s in self.slices_of(key, uri)}

    def part_slice(self, key: str) -> PartSlice:
        """The file and row range of partition ``key``; errors name the key, the file and the folder."""
        try:
            file_key, chunk = split_part_key(key)
        except ValueError as err:
            raise FileNotFoundError(str(err)) from None
        slices = self.slices_of(file_key)
        if chunk is None:  # the whole file, however big (a key registered before it was cut)
            return slices[0] if len(slices) == 1 else PartSlice(key, file_key, slices[0].uri, 0, slices[-1].stop, 1)
        if len(slices) == 1 or chunk >= len(slices) or slices[chunk].key != key:
            raise FileNotFoundError(
                f"LAION part {key!r}: {slices[0].uri} cut into {self.rows_per_partition:,}-row partitions gives "
                f"{[s.key for s in slices][:3]}... ({len(slices)} partitions), not {key!r}; "
                "was rows_per_partition changed after the file was registered?"
            )
        return slices[chunk]

    def _file_uri(self, file_key: str) -> str:
        files = self.files()
        if file_key not in files:
            raise FileNotFoundError(
                f"LAION part {file_key!r} has no file matching {self.glob!r} under {self.uri} "
                f"(found {len(files)} parts: {sorted(files)[:5]}...)"
            )
        return files[file_key]
