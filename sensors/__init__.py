"""Sensors: new LAION parts and catalog entries; the nightly_backfill schedule."""

from sensors.laion_parts import laion_parts_sensor
from sensors.nightly import nightly_backfill
from sensors.reference_datasets import reference_datasets_sensor

all_sensors = [laion_parts_sensor, reference_datasets_sensor]
all_schedules = [nightly_backfill]

__all__ = ["all_schedules", "all_sensors", "laion_parts_sensor", "nightly_backfill", "reference_datasets_sensor"]
