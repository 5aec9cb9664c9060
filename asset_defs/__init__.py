"""Thin Dagster assets, one module per pipeline stage (see DESIGN.md)."""

from asset_defs import ingest
from asset_defs.partitions import laion_part

all_assets = [*ingest.assets]

__all__ = ["all_assets", "ingest", "laion_part"]
