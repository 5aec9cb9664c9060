"""Every dependency between differently partitioned assets declares its partition mapping, and
"Materialize all" (the UI's whole-graph asset backfill) resolves on the demo's partitions."""

import datetime
import types

import pytest
from dagster import AssetKey, DagsterInstance, DagsterInvariantViolationError, Definitions, asset
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.execution.backfill import PartitionBackfill
from dagster_graphql.implementation.utils import assert_valid_asset_partition_backfill

from asset_defs.partitions import dataset, laion_part
from definitions import defs

DEMO_PARTITIONS = {
    "laion_part": ["part-00000", "part-00001", "part-00002"],
    "dataset": ["demo_broad", "demo_narrow", "demo_imagenet_val", "demo_imagenet_captions"],
    "target": ["demo_target"],
    "model": ["clip_tiny_vit", "clip_tiny_conv", "timm_test_vit", "timm_test_convnext"],
}


def _explicit_mappings(asset_graph, key: AssetKey) -> dict:
    assets_def = asset_graph.get(key).assets_def
    return {d.asset_key: d.partition_mapping for spec in assets_def.specs if spec.key == key for d in spec.deps}


def cross_partition_edges_without_mapping(asset_graph) -> list[tuple[str, str]]:
    missing = []
    for key in asset_graph.toposorted_asset_keys:
        node, explicit = asset_graph.get(key), _explicit_mappings(asset_graph, key)
        for parent in node.parent_keys:
            if asset_graph.get(parent).partitions_def != node.partitions_def and explicit.get(parent) is None:
                missing.append((parent.to_user_string(), key.to_user_string()))
    return missing


def test_every_cross_partition_edge_declares_its_mapping():
    assert cross_partition_edges_without_mapping(defs.resolve_asset_graph()) == []


def _identity_edge_graph():
    """laion_part → dataset through the default identity mapping: what the graph had before."""

    @asset(partitions_def=laion_part)
    def per_part():
        return 1

    @asset(partitions_def=dataset, deps=[per_part])
    def per_dataset():
        return 1

    return Definitions(assets=[per_part, per_dataset]).resolve_asset_graph()


def test_the_check_finds_an_undeclared_edge():
    assert cross_partition_edges_without_mapping(_identity_edge_graph()) == [("per_part", "per_dataset")]


def _demo_instance() -> DagsterInstance:
    instance = DagsterInstance.ephemeral()
    for name, keys in DEMO_PARTITIONS.items():
        instance.add_dynamic_partitions(name, keys)
    return instance


def _materialize_all(asset_graph, instance: DagsterInstance) -> None:
    """What the webserver does for the "Materialize all" button (launchPartitionBackfill with
    every asset and allPartitions: true) up to launching: build the asset backfill and validate it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="materialize-all", asset_graph=asset_graph, backfill_timestamp=now.timestamp(), tags={},
        asset_selection=list(asset_graph.materializable_asset_keys), partition_names=None,
        dynamic_partitions_store=instance, all_partitions=True, title=None, description=None, run_config=None,
    )  # fmt: skip
    info = types.SimpleNamespace(context=types.SimpleNamespace(asset_graph=asset_graph, instance=instance))
    assert_valid_asset_partition_backfill(info, backfill, now)


def test_materialize_all_resolves_on_the_demo_partitions():
    _materialize_all(defs.resolve_asset_graph(), _demo_instance())


def test_materialize_all_refuses_an_identity_edge_between_partition_sets():
    """The failure the UI showed before mappings were declared: identity from laion_part to dataset."""
    with pytest.raises(DagsterInvariantViolationError, match="non-existent partitions"):
        _materialize_all(_identity_edge_graph(), _demo_instance())


def test_every_partition_resolves_its_upstream_partitions():
    asset_graph, instance = defs.resolve_asset_graph(), _demo_instance()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.datetime.now(datetime.timezone.utc), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    checked = 0
    for key in asset_graph.toposorted_asset_keys:
        subset = view.get_full_subset(key=key)
        assert not subset.is_empty, key
        for parent in asset_graph.get(key).parent_keys:
            parents, nonexistent = view.compute_parent_subset_and_required_but_nonexistent_subset(parent, subset)
            assert nonexistent.is_empty, (
                f"{key.to_user_string()} needs missing {parent.to_user_string()} partitions {nonexistent}"
            )
            assert not parents.is_empty, f"{key.to_user_string()} resolves no partition of {parent.to_user_string()}"
            checked += 1
    assert checked > 40
