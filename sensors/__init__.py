"""Sensors: new LAION parts and catalog entries, the parts each cross-part result lacks, runs whose
worker died; the nightly_backfill schedule."""

from sensors.dead_runs import dead_runs_sensor
from sensors.laion_parts import laion_parts_sensor
from sensors.nightly import lance_maintenance, nightly_backfill
from sensors.part_checks import part_checks_sensor
from sensors.reference_datasets import reference_datasets_sensor

all_sensors = [laion_parts_sensor, reference_datasets_sensor, part_checks_sensor, dead_runs_sensor]
all_schedules = [nightly_backfill, lance_maintenance]

__all__ = [
    "all_schedules",
    "all_sensors",
    "dead_runs_sensor",
    "laion_parts_sensor",
    "lance_maintenance",
    "nightly_backfill",
    "part_checks_sensor",
    "reference_datasets_sensor",
]
