"""What cross-partition results were built from (asset_defs/lineage.py): one set of parameters
across the parts they read, and which parts their latest result lacks."""

import logging
import types

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Failure,
    MetadataValue,
    build_sensor_context,
)

from asset_defs import all_checks
from asset_defs.lineage import PART_CHECK, parts_not_included, require_same_params
from jobs import part_checks_job
from sensors.part_checks import part_checks_sensor


def _report(instance, key: str, partition: str | None = None, **metadata) -> None:
    instance.report_runless_asset_event(AssetMaterialization(key, partition=partition, metadata=metadata))


def _context(instance):
    return types.SimpleNamespace(instance=instance, log=logging.getLogger("test"))


def test_parts_built_with_different_parameters_are_refused_naming_them():
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", ["p0", "p1", "p2"])
    for part, threshold in (("p0", 0.5), ("p1", 0.5), ("p2", 0.75)):
        _report(
            instance, "laion_natural", part, params=MetadataValue.json({"threshold": threshold, "remove_nsfw": True})
        )
    with pytest.raises(Failure) as err:
        require_same_params(_context(instance), "laion_natural", ["p0", "p1", "p2"])
    text = str(err.value)
    assert "p0, p1: threshold=0.5" in text and "p2: threshold=0.75" in text and "remove_nsfw" not in text
    # the latest materialisation of a part counts: rebuilding p2 with 0.5 settles it
    _report(instance, "laion_natural", "p2", params=MetadataValue.json({"threshold": 0.5, "remove_nsfw": True}))
    assert require_same_params(_context(instance), "laion_natural", ["p0", "p1", "p2"]) == {
        "threshold": 0.5,
        "remove_nsfw": True,
    }


def test_a_part_without_recorded_parameters_is_logged_not_refused(caplog):
    instance = DagsterInstance.ephemeral()
    _report(instance, "laion_natural", "p0", params=MetadataValue.json({"threshold": 0.5}))
    _report(instance, "laion_natural", "p1")
    with caplog.at_level(logging.WARNING):
        assert require_same_params(_context(instance), "laion_natural", ["p0", "p1"]) == {"threshold": 0.5}
    assert "no recorded parameters for p1" in caplog.text


def test_parts_not_included_follows_new_and_rematerialised_parts():
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", ["p0", "p1"])
    ancestors = [AssetKey("laion_embeddings"), AssetKey("laion_natural")]
    for part in ("p0", "p1"):
        _report(instance, "laion_embeddings", part)
        _report(instance, "laion_natural", part)
    assert parts_not_included(instance, AssetKey("coverage"), ancestors)["built"] is False
    _report(instance, "coverage", parts_seen="p0, p1")
    assert parts_not_included(instance, AssetKey("coverage"), ancestors) == {
        "built": True,
        "registered": ["p0", "p1"],
        "missing": [],
        "updated": [],
    }
    instance.add_dynamic_partitions("laion_part", ["p2"])  # a new part, not yet ingested
    assert parts_not_included(instance, AssetKey("coverage"), ancestors)["missing"] == ["p2"]
    _report(instance, "laion_embeddings", "p2")
    _report(instance, "laion_natural", "p2")
    _report(instance, "laion_natural", "p0")  # re-materialised after coverage
    state = parts_not_included(instance, AssetKey("coverage"), ancestors)
    assert state["missing"] == ["p2"] and state["updated"] == ["p0"]  # p2 is not in parts_seen


def test_the_checks_run_alone_and_say_what_is_missing():
    """part_checks_job (what part_checks_sensor launches) evaluates every includes_every_part
    check without rebuilding any asset."""
    names = {k.asset_key.to_user_string() for c in all_checks for k in c.check_keys}
    assert {
        "coverage",
        "stimulus_sets",
        "ood_generalization",
        "pruned_pool_sizes",
        "dedup_summary",
        "laionet",
        "datacomp_selection",
    } <= names
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", ["p0", "p1"])
    for key in ("laion_metadata", "laion_images", "laion_embeddings", "laion_natural"):
        _report(instance, key, "p0")
    _report(instance, "coverage", parts_seen="p0")
    from definitions import defs

    job = defs.resolve_job_def(part_checks_job.name)
    result = job.execute_in_process(instance=instance)
    assert result.success and not result.get_asset_materialization_events()
    evaluations = {
        e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if e.check_name == PART_CHECK
    }
    coverage = evaluations["coverage"]
    assert not coverage.passed and coverage.severity.value == "WARN"
    assert coverage.description == "built from 1 of 2 parts; missing: p1"
    assert evaluations["stimulus_sets"].description == "not materialised yet"


def test_the_sensor_checks_again_only_after_a_part_changes():
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", ["p0"])
    context = build_sensor_context(instance=instance)
    first = part_checks_sensor(context)
    assert first.run_key
    context = build_sensor_context(instance=instance, cursor=context.cursor)
    assert part_checks_sensor(context).skip_message
    _report(instance, "laion_embeddings", "p0")
    context = build_sensor_context(instance=instance, cursor=context.cursor)
    assert part_checks_sensor(context).run_key != first.run_key


def test_what_a_new_part_makes_out_of_date():
    """jobs.demo.needed_by_new_part (benchmarks/new_part.py's update): the per-part assets and
    everything reading the parts, nothing that reads only the catalog."""
    from jobs.demo import after_ingest, needed_by_new_part

    needed = {k.to_user_string() for k in needed_by_new_part()}
    assert {
        "laion_metadata",
        "laion_embeddings",
        "laion_natural",
        "laionet_rows",
        "laionet",
        "coverage",
        "laion_dedup",
        "dedup_summary",
        "eval_to_laion_similarity",
        "retrieval_samples",
        "pruned_pool_sizes",
        "datacomp_flags",
        "datacomp_selection",
    } <= needed
    assert not needed & {
        "reference_embeddings",
        "model_features",
        "probe_scores",
        "similarity_consistency",
        "ilsvrc_synsets",
    }
    assert {k.to_user_string() for k in after_ingest()} >= needed - {
        "laion_metadata",
        "laion_images",
        "laion_embeddings",
    }
