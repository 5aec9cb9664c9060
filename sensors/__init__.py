"""Sensors: new LAION parts and new reference datasets."""

from sensors.laion_parts import laion_parts_sensor
from sensors.reference_datasets import reference_datasets_sensor

all_sensors = [laion_parts_sensor, reference_datasets_sensor]

__all__ = ["all_sensors", "laion_parts_sensor", "reference_datasets_sensor"]
