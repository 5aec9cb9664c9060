"""laion_parts_sensor: the laion_part partitions of each new metadata file under the
LaionSource (one per file, or one per row range of a big file), and a re-read of
``laion_metadata`` for the parts of a file that changed since they were built."""

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from asset_defs.lineage import latest_by_partition
from asset_defs.partitions import laion_part
from jobs import ingest_job
from laionlab.io.digest import fingerprint
from laionlab.io.metadata import split_part_key
from resources import LaionSource


def new_parts(source: LaionSource, instance: DagsterInstance, files: dict[str, str] | None = None) -> list[str]:
    """The partition keys of the source files none of whose partitions is registered yet
    (only those files' footers are read, for their row counts)."""
    files = source.files() if files is None else files
    known = {split_part_key(k)[0] for k in instance.get_dynamic_partitions(laion_part.name)}
    return sorted(s.key for key, uri in files.items() if key not in known for s in source.slices_of(key, uri))


def changed_parts(instance: DagsterInstance, files: dict[str, str]) -> dict[str, str]:
    """part → its file's current fingerprint, for the built parts whose source file changed
    since their ``laion_metadata`` was materialised (one metadata lookup per file; a part whose
    file is gone, or that was built before fingerprints were recorded, is left alone)."""
    parts = [p for p in instance.get_dynamic_partitions(laion_part.name) if split_part_key(p)[0] in files]
    current: dict[str, str] = {}
    changed = {}
    for part, record in latest_by_partition(instance, AssetKey("laion_metadata"), parts).items():
        recorded = record.asset_materialization.metadata.get("source_fingerprint")
        if recorded is None:
            continue
        file_key = split_part_key(part)[0]
        if file_key not in current:
            current[file_key] = fingerprint(files[file_key])
        if recorded.value != current[file_key]:
            changed[part] = current[file_key]
    return changed


@sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a laion_part partition for each new metadata file and requests its ingest run; "
    "re-reads laion_metadata of the parts whose file changed (downstream shows Unsynced only if the rows did).",
)
def laion_parts_sensor(context: SensorEvaluationContext, source: LaionSource):
    if skipped := source.skipped():
        context.log.warning(f"not parts (a file stem must be letters, digits, '_' or '-'): {skipped[:10]}")
    files = source.files()
    added = new_parts(source, context.instance, files)
    changed = changed_parts(context.instance, files)
    if not added and not changed:
        return SkipReason(f"no new or changed metadata files under {source.uri}")
    if added:
        context.log.info(f"new LAION parts: {added}")
    if changed:
        context.log.info(
            f"source files changed since these parts were read: {sorted(changed)}; re-reading laion_metadata"
        )
    return SensorResult(
        run_requests=[RunRequest(run_key=f"ingest-{part}", partition_key=part) for part in added]
        + [
            RunRequest(
                run_key=f"reread-{part}-{version[:12]}",
                partition_key=part,
                asset_selection=[AssetKey("laion_metadata")],
            )
            for part, version in sorted(changed.items())
        ],
        dynamic_partitions_requests=[laion_part.build_add_request(added)] if added else [],
    )
