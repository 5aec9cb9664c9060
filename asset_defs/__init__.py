"""Thin Dagster assets, one module per pipeline (see DESIGN.md)."""

from asset_defs import ingest, laionet, representations, retrieval, train_test_similarity, visual_world
from asset_defs.partitions import dataset, laion_part

from asset_defs.automation import automate

all_assets = automate(
    [*ingest.assets, *visual_world.assets, *train_test_similarity.assets, *laionet.assets, *retrieval.assets, *representations.assets]
)

__all__ = ["all_assets", "dataset", "ingest", "laion_part", "laionet", "representations", "retrieval", "train_test_similarity", "visual_world"]
