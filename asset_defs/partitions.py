"""Partition sets shared by the pipelines (DESIGN.md, "Partitions")."""

from dagster import DynamicPartitionsDefinition

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


def registered(context, partitions_def: DynamicPartitionsDefinition) -> list[str]:
    """The keys of a dynamic partition set registered in the instance, sorted: what a
    cross-partition asset reads (and records as seen)."""
    return sorted(context.instance.get_dynamic_partitions(partitions_def.name))
