"""Every analysis asset shows its result as a plot and a small table preview in its
materialisation metadata (hardening issue: researchers would rather look than read), checked
on the whole demo graph."""

from dagster import AssetKey, MetadataValue
from dagster._core.definitions.metadata import MarkdownMetadataValue, TableMetadataValue

from asset_defs import all_assets
from asset_defs.metadata import (
    bar_plot,
    histogram,
    largest_clusters,
    line_plot,
    markdown_table,
    quantile_table,
    value_label,
)

# Data assets are exempt: they store rows, images, vectors, an index or a model that later
# assets analyse, and their metadata are counts. Every other asset must attach a plot and a
# table.
DATA_ASSETS = {
    "laion_metadata": "normalised LAION metadata rows (ingest)",
    "laion_images": "downloaded webdataset shards (ingest)",
    "laion_embeddings": "CLIP vectors in LanceDB (ingest)",
    "laion_embeddings_import": "precomputed vectors imported into LanceDB (ingest)",
    "reference_embeddings": "CLIP vectors of a reference dataset",
    "photo_classifier": "classifier coefficients; its output is plotted by laion_natural",
    "dedup_assignments": "cluster id per row and the part's vectors sorted by cluster",
    "image_hashes": "sha256 and pHash per row, and the part's sorted hash indexes",
    "caption_index": "a faiss index of caption vectors",
    "caption_search_index": "a LanceDB full-text index of captions",
    "retrieved_images": "downloaded and embedded images of matched rows",
    "model_features": "features of one model on one dataset",
    "subset_export": "a curated subset written as img2dataset parquet, webdataset shards and DataComp ids",
    "pool_export": "a pruned pool written as img2dataset parquet, webdataset shards and DataComp ids",
    "swat_export": "SWAT's samples per method written as img2dataset parquet, webdataset shards and DataComp ids",
}


def kinds(value) -> set[str]:
    """``{"plot"}`` for a Markdown image (the plot helpers of asset_defs.metadata), ``{"table"}``
    for a non-empty Markdown table or a Dagster table, else empty."""
    if isinstance(value, TableMetadataValue):
        return {"table"}
    if not isinstance(value, MarkdownMetadataValue):
        return set()
    text = value.md_str or ""
    if "](data:image/png;base64," in text or "](data:image/jpeg;base64," in text:
        return {"plot"}  # a plot, or a gallery (JPEG)
    return {"table"} if "\n|---" in text and text.startswith("| ") else set()


def test_the_check_tells_plots_and_tables_from_other_metadata():
    import polars as pl

    assert kinds(bar_plot(["a", "b"], [1.0, 2.0], "t", "y")) == {"plot"}
    assert kinds(line_plot([1, 2], {"s": [0.1, 0.2]}, "x", "t")) == {"plot"}
    assert kinds(histogram([0.1, 0.2, 0.2], "x", "t")) == {"plot"}
    assert kinds(markdown_table(pl.DataFrame({"a": [1]}))) == {"table"}
    assert kinds(quantile_table([0.1, 0.2, 0.9], "x")) == {"table"}
    assert kinds(largest_clusters([3, 9, 1])) == {"table"}
    assert kinds(markdown_table(pl.DataFrame({"a": []}))) == set()  # "_(none)_"
    assert kinds(MetadataValue.md("rows: 12")) == set()
    assert kinds(MetadataValue.text("![plot](data:image/png;base64,AAAA)")) == set()
    assert kinds(MetadataValue.int(3)) == set()


def test_bar_labels_keep_small_shares_and_print_counts_as_integers():
    assert [value_label(v) for v in (0.0625, 19.0, 12.3456, 1204.0, 0.5, float("nan"))] == [
        "0.0625",
        "19",
        "12.35",
        "1,204",
        "0.5",
        "n/a",
    ]


def test_summary_tables_hold_the_right_numbers():
    md = quantile_table([1.0, 2.0, 3.0, 4.0, float("nan")], "x").md_str
    assert "| min | 1.0 |" in md and "| median | 2.5 |" in md and "| max | 4.0 |" in md
    md = largest_clusters([3, 9, 1, 9], n=2).md_str
    rows = [line for line in md.splitlines() if line.startswith("| ") and "cluster" not in line]
    assert rows == ["| 1 | 9 |", "| 3 | 9 |"]  # largest first, ties by cluster id


def test_every_analysis_asset_attaches_a_plot_and_a_table(demo_graph):
    _, instance = demo_graph
    names = {key.to_user_string() for a in all_assets for key in a.keys}
    optional = {"laion_embeddings_import"}  # in the graph only with LAIONLAB_EMBEDDINGS_IMPORT_ROOT
    assert set(DATA_ASSETS) - optional <= names, (
        f"stale entries in DATA_ASSETS: {sorted(set(DATA_ASSETS) - optional - names)}"
    )
    never, without = [], []
    for name in sorted(names - set(DATA_ASSETS)):
        records = instance.fetch_materializations(AssetKey(name), limit=1000).records
        if not records:
            never.append(name)
        for record in records:  # every partition's materialisation, not only the last one
            event = record.asset_materialization
            if event.metadata.get("applicable") == MetadataValue.bool(False):
                # a partition the analysis does not apply to (probe_scores of an unlabelled set) says why instead
                continue
            missing = {"plot", "table"} - set().union(*(kinds(v) for v in event.metadata.values()))
            if missing:
                without.append(
                    f"{name}[{event.partition or 'all'}] lacks a {' and a '.join(sorted(missing))}: "
                    f"{sorted(event.metadata)}"
                )
    assert not never, f"the demo graph did not materialise {never}"
    assert not without, "analysis assets without a plot and a table:\n" + "\n".join(without)


def test_cross_part_results_record_the_table_versions_they_read(demo_graph):
    """Each run reads a LanceDB table at one version (resources/storage.py); the cross-part
    results say which, and it is one the table had."""
    resources, instance = demo_graph
    latest = resources["lance"].tables().open("laion_embeddings").version
    for name in ("coverage", "laion_natural_clusters", "photo_classifier", "dedup_centroids", "caption_index"):
        (record,) = instance.fetch_materializations(AssetKey(name), limit=1).records
        read = record.asset_materialization.metadata["lance_versions_read"].value
        assert 1 <= read["laion_embeddings"] <= latest, (name, read)
