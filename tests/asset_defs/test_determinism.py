"""Re-running an asset with the same inputs and config gives the same outputs (hardening
issue): the ingest, the clusters, and an analysis of each pipeline."""

from pathlib import Path

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from asset_defs.ingest import EMBEDDINGS_TABLE, laion_embeddings, laion_metadata
from asset_defs.laionet import ilsvrc_synsets, lemma_matches
from asset_defs.train_test_similarity import dedup_centroids
from asset_defs.visual_world import laion_natural, laion_natural_clusters, photo_classifier
from tests.conftest import instance_with_parts, run


def _twice(assets, resources, instance, partition, read, run_config=None):
    outs = []
    for _ in range(2):
        assert run(assets, resources, instance, partition, run_config=run_config).success
        outs.append(read())
    return outs


def test_ingest_is_reproducible(world, demo):
    resources, _ = world
    instance = instance_with_parts(demo.parts)
    part = demo.parts[1]
    path = Path(resources["files"].path("laion_metadata", f"{part}.parquet"))
    a, b = _twice([laion_metadata], resources, instance, part, path.read_bytes)
    assert a == b  # byte-identical parquet

    def vectors():
        tbl = resources["lance"].tables().open(EMBEDDINGS_TABLE)
        frame = pl.from_arrow(
            tbl.search().limit(None).where(f"part = '{part}'").select(["uid", "image_emb", "text_emb"]).to_arrow()
        )
        return frame.sort("uid")

    a, b = _twice([laion_embeddings], resources, instance, part, vectors)
    assert_frame_equal(a, b)


def test_clusters_and_analyses_are_reproducible(world, demo):
    resources, _ = world
    instance = instance_with_parts(demo.parts)
    files = resources["files"]
    config = {"ops": {"dedup_centroids": {"config": {"k": 4, "duplicate_cosine": 0.999}}}}
    a, b = _twice(
        [dedup_centroids],
        resources,
        instance,
        None,
        lambda: np.load(files.path("dedup_centroids", "centroids.npy")),
        config,
    )
    np.testing.assert_array_equal(a, b)
    # seed 000: classifier → LAION-natural → its k-means clusters
    assert run([photo_classifier], resources, instance, None).success
    for part in demo.parts:
        assert run(
            [laion_natural],
            resources,
            instance,
            part,
            run_config={"ops": {"laion_natural": {"config": {"threshold": 0.5}}}},
        ).success
    config = {"ops": {"laion_natural_clusters": {"config": {"k": 4}}}}
    centres = lambda: sorted(str(p) for p in Path(files.path("laion_natural_clusters")).rglob("*.npy"))  # noqa: E731
    _twice([laion_natural_clusters], resources, instance, None, centres, config)
    arrays = [np.load(p) for p in centres()]
    assert arrays
    b = _twice([laion_natural_clusters], resources, instance, None, lambda: [np.load(p) for p in centres()], config)[1]
    for x, y in zip(arrays, b):
        np.testing.assert_array_equal(x, y)
    # seed 001: lemma matching
    assert run([ilsvrc_synsets], resources, instance, None).success
    part = demo.parts[0]
    a, b = _twice(
        [lemma_matches], resources, instance, part, lambda: files.read_parquet("lemma_matches", f"{part}.parquet")
    )
    assert_frame_equal(a, b)
