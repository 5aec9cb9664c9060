"""laion_parts_sensor: the laion_part partitions of each new metadata file under the
LaionSource (one per file, or one per row range of a big file)."""


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
from laionlab.io.metadata import split_part_key
from resources import LaionSource


def new_parts(source: LaionSource, instance: DagsterInstance) -> list[str]:
    """The partition keys of the source files none of whose partitions is registered yet
    (only those files' footers are read, for their row counts)."""
    known = {split_part_key(k)[0] for k in instance.get_dynamic_partitions(laion_part.name)}
    return sorted(s.key for key, uri in source.files().items() if key not in known for s in source.slices_of(key, uri))


@sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a laion_part partition for each new metadata file and requests its ingest run.",
)
def laion_parts_sensor(context: SensorEvaluationContext, source: LaionSource):
    if skipped := source.skipped():
        context.log.warning(f"not parts (a file stem must be letters, digits, '_' or '-'): {skipped[:10]}")
    added = new_parts(source, context.instance)
    if not added:
        return SkipReason(f"no new metadata files under {source.uri}")
    context.log.info(f"new LAION parts: {added}")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"ingest-{part}", partition_key=part) for part in added],
        dynamic_partitions_requests=[laion_part.build_add_request(added)],
    )
