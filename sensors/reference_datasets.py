"""reference_datasets_sensor: keeps the `dataset` partitions in step with the catalog file."""

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from asset_defs.partitions import dataset
from jobs import reference_job
from resources import DatasetCatalog


def catalog_changes(catalog: DatasetCatalog, instance: DagsterInstance) -> tuple[list[str], list[str]]:
    """(added, removed) dataset names of the catalog against the registered partitions."""
    known = set(instance.get_dynamic_partitions(dataset.name))
    names = set(catalog.datasets())
    return sorted(names - known), sorted(known - names)


@sensor(
    job=reference_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a dataset partition (and requests its embedding run) for each new catalog "
    "entry; removes partitions whose entry left the catalog.",
)
def reference_datasets_sensor(context: SensorEvaluationContext, catalog: DatasetCatalog):
    added, removed = catalog_changes(catalog, context.instance)
    if not added and not removed:
        return SkipReason(f"catalog {catalog.path} unchanged")
    requests = [dataset.build_add_request(added)] if added else []
    if removed:
        requests.append(dataset.build_delete_request(removed))
    return SensorResult(
        run_requests=[RunRequest(run_key=f"reference-{name}", partition_key=name) for name in added],
        dynamic_partitions_requests=requests,
    )
