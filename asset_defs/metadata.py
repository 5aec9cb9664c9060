"""Helpers that turn library results into Dagster metadata (tables, plots)."""

from __future__ import annotations

import polars as pl
from dagster import MetadataValue


def markdown_table(frame: pl.DataFrame, max_rows: int = 50) -> MetadataValue:
    """A small frame as a Markdown table the UI renders."""
    if frame.height == 0:
        return MetadataValue.md("_(none)_")
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join(
        "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |\n" for row in shown.rows()
    )
    more = f"\n_{frame.height - max_rows} more rows_" if frame.height > max_rows else ""
    return MetadataValue.md(header + body + more)
