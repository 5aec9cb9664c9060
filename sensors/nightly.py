"""Nightly schedules: nightly_backfill (off by default) requests the ingest of every part whose
embeddings are missing or older than its metadata file's last materialisation;
lance_maintenance (on) compacts and re-indexes the LanceDB tables at 04:00."""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from asset_defs.partitions import laion_part
from jobs import ingest_job, lance_maintenance_job

lance_maintenance = ScheduleDefinition(
    name="lance_maintenance",
    job=lance_maintenance_job,
    cron_schedule="0 4 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every night at 04:00: compact the LanceDB tables and index their new rows (lance_maintenance_job).",
)


def parts_to_refresh(instance) -> list[str]:
    """Parts whose laion_embeddings are missing, or older than their laion_metadata."""
    out = []
    for part in sorted(instance.get_dynamic_partitions(laion_part.name)):
        latest = {}
        for key in ("laion_metadata", "laion_embeddings"):
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[part]), limit=1
            ).records
            latest[key] = records[0].timestamp if records else None
        if latest["laion_embeddings"] is None or (latest["laion_metadata"] or 0) > latest["laion_embeddings"]:
            out.append(part)
    return out


@schedule(
    job=ingest_job,
    cron_schedule="0 2 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00: ingest the parts whose embeddings are missing or stale (off by default).",
)
def nightly_backfill(context: ScheduleEvaluationContext):
    parts = parts_to_refresh(context.instance)
    if not parts:
        return SkipReason("every part is embedded and up to date")
    day = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "now"
    return [RunRequest(run_key=f"nightly-{day}-{p}", partition_key=p) for p in parts]
