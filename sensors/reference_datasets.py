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

from asset_defs.partitions import dataset, model, target
from jobs import reference_job
from resources import DatasetCatalog


def catalog_changes(catalog: DatasetCatalog, instance: DagsterInstance) -> tuple[list[str], list[str]]:
    """(added, removed) dataset names of the catalog against the registered partitions."""
    known = set(instance.get_dynamic_partitions(dataset.name))
    names = set(catalog.datasets())
    return sorted(names - known), sorted(known - names)


def target_changes(catalog: DatasetCatalog, instance: DagsterInstance) -> tuple[list[str], list[str]]:
    """(added, removed) retrieval targets of the catalog against the registered partitions."""
    known = set(instance.get_dynamic_partitions(target.name))
    names = set(catalog.targets())
    return sorted(names - known), sorted(known - names)


def model_changes(catalog: DatasetCatalog, instance: DagsterInstance) -> tuple[list[str], list[str]]:
    """(added, removed) models of the catalog against the registered partitions."""
    known = set(instance.get_dynamic_partitions(model.name))
    names = set(catalog.models())
    return sorted(names - known), sorted(known - names)


@sensor(
    job=reference_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a dataset partition (and requests its embedding run) for each new catalog "
    "entry a target partition per retrieval target and a model partition per model; "
    "removes partitions whose entry left the catalog.",
)
def reference_datasets_sensor(context: SensorEvaluationContext, catalog: DatasetCatalog):
    added, removed = catalog_changes(catalog, context.instance)
    new_targets, old_targets = target_changes(catalog, context.instance)
    new_models, old_models = model_changes(catalog, context.instance)
    if not (added or removed or new_targets or old_targets or new_models or old_models):
        return SkipReason(f"catalog {catalog.path} unchanged")
    requests = [dataset.build_add_request(added)] if added else []
    if removed:
        requests.append(dataset.build_delete_request(removed))
    if new_targets:
        requests.append(target.build_add_request(new_targets))
    if old_targets:
        requests.append(target.build_delete_request(old_targets))
    if new_models:
        requests.append(model.build_add_request(new_models))
    if old_models:
        requests.append(model.build_delete_request(old_models))
    return SensorResult(
        run_requests=[RunRequest(run_key=f"reference-{name}", partition_key=name) for name in added],
        dynamic_partitions_requests=requests,
    )
