"""Data versions derived from what a step read (asset_defs/lineage.py:data_version), as the UI
sees them: Dagster's own stale-status resolver over a real instance. A rebuild from an
unchanged LAION file leaves downstream results fresh; a changed file (or a changed model)
marks them Unsynced."""

import shutil
from pathlib import Path

import polars as pl
from dagster import AssetKey, asset
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from asset_defs import all_assets
from asset_defs.lineage import recorded_data_version
from asset_defs.partitions import laion_part
from tests.conftest import instance_with_parts, make_resources, run

PART = "part-00000"


@asset(partitions_def=laion_part, deps=["laion_metadata"], code_version="1")
def after_metadata() -> None:
    """Stands for any per-part step that reads laion_metadata."""


def _metadata_asset():
    return next(a for a in all_assets if AssetKey("laion_metadata") in a.keys)


def _status(instance, assets, key: str, part: str) -> StaleStatus:
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    resolver = CachingStaleStatusResolver(instance, AssetGraph.from_assets(assets), LoadingContextForTest(instance))
    return resolver.get_status(AssetKey(key), part)


def test_a_rebuild_from_the_same_file_keeps_downstream_fresh_and_a_changed_file_does_not(tmp_path, demo):
    source = tmp_path / "parts"
    shutil.copytree(Path(demo.root) / "laion_parts", source)
    resources = make_resources(tmp_path / "lab", str(source))
    instance = instance_with_parts(demo.parts)
    metadata = _metadata_asset()
    assets = [metadata, after_metadata]
    assert metadata.code_versions_by_key[AssetKey("laion_metadata")]  # the version hashes a code version too

    assert run(assets, resources, instance, PART).success
    first = recorded_data_version(instance, AssetKey("laion_metadata"), PART)
    assert _status(instance, assets, "after_metadata", PART) == StaleStatus.FRESH

    assert run([metadata], resources, instance, PART).success  # same file, same rows
    assert recorded_data_version(instance, AssetKey("laion_metadata"), PART) == first
    assert _status(instance, assets, "after_metadata", PART) == StaleStatus.FRESH

    path = source / f"{PART}.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("a caption edited upstream"))
        .otherwise(pl.col("TEXT"))
        .alias("TEXT")
    ).write_parquet(path)
    assert run([metadata], resources, instance, PART).success
    assert recorded_data_version(instance, AssetKey("laion_metadata"), PART) != first
    assert _status(instance, assets, "after_metadata", PART) == StaleStatus.STALE
    # another part's downstream result is not affected
    other = demo.parts[1]
    assert run(assets, resources, instance, other).success
    assert _status(instance, assets, "after_metadata", other) == StaleStatus.FRESH


def test_re_embedding_the_same_images_with_the_same_model_keeps_the_version(ingested):
    """The embeddings' version is derived from the images' version and the model id (which a
    resource chooses, unseen by code versions): re-running the step changes neither."""
    from asset_defs.ingest import laion_embeddings

    resources, instance, _ = ingested
    part = "part-00002"
    before = recorded_data_version(instance, AssetKey("laion_embeddings"), part)
    assert before is not None
    assert run([laion_embeddings], resources, instance, part).success  # same model, same images
    assert recorded_data_version(instance, AssetKey("laion_embeddings"), part) == before
