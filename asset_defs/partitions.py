"""Partition sets shared by the pipelines (DESIGN.md, "Partitions")."""

from dagster import DynamicPartitionsDefinition

# One key per LAION metadata file (its stem, e.g. part-00017); added by laion_parts_sensor.
laion_part = DynamicPartitionsDefinition(name="laion_part")

# One key per reference dataset of the catalog (THINGS, NSD, ...); synced by reference_datasets_sensor.
dataset = DynamicPartitionsDefinition(name="dataset")
