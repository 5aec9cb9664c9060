"""laion_parts_sensor: one dynamic partition per new metadata file under the LaionSource."""


from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from asset_defs.partitions import laion_part
from jobs import ingest_job
from resources import LaionSource


def new_parts(source: LaionSource, instance: DagsterInstance) -> list[str]:
    """Part keys present under the source but not yet registered as laion_part partitions."""
    known = set(instance.get_dynamic_partitions(laion_part.name))
    return sorted(set(source.parts()) - known)


@sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a laion_part partition for each new metadata file and requests its ingest run.",
)
def laion_parts_sensor(context: SensorEvaluationContext, source: LaionSource):
    added = new_parts(source, context.instance)
    if not added:
        return SkipReason(f"no new metadata files under {source.uri}")
    context.log.info(f"new LAION parts: {added}")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"ingest-{part}", partition_key=part) for part in added],
        dynamic_partitions_requests=[laion_part.build_add_request(added)],
    )
