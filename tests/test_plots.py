"""Every analysis asset shows its result as a plot or a table in its materialisation metadata
(hardening issue: researchers would rather look than read), checked on the whole demo graph."""

from dagster import AssetKey, MetadataValue
from dagster._core.definitions.metadata import MarkdownMetadataValue, TableMetadataValue

from asset_defs import all_assets
from asset_defs.metadata import bar_plot, histogram, line_plot, markdown_table

# Data assets are exempt: they store rows, images, vectors, an index or a model that later
# assets analyse, and their metadata are counts. Every other asset must attach a plot (or a
# Markdown table where a plot makes no sense).
DATA_ASSETS = {
    "laion_metadata": "normalised LAION metadata rows (ingest)",
    "laion_images": "downloaded webdataset shards (ingest)",
    "laion_embeddings": "CLIP vectors in LanceDB (ingest)",
    "laion_embeddings_import": "precomputed vectors imported into LanceDB (ingest)",
    "reference_embeddings": "CLIP vectors of a reference dataset",
    "photo_classifier": "classifier coefficients; its output is plotted by laion_natural",
    "dedup_assignments": "cluster id per row and the part's vectors sorted by cluster",
    "caption_index": "a faiss index of caption vectors",
    "caption_search_index": "a LanceDB full-text index of captions",
    "retrieved_images": "downloaded and embedded images of matched rows",
    "model_features": "features of one model on one dataset",
}


def is_plot_or_table(value) -> bool:
    """A Markdown image (the plot helpers of asset_defs.metadata), a non-empty Markdown table,
    or a Dagster table."""
    if isinstance(value, TableMetadataValue):
        return True
    if not isinstance(value, MarkdownMetadataValue):
        return False
    text = value.md_str or ""
    return "](data:image/png;base64," in text or ("\n|---" in text and text.startswith("| "))


def test_the_check_tells_plots_and_tables_from_other_metadata():
    import polars as pl

    assert is_plot_or_table(bar_plot(["a", "b"], [1.0, 2.0], "t", "y"))
    assert is_plot_or_table(line_plot([1, 2], {"s": [0.1, 0.2]}, "x", "t"))
    assert is_plot_or_table(histogram([0.1, 0.2, 0.2], "x", "t"))
    assert is_plot_or_table(markdown_table(pl.DataFrame({"a": [1]})))
    assert not is_plot_or_table(markdown_table(pl.DataFrame({"a": []})))  # "_(none)_"
    assert not is_plot_or_table(MetadataValue.md("rows: 12"))
    assert not is_plot_or_table(MetadataValue.text("![plot](data:image/png;base64,AAAA)"))
    assert not is_plot_or_table(MetadataValue.int(3))


def test_every_analysis_asset_attaches_a_plot_or_table(demo_graph):
    _, instance = demo_graph
    names = {key.to_user_string() for a in all_assets for key in a.keys}
    assert set(DATA_ASSETS) <= names, f"stale entries in DATA_ASSETS: {sorted(set(DATA_ASSETS) - names)}"
    never, without = [], []
    for name in sorted(names - set(DATA_ASSETS)):
        records = instance.fetch_materializations(AssetKey(name), limit=1000).records
        if not records:
            never.append(name)
        for record in records:  # every partition's materialisation, not only the last one
            event = record.asset_materialization
            if not any(is_plot_or_table(v) for v in event.metadata.values()):
                without.append(f"{name}[{event.partition or 'all'}]: {sorted(event.metadata)}")
    assert not never, f"the demo graph did not materialise {never}"
    assert not without, "analysis assets without a plot or table:\n" + "\n".join(without)
