"""part_checks_sensor: after a LAION part is added or re-materialised, re-run the
includes_every_part checks, so every cross-partition asset downstream says in the UI which
parts its latest result lacks (Dagster's own stale mark reaches only direct dependents)."""

import hashlib

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor

from asset_defs import all_assets
from asset_defs.lineage import parts_fingerprint
from asset_defs.partitions import laion_part
from jobs import part_checks_job

PER_PART = sorted({key for a in all_assets for key in a.keys if a.partitions_def == laion_part})


@sensor(
    job=part_checks_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Re-runs the includes_every_part checks when a LAION part is added, removed or re-materialised.",
)
def part_checks_sensor(context: SensorEvaluationContext):
    fingerprint = parts_fingerprint(context.instance, PER_PART)
    if fingerprint == context.cursor:
        return SkipReason("no LAION part added, removed or re-materialised since the last check")
    context.update_cursor(fingerprint)
    # hashlib, not hash(): str hashes differ between processes, and the daemon restarts
    return RunRequest(run_key=f"part-checks-{hashlib.sha1(fingerprint.encode()).hexdigest()[:16]}")
