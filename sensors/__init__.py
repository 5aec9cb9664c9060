"""Sensors: new LAION parts (and, later, new reference datasets)."""

from sensors.laion_parts import laion_parts_sensor

all_sensors = [laion_parts_sensor]

__all__ = ["all_sensors", "laion_parts_sensor"]
