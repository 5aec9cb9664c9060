import shutil
from pathlib import Path

from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from resources import LaionSource
from sensors.laion_parts import laion_parts_sensor


def evaluate(instance, source):
    return laion_parts_sensor(build_sensor_context(instance=instance, resources={"source": source}))


def test_sensor_adds_new_parts_and_requests_their_runs(tmp_path, demo):
    src = tmp_path / "parts"
    shutil.copytree(Path(demo.root) / "laion_parts", src)
    source = LaionSource(uri=str(src))
    instance = DagsterInstance.ephemeral()

    first = evaluate(instance, source)
    assert isinstance(first, SensorResult)
    (request,) = first.dynamic_partitions_requests
    assert request.partitions_def_name == "laion_part" and list(request.partition_keys) == demo.parts
    assert [r.partition_key for r in first.run_requests] == demo.parts
    assert all(r.job_name in (None, "ingest_job") for r in first.run_requests)
    instance.add_dynamic_partitions("laion_part", list(request.partition_keys))

    assert isinstance(evaluate(instance, source), SkipReason)

    shutil.copy(src / "part-00000.parquet", src / "part-00042.parquet")
    third = evaluate(instance, source)
    assert [r.partition_key for r in third.run_requests] == ["part-00042"]
    assert list(third.dynamic_partitions_requests[0].partition_keys) == ["part-00042"]


def test_sensor_re_reads_the_metadata_of_a_changed_file_once(tmp_path, demo):
    import os

    import polars as pl
    from dagster import AssetKey

    from asset_defs import all_assets
    from tests.conftest import make_resources, run

    src = tmp_path / "parts"
    shutil.copytree(Path(demo.root) / "laion_parts", src)
    resources = make_resources(tmp_path / "lab", str(src))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", demo.parts)
    metadata = next(a for a in all_assets if AssetKey("laion_metadata") in a.keys)
    for part in demo.parts[:2]:  # part 2 never built: nothing to compare with
        assert run([metadata], resources, instance, part).success
    assert isinstance(evaluate(instance, resources["source"]), SkipReason)

    path = src / "part-00001.parquet"
    pl.read_parquet(path).head(30).write_parquet(path)  # the file was replaced upstream
    os.utime(path, (1e9, 2e9))
    result = evaluate(instance, resources["source"])
    (request,) = result.run_requests
    assert request.partition_key == "part-00001" and request.asset_selection == [AssetKey("laion_metadata")]
    assert result.dynamic_partitions_requests == []
    assert evaluate(instance, resources["source"]).run_requests[0].run_key == request.run_key  # Dagster dedupes it

    assert run([metadata], resources, instance, "part-00001").success  # the requested re-read
    assert isinstance(evaluate(instance, resources["source"]), SkipReason)


def test_reference_sensor_syncs_catalog_to_partitions(tmp_path, demo):
    from resources import DatasetCatalog
    from sensors.reference_datasets import reference_datasets_sensor

    catalog_path = tmp_path / "datasets.yaml"
    text = (Path(demo.root) / "datasets.yaml").read_text().replace(" reference/", f" {demo.root}/reference/")
    text = text.replace(" demo_target_metrics.json", f" {demo.root}/demo_target_metrics.json")
    catalog_path.write_text(text)
    catalog = DatasetCatalog(path=str(catalog_path))
    instance = DagsterInstance.ephemeral()
    evaluate_ref = lambda: reference_datasets_sensor(  # noqa: E731
        build_sensor_context(instance=instance, resources={"catalog": catalog})
    )
    first = evaluate_ref()
    names = ["demo_broad", "demo_imagenet_captions", "demo_imagenet_val", "demo_narrow"]
    assert sorted(r.partition_key for r in first.run_requests) == names
    (add_sets, add_targets, add_models) = first.dynamic_partitions_requests
    assert list(add_targets.partition_keys) == ["demo_target"] and add_targets.partitions_def_name == "target"
    assert add_models.partitions_def_name == "model" and len(add_models.partition_keys) == 4
    instance.add_dynamic_partitions("model", list(add_models.partition_keys))
    instance.add_dynamic_partitions("dataset", [*names, "retired"])
    instance.add_dynamic_partitions("target", ["demo_target"])
    second = evaluate_ref()
    assert second.run_requests == []
    (delete,) = second.dynamic_partitions_requests
    assert list(delete.partition_keys) == ["retired"]
