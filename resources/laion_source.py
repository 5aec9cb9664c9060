"""The LaionSource resource: where the LAION metadata parquet files are."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from laionlab.io.metadata import list_parts


class LaionSource(ConfigurableResource):
    """A folder or fsspec URI (``s3://bucket/laion400m-meta``) of metadata parquet files.
    Each file matching ``glob`` is one ``laion_part`` partition, keyed by its file stem."""

    uri: str = Field(description="folder or fsspec URI holding the metadata parquet files")
    glob: str = Field("*.parquet", description="which files under uri are parts")

    def parts(self) -> dict[str, str]:
        """part key → file URI."""
        return list_parts(self.uri, self.glob)

    def part_uri(self, part: str) -> str:
        parts = self.parts()
        if part not in parts:
            raise FileNotFoundError(
                f"LAION part {part!r} has no file matching {self.glob!r} under {self.uri} "
                f"(found {len(parts)} parts: {sorted(parts)[:5]}...)"
            )
        return parts[part]
