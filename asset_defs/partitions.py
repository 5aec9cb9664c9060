"""Partition sets shared by the pipelines, and the partition mappings between them.

Every dependency between differently partitioned assets declares its mapping here (a test
walks the graph for any that does not), so Dagster itself — "Materialize all", asset
backfills, automation, staleness — resolves which upstream partitions a partition reads.
"""

import warnings

from dagster import (
    AllPartitionMapping,
    AssetDep,
    DynamicPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
)

# One key per LAION metadata file (its stem, e.g. part-00017); added by laion_parts_sensor.
laion_part = DynamicPartitionsDefinition(name="laion_part")

# One key per reference dataset of the catalog (THINGS, NSD, ...); synced by reference_datasets_sensor.
dataset = DynamicPartitionsDefinition(name="dataset")

# One key per retrieval target of the catalog's `targets:` section (seed 003); synced by
# reference_datasets_sensor.
target = DynamicPartitionsDefinition(name="target")

# One key per model of the catalog's `models:` section (seed 002); synced by
# reference_datasets_sensor. model_features and probe_scores are partitioned by model × dataset.
model = DynamicPartitionsDefinition(name="model")

# One key per curated subset that subset_export writes (asset_defs/exports.py): LAIONet, the rows
# laion_dedup / dbp_selection / concept_balanced keep, and each of DataComp's exported filters.
DATACOMP_SUBSETS = ("basic", "clip_score_threshold", "laion2b", "text_based", "clip_score_top_fraction", "intersection")
subset = StaticPartitionsDefinition(
    ["laionet", "laion_dedup_kept", "dbp_kept", "concept_balanced", *(f"datacomp_{f}" for f in DATACOMP_SUBSETS)]
)


def every_partition(asset) -> AssetDep:
    """A dependency on every partition of ``asset``: the step reads all of them (a cross-part
    summary over LAION parts, a per-dataset search over all of LAION, a per-target sample
    drawing from every part, an unpartitioned fit read by each partition)."""
    return AssetDep(asset, partition_mapping=AllPartitionMapping())


def same_dataset(asset) -> AssetDep:
    """A model × dataset asset read by a per-dataset asset: every model of that dataset."""
    with warnings.catch_warnings():  # beta in 1.13, and exactly this mapping
        warnings.simplefilter("ignore")
        mapping = MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")
    return AssetDep(asset, partition_mapping=mapping)


def registered(context, partitions_def: DynamicPartitionsDefinition) -> list[str]:
    """The keys of a dynamic partition set registered in the instance, sorted: what a
    cross-partition asset reads (and records as seen)."""
    return sorted(context.instance.get_dynamic_partitions(partitions_def.name))
