"""Sensors: new LAION parts and catalog entries, the parts each cross-part result lacks; the nightly_backfill schedule."""

from sensors.laion_parts import laion_parts_sensor
from sensors.nightly import nightly_backfill
from sensors.part_checks import part_checks_sensor
from sensors.reference_datasets import reference_datasets_sensor

all_sensors = [laion_parts_sensor, reference_datasets_sensor, part_checks_sensor]
all_schedules = [nightly_backfill]

__all__ = ["all_schedules", "all_sensors", "laion_parts_sensor", "nightly_backfill", "part_checks_sensor", "reference_datasets_sensor"]
