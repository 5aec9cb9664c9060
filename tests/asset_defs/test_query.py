"""materialize() tests of image_index on the ingested demo parts: the index rule, recall
against exact search, the example query and a bad config."""

from dagster import MetadataValue

from asset_defs.query import image_index
from tests.conftest import run


def _metadata(instance):
    return instance.get_latest_materialization_event(image_index.key).asset_materialization.metadata


def test_image_index_records_the_rule_recall_latency_and_an_example(ingested, demo):
    resources, instance, _ = ingested
    config = {"ops": {"image_index": {"config": {"sample": 25, "k": 5, "example_text": "a red disc"}}}}
    assert run([image_index], resources, instance, None, run_config=config).success
    meta = _metadata(instance)
    rows = resources["lance"].tables().count("laion_embeddings")
    assert meta["rows"].value == rows and meta["index_kind"].value == "none"  # demo: far below 100k rows
    assert meta["index_params"].value == {"kind": "none", "rows": rows, "dim": meta["index_params"].value["dim"]}
    assert meta["recall_at_5"].value == 1.0 and meta["recall_queries"].value == 25
    assert meta["median_latency_ms"].value > 0 and meta["build_seconds"].value >= 0
    assert meta["parts_seen"].value == ", ".join(sorted(demo.parts))
    assert meta["latency_plot"].value.startswith("![")
    example = meta["example"].value
    assert example.startswith("| rank | uid | part | row | score | caption | url |")
    assert len([line for line in example.splitlines() if line.startswith("| ") and "rank" not in line]) == 5
    assert "laionlab-tiny" in meta["model"].value
    assert meta["lance_versions_read"] != MetadataValue.json({})


def test_a_forced_index_on_a_tiny_table_fails_naming_the_rows(ingested):
    resources, instance, _ = ingested
    config = {"ops": {"image_index": {"config": {"kind": "IVF_PQ"}}}}
    result = run([image_index], resources, instance, None, run_config=config, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "image_index: kind='IVF_PQ': an ANN index needs at least 256 rows" in str(failure.event_specific_data)
